"""Dataset errors name the path and what was expected there."""


class DatasetError(Exception):
    """A dataset folder is missing, incomplete or malformed."""
