"""What does the benchmark's class-balanced linear probe cost in accuracy on AI4Mars?

On the frozen features of pretrained encoders (the benchmark's ``encoder.pt`` files), trains
heads on the same labelled subset (``--fraction`` of the AI4Mars train tiles, drawn with the
seed of the encoder's run, as the benchmark does) and scores each on every validation tile:

- ``linear-balanced``: the benchmark's probe (class-weighted cross entropy);
- ``linear-plain``: the same probe with unweighted cross entropy;
- ``linear-p0.25`` / ``p0.5`` / ``p0.75``: between the two, the class weights raised to that
  power (``train.probe.class_weights``);
- ``knn20`` / ``knn200``: the pretraining monitor's weighted cosine kNN (T = 0.07) with the
  labelled subset as its bank.

Tiles come through edge's one preprocessing function (train.tiles), at the benchmark
preset's input size. Prints one JSON line per encoder. Usage (CPU; minutes per encoder on 2
threads):

    python scripts/probe_head_check.py --preset cpu-small \\
        runs/benchmark/cpu-small/seed0/simclr_cluster_mix \\
        runs/benchmark/cpu-small/seed0/simclr_on_ai4mars
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from train.benchmark import PRESETS
from train.knn_monitor import weighted_knn_predict
from train.labelled_sets import LabelledSet, load_labelled
from train.metrics import evaluate
from train.probe import ProbeConfig, extract_features, load_encoder, train_linear_head
from train.tiles import TileDataConfig, default_data_root

#: Linear heads by name -> the power of their class weights (0: unweighted).
LINEAR_HEADS = {"linear-balanced": 1.0, "linear-p0.75": 0.75, "linear-p0.5": 0.5,
                "linear-p0.25": 0.25, "linear-plain": 0.0}


def head_scores(f_train: torch.Tensor, f_val: torch.Tensor, train: LabelledSet,
                val: LabelledSet, idx: np.ndarray, seed: int, probe_steps: int
                ) -> dict[str, dict[str, float]]:
    """Accuracy and mean recall on ``val`` of each head trained on features f_train[idx]
    (n, D) with their labels; f_val (M, D) are the validation features."""
    labels = torch.from_numpy(train.labels[idx])
    k = len(train.classes)
    preds: dict[str, np.ndarray] = {}
    for name, power in LINEAR_HEADS.items():
        head = train_linear_head(f_train[idx], labels, k, ProbeConfig(
            seed=seed, steps=probe_steps, class_balanced=power > 0, balance_power=power))
        with torch.no_grad():
            preds[name] = head(f_val).argmax(1).numpy()
    for neighbours in (20, 200):
        preds[f"knn{neighbours}"] = weighted_knn_predict(
            f_train[idx], labels, f_val, k, k=neighbours).numpy()
    out = {}
    for name, pred in preds.items():
        m = evaluate(pred, val.labels, val.classes)
        out[name] = {"accuracy": round(m["accuracy"], 4), "mean_recall": round(m["mean_recall"], 4),
                     "recall": {c: round(r, 4) for c, r in m["per_class_recall"].items()}}
    return out


def main() -> None:
    """Parse arguments; for each encoder folder print its heads' validation scores."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("encoders", nargs="+", help="benchmark run folders holding encoder.pt "
                    "(the seed is read from the checkpoint's config)")
    ap.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    p = PRESETS[args.preset]
    root = default_data_root()
    data = TileDataConfig(root=str(root / "ai4mars-msl-ncam-256"), tile_pixels=p.tile_pixels,
                          max_train_frames=p.ai4mars_train_frames,
                          max_val_frames=p.ai4mars_val_frames)
    msl_root = str(root / "msl-v2.1")
    train = load_labelled("ai4mars", "train", data, msl_root)
    val = load_labelled("ai4mars", "val", data, msl_root)
    for folder in args.encoders:
        t0 = time.perf_counter()
        encoder, saved = load_encoder(Path(folder) / "encoder.pt")
        seed = int(saved["config"]["seed"])
        f_train = extract_features(encoder, train.inputs)
        f_val = extract_features(encoder, val.inputs)
        idx = train.fraction(args.fraction, seed)
        scores = head_scores(f_train, f_val, train, val, idx, seed, p.probe_steps)
        print(json.dumps({"encoder": folder, "seed": seed, "fraction": args.fraction,
                          "train_items": int(len(idx)), "val_items": int(len(val.labels)),
                          "val_class_counts": np.bincount(val.labels).tolist(),
                          "heads": scores, "seconds": round(time.perf_counter() - t0, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
