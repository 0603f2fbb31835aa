"""Loaders for the published layouts of the datasets in ``../shared/data`` (no torch needed)."""

from train.datasets.errors import DatasetError

__all__ = ["DatasetError"]
