"""Weighted kNN accuracy on frozen features: a cheap pretraining monitor (Wu et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from train.labelled_sets import LabelledSet, load_labelled, monitor_data
from train.tiles import TileDataConfig


def weighted_knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, query: torch.Tensor,
                         num_classes: int, k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """Cosine kNN with exp(sim / T) votes: bank (N, D), bank_labels (N,), query (M, D)
    -> predicted class int64 (M,)."""
    bank, query = F.normalize(bank.float(), dim=1), F.normalize(query.float(), dim=1)
    k = min(k, len(bank))
    out = []
    for i in range(0, len(query), 1024):
        sim, nn_idx = (query[i:i + 1024] @ bank.t()).topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes)
        # Votes relative to each query's nearest neighbour (a per-row factor, so the same
        # argmax) do not overflow to inf at small temperatures.
        votes.scatter_add_(1, bank_labels[nn_idx], ((sim - sim[:, :1]) / temperature).exp())
        out.append(votes.argmax(1))
    return torch.cat(out)


@dataclass
class KnnMonitor:
    """A labelled bank (train) and queries (val) of one dataset."""

    bank: LabelledSet
    query: LabelledSet

    @classmethod
    def build(cls, dataset: str, data: TileDataConfig, msl_root: str,
              max_items: int = 4000) -> KnnMonitor:
        """Bank and queries of at most ``max_items`` each, spread over their splits."""
        light = monitor_data(data)
        return cls(load_labelled(dataset, "train", light, msl_root, max_items),
                   load_labelled(dataset, "val", light, msl_root, max_items))

    def accuracy(self, embed: Callable[[np.ndarray], np.ndarray]) -> float:
        """Validation accuracy of weighted kNN on features from ``embed`` (N,C,S,S)->(N,D)."""
        pred = weighted_knn_predict(torch.from_numpy(embed(self.bank.inputs)),
                                    torch.from_numpy(self.bank.labels),
                                    torch.from_numpy(embed(self.query.inputs)),
                                    len(self.bank.classes))
        return float((pred.numpy() == self.query.labels).mean())
