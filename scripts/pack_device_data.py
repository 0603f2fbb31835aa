"""Copy the part of ../shared/data that a GPU benchmark run reads into small folders that the
``device`` tool can carry (it carries at most 64 MiB a call, and the data is about 230 MiB).

Files are copied byte for byte (no re-encoding), in the published layout, so the project's
loaders read them unchanged; only the files a run reads are copied:

- part ``msl``: MSL v2.1 in full (lists, class map, every train and val image; 47 MiB), and
  AI4Mars ``train.txt`` with the frames and masks of the ``--ai4mars-train-frames`` train
  frames that ``TileDataConfig(max_train_frames=N)`` selects (the pretraining pool's share);
- part ``mix``: HiRISE v1 lists and class map and the crops of its train split (what the
  pretraining pool reads), and the AI4Mars train and val frames (with masks) that the kNN
  monitor of a mixed-domain run reads (``train.labelled_sets.monitor_data``);
- part ``ai4mars-val``: AI4Mars ``train.txt`` with every validation frame and mask (about
  27 MiB), for runs that evaluate on AI4Mars as well (``--datasets ai4mars,msl-v2.1``). Their
  labelled train tiles come from the ``msl`` part's frames.

For runs that evaluate on AI4Mars only, two parts hold everything (each under the limit):

- part ``ai4mars``: the selected AI4Mars train frames and every validation frame, with masks
  (what the supervised baseline and the probes read, and the pool's AI4Mars share);
- part ``pool``: the rest of a mixed-domain pool: MSL v2.1 lists, class map and train images,
  and the ``mix`` part (HiRISE train crops, the kNN monitor's AI4Mars frames).

Carry each part as one archive (``tar czf msl.tgz -C .device-data/msl .``): thousands of small
files count more than their bytes against the carry limit. On the device, unpack every part
into one folder and pass it as ``--data-root``.

    python scripts/pack_device_data.py --part msl --out .device-data/msl
    python scripts/pack_device_data.py --part mix --out .device-data/mix
    python scripts/pack_device_data.py --part ai4mars-val --out .device-data/ai4mars-val

Never commit the output: these are NASA/JPL images (``.device-data/`` is git-ignored).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from train.datasets.ai4mars import load_ai4mars
from train.datasets.hirise import load_hirise
from train.datasets.msl import load_msl
from train.labelled_sets import monitor_data
from train.tiles import TileDataConfig, default_data_root, spread


def _copy(src: Path, dst: Path) -> int:
    """Copy one file (creating folders); returns its size in bytes."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst.stat().st_size


def _copy_frames(data: Path, out: Path, train: int | None, val: int | None) -> int:
    """AI4Mars ``train.txt`` and the frames and masks that a ``TileDataConfig`` with these
    ``max_train_frames`` / ``max_val_frames`` reads (0: none of that split)."""
    ai4 = load_ai4mars(data / "ai4mars-msl-ncam-256")
    total = _copy(ai4.root / "train.txt", out / "ai4mars-msl-ncam-256" / "train.txt")
    splits = ai4.splits()
    ids = spread(splits["train"], train) if train != 0 else []
    ids += spread(splits["val"], val) if val != 0 else []
    for frame_id in ids:
        for src in (ai4.image_path(frame_id), ai4.mask_path(frame_id)):
            total += _copy(src, out / "ai4mars-msl-ncam-256" / src.relative_to(ai4.root))
    return total


def _copy_split(folder: Path, out: Path, images: list[Path]) -> int:
    """A dataset folder's top-level files (lists, class map) and the given images under it,
    in the same layout under ``out``; returns bytes written."""
    total = sum(_copy(src, out / src.name) for src in sorted(folder.glob("*")) if src.is_file())
    return total + sum(_copy(src, out / src.relative_to(folder)) for src in images)


def pack_msl(data: Path, out: Path, ai4mars_train_frames: int) -> int:
    """MSL v2.1 in full plus the selected AI4Mars train frames; returns bytes written."""
    total = 0
    for src in sorted((data / "msl-v2.1").rglob("*")):
        if src.is_file():
            total += _copy(src, out / "msl-v2.1" / src.relative_to(data / "msl-v2.1"))
    return total + _copy_frames(data, out, ai4mars_train_frames, 0)


def pack_mix(data: Path, out: Path, ai4mars_train_frames: int) -> int:
    """HiRISE v1 lists and the crops of its train split, and the AI4Mars frames the kNN
    monitor reads; returns bytes written."""
    ds = load_hirise(data / "hirise-v1")
    total = _copy_split(data / "hirise-v1", out / "hirise-v1",
                        [ds.image_path(item) for item in ds.splits["train"]])
    light = monitor_data(TileDataConfig(max_train_frames=ai4mars_train_frames))
    return total + _copy_frames(data, out, light.max_train_frames, light.max_val_frames)


def pack_ai4mars(data: Path, out: Path, ai4mars_train_frames: int) -> int:
    """The selected AI4Mars train frames and every validation frame, with masks; returns bytes
    written."""
    return _copy_frames(data, out, ai4mars_train_frames, None)


def pack_pool(data: Path, out: Path, ai4mars_train_frames: int) -> int:
    """MSL v2.1 lists, class map and train images, and the ``mix`` part; returns bytes
    written."""
    msl = load_msl(data / "msl-v2.1")
    total = _copy_split(data / "msl-v2.1", out / "msl-v2.1",
                        [msl.image_path(item) for item in msl.splits["train"]])
    return total + pack_mix(data, out, ai4mars_train_frames)


def pack_ai4mars_val(data: Path, out: Path) -> int:
    """AI4Mars ``train.txt`` and every validation frame with its mask; returns bytes written."""
    return _copy_frames(data, out, 0, None)


def main() -> None:
    """Command line: see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("msl", "mix", "ai4mars-val", "ai4mars", "pool"),
                    required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=default_data_root())
    # Must equal the run's ai4mars_train_frames (scripts/gpu_benchmark.sh: AI4MARS_FRAMES).
    ap.add_argument("--ai4mars-train-frames", type=int, default=500)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    if args.part == "msl":
        total = pack_msl(args.data, args.out, args.ai4mars_train_frames)
    elif args.part == "mix":
        total = pack_mix(args.data, args.out, args.ai4mars_train_frames)
    elif args.part == "ai4mars":
        total = pack_ai4mars(args.data, args.out, args.ai4mars_train_frames)
    elif args.part == "pool":
        total = pack_pool(args.data, args.out, args.ai4mars_train_frames)
    else:
        total = pack_ai4mars_val(args.data, args.out)
    print(f"{args.out}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
