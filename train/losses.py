"""Contrastive losses as plain functions over embeddings.

``nt_xent`` is SimCLR's loss. ``cluster_pair_mask`` and the ``cluster_ids`` argument add the
false-negative correction: pairs whose images fall in the same k-means cluster are either
removed from the denominator (``eliminate``) or counted as extra positives (``attract``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLUSTER_MODES = ("eliminate", "attract")


def cluster_pair_mask(cluster_ids: torch.Tensor, mode: str) -> torch.Tensor:
    """Which image pairs count as "same cluster": cluster_ids int64 (B, M) under M clusterings
    -> bool (B, B), the diagonal False.

    ``eliminate`` takes pairs that share a cluster under *any* clustering (removing a negative
    costs little, so it errs towards removing); ``attract`` takes pairs that share one under
    *every* clustering (pulling two images together is the riskier act).
    """
    if mode not in CLUSTER_MODES:
        raise ValueError(f"cluster mode must be one of {CLUSTER_MODES}, got {mode!r}")
    if cluster_ids.ndim == 1:
        cluster_ids = cluster_ids[:, None]
    same = cluster_ids[:, None, :] == cluster_ids[None, :, :]  # (B, B, M)
    pairs = same.any(-1) if mode == "eliminate" else same.all(-1)
    pairs.fill_diagonal_(False)
    return pairs


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2,
            cluster_ids: torch.Tensor | None = None, mode: str = "eliminate") -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy, optionally cluster-corrected.

    z1, z2: (B, D) embeddings of two views of the same B images (row i of z1 and
    row i of z2 are positives). Every other of the 2B - 2 embeddings is a negative,
    unless ``cluster_ids`` (B, M) int64 puts its image in the anchor's cluster: then
    ``eliminate`` drops it from the denominator and ``attract`` makes it a positive
    (the anchor's loss is then the mean of -log p over its positives, as in SupCon).
    Returns the mean loss over the 2B anchors, a scalar.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (B, D) tensors of one shape, got {z1.shape}, {z2.shape}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    if cluster_ids is None:
        return F.cross_entropy(sim, targets)
    if cluster_ids.shape[0] != b:
        raise ValueError(f"cluster_ids has {cluster_ids.shape[0]} rows for {b} images")
    image_pairs = cluster_pair_mask(cluster_ids.to(z.device), mode)
    pairs = image_pairs.repeat(2, 2)  # (2B, 2B): view pairs of two clustered images
    if mode == "eliminate":
        return F.cross_entropy(sim.masked_fill(pairs, float("-inf")), targets)
    positives = pairs.clone()
    positives[torch.arange(2 * b), targets] = True
    log_p = F.log_softmax(sim, dim=1).masked_fill(~positives, 0.0)
    return (-(log_p.sum(1) / positives.sum(1))).mean()
