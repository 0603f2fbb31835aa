"""Helpers for the integration tests: an independent statement of DESIGN.md's tile-label rule,
JSONL reading, copying a few real frames into a temporary folder (never into the repo) and
classifying them, and the resolution-invariance check shared by the pipeline bundle and the
shipped default bundle."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bundle import DEFAULT_MODEL, MANIFEST_FILE, MODELS_DIR, load_bundle
from edge.decode import read_image
from edge.preprocess import frame_to_tiles
from toolkit_cli.main import main

AI4MARS_CLASSES = ["soil", "bedrock", "sand", "big rock"]
UNLABELLED = 255


def rule_label(patch: np.ndarray) -> int:
    """DESIGN.md, stated independently of ``train.datasets.ai4mars``: a tile is scored when
    labelled pixels (classes 0..3) cover at least half of it and the majority class holds at
    least three quarters of them; returns that class, or -1 when the tile is not scored."""
    counts = [int(np.count_nonzero(patch == c)) for c in range(len(AI4MARS_CLASSES))]
    labelled = sum(counts)
    if labelled * 2 < patch.size:
        return -1
    top = max(range(len(counts)), key=counts.__getitem__)
    return top if counts[top] * 4 >= labelled * 3 else -1


def rule_labels(mask: np.ndarray, tile: int = 32) -> np.ndarray:
    """Row-major rule labels of a mask whose sides are multiples of ``tile`` (reference scale)."""
    h, w = mask.shape
    assert h % tile == 0 and w % tile == 0, mask.shape
    return np.array([rule_label(mask[y:y + tile, x:x + tile])
                     for y in range(0, h, tile) for x in range(0, w, tile)], dtype=np.int64)


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per line."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def copy_frames(images: Path, ids: list[str], dest: Path) -> list[str]:
    """Copy ``<id>.jpg`` of each id into ``dest``; returns the file names."""
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for frame_id in ids:
        shutil.copyfile(images / f"{frame_id}.jpg", dest / f"{frame_id}.jpg")
        names.append(f"{frame_id}.jpg")
    return names


def classify_val_frames(ai4mars_root: Path, ids: list[str], tmp_path: Path,
                        model: str | None = None) -> list[dict]:
    """``edge classify`` (with ``--model`` where given) on copies of the validation frames
    ``ids``: checks that it exits 0 with one error-free record per frame and a tile record
    for every tile counted; returns the tile records."""
    names = copy_frames(ai4mars_root / "images", ids, tmp_path / "frames")
    out = tmp_path / "cls"
    args = ["classify", str(tmp_path / "frames"), "--out", str(out), "--quiet"]
    assert main(args + (["--model", model] if model else [])) == 0
    frames = read_jsonl(out / "frames.jsonl")
    assert sorted(f["frame"] for f in frames) == sorted(names)
    assert all(f["error"] is None for f in frames)
    tiles = read_jsonl(out / "tiles.jsonl")
    assert len(tiles) == sum(f["tiles"] for f in frames) > 0
    return tiles


def write_truncated(src: Path, dest: Path) -> Path:
    """Write the first half of ``src``'s bytes to ``dest`` (a JPEG cut off mid-stream)."""
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def upscale_pair(src: Path, dest: Path, size: int = 1024) -> tuple[Path, Path]:
    """Copy a real frame into ``dest`` and write it upscaled to ``size`` px (INTER_CUBIC) as a
    lossless PNG beside it; returns (original, upscaled)."""
    dest.mkdir(parents=True, exist_ok=True)
    small = dest / f"a_{src.name}"
    shutil.copyfile(src, small)
    image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    big = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
    big_path = dest / f"b_{src.stem}_{size}.png"
    assert cv2.imwrite(str(big_path), big)
    return small, big_path


def tiles_by_frame(tiles: list[dict]) -> dict[str, list[dict]]:
    """tiles.jsonl records grouped by frame, in file (row-major) order."""
    grouped: dict[str, list[dict]] = {}
    for t in tiles:
        grouped.setdefault(t["frame"], []).append(t)
    return grouped


MIN_AGREEMENT = 0.90


def check_resolution_invariance(model: str | None, src, tmp_path) -> float:
    """Classify ``src`` and its 4x upscale with ``edge classify`` (``model`` None: the shipped
    default); assert the grid, the network input and the labels agree; return the agreement."""
    small, big = upscale_pair(src, tmp_path / "frames")
    out = tmp_path / "cls"
    argv = ["classify", str(small.parent), "--out", str(out), "--quiet"]
    if model is not None:
        argv += ["--model", model]
    assert main(argv) == 0
    frames = {f["frame"]: f for f in read_jsonl(out / "frames.jsonl")}
    assert (frames[small.name]["width"], frames[small.name]["height"]) == (256, 256)
    assert (frames[big.name]["width"], frames[big.name]["height"]) == (1024, 1024)
    grouped = tiles_by_frame(read_jsonl(out / "tiles.jsonl"))
    a, b = grouped[small.name], grouped[big.name]
    assert len(a) == len(b) == 64
    boxes_a = np.array([[t["x"], t["y"], t["w"], t["h"]] for t in a])
    boxes_b = np.array([[t["x"], t["y"], t["w"], t["h"]] for t in b])
    np.testing.assert_array_equal(boxes_b, boxes_a * 4)

    # the network input: the runtime scales the 1024 frame to the reference width before
    # tiling, so its tiles differ from the 256 frame's only by the resampling round trip
    bundle = load_bundle(model if model is not None else DEFAULT_MODEL)
    m = bundle.manifest
    t_small = frame_to_tiles(read_image(small), m.input, m.tiling).tiles
    t_big = frame_to_tiles(read_image(big), m.input, m.tiling).tiles
    unit = np.abs(t_small - t_big) * np.asarray(m.input.std, np.float32)[None, :, None, None]
    per_tile = unit.mean(axis=(1, 2, 3))
    # INTER_CUBIC up then INTER_AREA down is a mild blur (about 0.003 mean on real frames); a
    # nearest-neighbour downscale or a one-pixel misalignment gives 0.01-0.02
    assert unit.mean() < 0.006 and per_tile.max() < 0.012, (
        f"network input differs between 256 and 1024 px: mean |diff| {unit.mean():.4f}, "
        f"worst tile {per_tile.max():.4f} (pixel values in [0, 1])")

    labels_a = [t["label"] for t in a]
    labels_b = [t["label"] for t in b]
    agreement = float(np.mean([x == y for x, y in zip(labels_a, labels_b, strict=True)]))
    assert agreement >= MIN_AGREEMENT, (
        f"only {agreement:.1%} of tiles keep their label at 1024 px (need {MIN_AGREEMENT:.0%}); "
        f"labels at 256: {dict(Counter(labels_a))}, at 1024: {dict(Counter(labels_b))}; "
        f"network-input mean |diff| {unit.mean():.4f}")
    return agreement


def shipped_manifest(name: str) -> dict:
    """The manifest of the bundle shipped as ``edge/models/<name>``, after verifying the
    bundle (its model must hash to the manifest); skips the test when it is not shipped."""
    path = MODELS_DIR / name / MANIFEST_FILE
    if not path.is_file():
        pytest.skip(f"{name} bundle not shipped yet")
    load_bundle(name)
    return json.loads(path.read_text())
