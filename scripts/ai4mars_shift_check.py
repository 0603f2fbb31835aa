"""How much of the AI4Mars validation gap is a shift between drive periods?

Trains one supervised tile classifier (train.supervised: the benchmark's baseline, same
encoder preset and loss) on train-period frames, and evaluates the same model on two sets:

- ``held-out train period``: blocks of 50 consecutive train-split frames (20% of the blocks,
  drawn at random, never trained on): same drives and lighting as training;
- ``clock-ordered val``: the project's validation split (the latest 20% of the frames).

Tiles come through edge's one preprocessing function (train.tiles). Usage (CPU, about
5 minutes a run with one thread):

    python scripts/ai4mars_shift_check.py --steps 1200 --augment weak --threads 1
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from train.augment import AugmentConfig
from train.datasets.ai4mars import CLASSES, load_ai4mars
from train.labelled_sets import LabelledSet
from train.supervised import SupervisedConfig, train_supervised
from train.tiles import TileDataConfig, spread

AUGMENTS = {"default": AugmentConfig(),
            "weak": AugmentConfig(min_scale=0.9, brightness=0.1, contrast=0.1)}


def as_set(data: TileDataConfig, ids: list[str]) -> LabelledSet:
    """Scored tiles of ``ids`` as a LabelledSet (inputs (N, 1, S, S))."""
    tiles = load_ai4mars(data.root).load_tiles(ids, data.input_spec, data.tiling).scored()
    return LabelledSet(tiles.tiles, tiles.labels, np.arange(len(tiles.labels)), list(CLASSES),
                       frames=len(ids))


def main() -> None:
    """Parse arguments, train once, print both evaluations as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--augment", choices=sorted(AUGMENTS), default="weak")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--train-frames", type=int, default=2400)
    ap.add_argument("--eval-frames", type=int, default=600)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    data = TileDataConfig()
    splits = load_ai4mars(data.root).splits(data.val_fraction)
    train_ids = splits["train"]
    blocks = [train_ids[i:i + args.block] for i in range(0, len(train_ids), args.block)]
    order = np.random.default_rng(args.seed).permutation(len(blocks))
    held = sorted(int(b) for b in order[: len(blocks) // 5])
    held_ids = [i for b in held for i in blocks[b]]
    fit_ids = [i for b in sorted(int(b) for b in order[len(blocks) // 5:]) for i in blocks[b]]

    fit = as_set(data, spread(fit_ids, args.train_frames))
    held_out = as_set(data, spread(held_ids, args.eval_frames))
    val = as_set(data, spread(splits["val"], args.eval_frames))
    cfg = replace(SupervisedConfig(), preset=args.preset, steps=args.steps, seed=args.seed,
                  augment=AUGMENTS[args.augment])
    m = train_supervised(fit, val, cfg, also_evaluate={"held_out": held_out})
    keys = ("accuracy", "mean_recall", "per_class_recall", "tiles")
    print(json.dumps({"args": vars(args), "train_tiles": int(len(fit.labels)),
                      "clock_ordered_val": {k: m[k] for k in keys},
                      "held_out_train_period": {k: m["held_out"][k] for k in keys},
                      "seconds": m["seconds"]}, indent=1))


if __name__ == "__main__":
    main()
