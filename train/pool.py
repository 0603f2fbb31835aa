"""The unlabelled pretraining pool, drawn from one or several image domains in set proportions.

Domains: ``ai4mars`` (Navcam tiles of the clock-ordered train split), ``msl`` (MSL v2.1 train
images, Mastcam and MAHLI), ``hirise`` (HiRISE v1 train crops, orbital). Every item goes through
edge's preprocessing at the same ``tile_pixels``. Labels are kept for monitoring only (cluster
purity); they never enter training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.datasets.errors import DatasetError
from train.datasets.hirise import load_hirise
from train.datasets.whole_image import load_whole_images
from train.labelled_sets import load_labelled
from train.tiles import TileDataConfig, default_data_root, load_split_tiles, spread_indices

DOMAINS = ("ai4mars", "msl", "hirise")
DOMAIN_LABEL_STRIDE = 1000  # monitoring labels: domain index * 1000 + class id


@dataclass(frozen=True)
class PoolConfig:
    """Which domains, in which proportions (weights need not sum to 1), and where they are.

    ``ai4mars`` also fixes the input (tile pixels, normalisation) for every domain.
    ``max_items_per_domain`` caps each domain (evenly spread; None keeps all)."""

    domains: tuple[tuple[str, float], ...] = (("ai4mars", 1.0),)
    ai4mars: TileDataConfig = field(default_factory=TileDataConfig)
    msl_root: str = str(default_data_root() / "msl-v2.1")
    hirise_root: str = str(default_data_root() / "hirise-v1")
    max_items_per_domain: int | None = None

    def weights(self) -> np.ndarray:
        """Normalised domain proportions, float64 (len(domains),)."""
        w = np.array([weight for _, weight in self.domains], dtype=np.float64)
        if not len(w) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise DatasetError(f"domain weights must be non-negative with a positive sum: "
                               f"{self.domains}")
        return w / w.sum()


@dataclass
class Pool:
    """Items float32 (N, C, S, S); domain int64 (N,) index into ``names``; labels int64 (N,)
    (-1 unlabelled, else domain * 1000 + class; monitoring only)."""

    items: np.ndarray
    domain: np.ndarray
    labels: np.ndarray
    names: list[str]

    def sizes(self) -> list[int]:
        """Items per domain, in ``names`` order."""
        return np.bincount(self.domain, minlength=len(self.names)).tolist()


def _load_domain(name: str, cfg: PoolConfig) -> tuple[np.ndarray, np.ndarray]:
    spec = cfg.ai4mars.input_spec
    if name == "ai4mars":
        tiles = load_split_tiles(cfg.ai4mars, "train")
        keep = spread_indices(len(tiles.tiles), cfg.max_items_per_domain)
        return tiles.tiles[keep], tiles.labels[keep]
    if name == "msl":
        msl = load_labelled("msl-v2.1", "train", cfg.ai4mars, cfg.msl_root,
                            cfg.max_items_per_domain)
        return msl.inputs, msl.labels
    if name == "hirise":
        hirise = load_hirise(cfg.hirise_root)
        items = [hirise.splits["train"][i] for i in
                 spread_indices(len(hirise.splits["train"]), cfg.max_items_per_domain)]
        x, ok = load_whole_images([hirise.image_path(it) for it in items], spec)
        return x, np.array([it.label for it in items], dtype=np.int64)[ok]
    raise DatasetError(f"unknown domain {name!r} (choose from {', '.join(DOMAINS)})")


def load_pool(cfg: PoolConfig, log: object = print) -> Pool:
    """Load every domain of ``cfg`` into one :class:`Pool`."""
    cfg.weights()
    items, domain, labels, names = [], [], [], []
    for d, (name, _) in enumerate(cfg.domains):
        x, y = _load_domain(name, cfg)
        items.append(x)
        domain.append(np.full(len(x), d, dtype=np.int64))
        labels.append(np.where(y >= 0, d * DOMAIN_LABEL_STRIDE + y, -1))
        names.append(name)
        log(f"pool: {len(x)} {name} items")
    return Pool(np.concatenate(items), np.concatenate(domain), np.concatenate(labels), names)


def epoch_indices(sizes: Sequence[int], weights: Sequence[float], n: int, seed: int,
                  epoch: int) -> np.ndarray:
    """Pool indices int64 (n,) for one epoch: each draw picks a domain with probability
    ``weights`` (normalised), then the domain's next item in a per-epoch permutation (cycled
    when a small domain is drawn more often than it has items). Pool indices are offsets into
    the domains concatenated in order. A pure function of its arguments, so a resumed run
    replays the same epochs."""
    sizes = np.asarray(sizes, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(sizes) or w.sum() <= 0:
        raise ValueError(f"weights {list(w)} do not match domain sizes {list(sizes)}")
    w = np.where(sizes > 0, w, 0.0)
    if w.sum() <= 0:
        raise ValueError("every weighted domain is empty")
    rng = np.random.default_rng([seed, epoch])
    which = rng.choice(len(sizes), size=n, p=w / w.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty(n, dtype=np.int64)
    for d in range(len(sizes)):
        slots = np.flatnonzero(which == d)
        if not len(slots):
            continue
        order = rng.permutation(sizes[d])
        reps = -(-len(slots) // sizes[d])
        out[slots] = offsets[d] + np.tile(order, reps)[: len(slots)]
    return out


def parse_domains(text: str) -> tuple[tuple[str, float], ...]:
    """``"ai4mars:0.5,msl:0.3,hirise:0.2"`` (or ``"ai4mars"``) -> ((name, weight), ...)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition(":")
        if name not in DOMAINS:
            raise DatasetError(f"unknown domain {name!r} in {text!r} "
                               f"(choose from {', '.join(DOMAINS)})")
        try:
            out.append((name, float(weight) if weight else 1.0))
        except ValueError:
            raise DatasetError(f"domain weight {weight!r} in {text!r} is not a number") from None
    if not out:
        raise DatasetError(f"no domain in {text!r}")
    return tuple(out)


def pool_root_exists(cfg: PoolConfig) -> bool:
    """Whether every configured domain's folder exists (for tests that need real data)."""
    roots = {"ai4mars": cfg.ai4mars.root, "msl": cfg.msl_root, "hirise": cfg.hirise_root}
    return all(Path(roots[name]).exists() for name, _ in cfg.domains)
