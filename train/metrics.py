"""Classification metrics over validation items (numpy only, no torch): accuracy, mean
per-class recall and the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

# DESIGN.md: mean per-class recall is over classes with at least 10 scored tiles.
MIN_TILES_FOR_RECALL = 10
# Per labelled set: AI4Mars tiles follow DESIGN.md; MSL v2.1's 300 validation images leave
# several of its 19 classes with fewer than 10, so every class present counts there.
MIN_SUPPORT = {"ai4mars": MIN_TILES_FOR_RECALL, "msl-v2.1": 1}


def evaluate(pred: np.ndarray, target: np.ndarray, classes: list[str],
             min_support: int = MIN_TILES_FOR_RECALL) -> dict[str, Any]:
    """Accuracy, mean per-class recall over classes with at least ``min_support`` items,
    confusion matrix."""
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (target, pred), 1)
    support = confusion.sum(1)
    recall = {classes[c]: float(confusion[c, c] / support[c]) for c in range(k) if support[c]}
    scored = [classes[c] for c in range(k) if support[c] >= min_support]
    return {
        "tiles": int(len(target)),
        "accuracy": float((pred == target).mean()) if len(target) else float("nan"),
        "mean_recall": float(np.mean([recall[c] for c in scored])) if scored else float("nan"),
        "recall_classes": scored,
        "per_class_recall": recall,
        "support": {classes[c]: int(support[c]) for c in range(k)},
        "confusion": confusion.tolist(),
    }
