"""Sensitivity-guided mixed precision, tried when no INT8 variant of the grid passes the gate.

Starting from the variant that agreed best with the float model, every remaining quantized
layer is kept in float on its own, and the agreement with the float model that this buys is
measured on *search tiles*: AI4Mars train frames that the calibration did not use (never the
validation tiles that the gate scores, so the ranking is not fitted to the gate). Layers are
then kept in float cumulatively in that order, one more per step; each step is quantized,
gated on validation and timed like any variant of the grid, and the search stops at the first
step that passes or after ``max_float`` steps. At least one layer always stays quantized.

The ranking is one-shot (each layer alone), not re-ranked after every step: N + ``max_float``
quantizations instead of N x ``max_float``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx

from train.datasets.ai4mars import load_ai4mars
from train.datasets.errors import DatasetError
from train.tiles import TileDataConfig, spread

#: Operators whose quantization the search may undo: those with weights, and the pools
#: (keeping an Add or a Relu in float changes nothing in ONNX Runtime's QDQ graphs: measured).
CANDIDATE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "GlobalAveragePool", "AveragePool")


class Variant(Protocol):
    """A quantization variant with a name and the extra nodes it keeps in float."""

    name: str
    float_nodes: tuple[str, ...]


def candidate_nodes(float_path: Path, already_float: list[str]) -> list[str]:
    """Nodes of the float model (in graph order) that the search may keep in float: those of
    :data:`CANDIDATE_OPS` not already kept in float."""
    graph = onnx.load(str(float_path)).graph
    return [n.name for n in graph.node
            if n.op_type in CANDIDATE_OPS and n.name and n.name not in already_float]


def search_frame_ids(train_ids: list[str], calib_frames: int, frames: int) -> list[str]:
    """``frames`` of the clock-ordered ``train_ids`` spread evenly over those that default
    calibration (``calib_frames`` spread over the split) does not take."""
    calibration = set(spread(train_ids, calib_frames))
    return spread([i for i in train_ids if i not in calibration], frames)


def search_tiles(cfg: TileDataConfig, calib_frames: int, frames: int) -> tuple[np.ndarray, str]:
    """Scored tiles float32 (N, C, S, S) of ``frames`` AI4Mars train frames spread over the
    train split without the ``calib_frames`` frames that default calibration takes, and a
    description of where they came from."""
    data = load_ai4mars(Path(cfg.root))
    picks = search_frame_ids(data.splits(cfg.val_fraction)["train"], calib_frames, frames)
    if picks:
        tiles = data.load_tiles(picks, cfg.input_spec, cfg.tiling, with_labels=True).scored().tiles
    if not picks or not len(tiles):
        raise DatasetError(f"{cfg.root}: no scored train tiles outside the {calib_frames} "
                           f"calibration frames to rank the layers on ({len(picks)} frames "
                           "left); give fewer --calib-frames")
    return tiles, (f"{len(picks)} AI4Mars train frames, spread over the split, outside the "
                   f"{calib_frames} default calibration frames")


def rank_by_sensitivity(base: Variant, candidates: list[str],
                        agreement_of: Callable[[Any], float]) -> list[dict[str, Any]]:
    """Each candidate kept in float alone on top of ``base``: ``{"node", "agreement"}`` rows,
    highest agreement first (ties keep graph order). ``agreement_of`` scores a variant."""
    rows = [{"node": node,
             "agreement": round(float(agreement_of(dataclasses.replace(
                 base, float_nodes=(*base.float_nodes, node)))), 5)}
            for node in candidates]
    return sorted(rows, key=lambda r: -r["agreement"])


def cumulative_steps(base: Variant, ranked: list[dict[str, Any]], max_float: int
                     ) -> list[Any]:
    """Variants keeping the first 1, 2, ... of ``ranked`` in float on top of ``base``: at most
    ``max_float`` of them, and never every candidate (one layer stays quantized)."""
    limit = min(max_float, len(ranked) - 1)
    nodes = [r["node"] for r in ranked]
    return [dataclasses.replace(base, float_nodes=(*base.float_nodes, *nodes[:k]))
            for k in range(1, limit + 1)]


def float_search(base: Variant, candidates: list[str], agreement_of: Callable[[Any], float],
                 run_step: Callable[[Any], bool], max_float: int,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Rank ``candidates`` with ``agreement_of`` (search tiles), then run the cumulative steps
    with ``run_step`` (quantize, gate, time; True when the step passes) until one passes.

    Returns the record for the variant table: the base variant and its agreement on the
    search tiles, the ranking, the steps run and why the search stopped."""
    base_agreement = round(float(agreement_of(base)), 5)
    log(f"float search: {base.name} agrees on {base_agreement:.4f} of the search tiles")
    ranked = rank_by_sensitivity(base, candidates, agreement_of)
    for r in ranked:
        log(f"float search: {r['node']} alone in float: search agreement {r['agreement']:.4f}")
    steps, passed = [], None
    for step in cumulative_steps(base, ranked, max_float):
        steps.append(step.name)
        if run_step(step):
            passed = step.name
            break
    if passed:
        stopped = f"{passed} passes the gate"
    elif len(ranked) < 2:
        stopped = "fewer than two quantized layers to choose from"
    else:
        stopped = f"no step passes the gate within {len(steps)} layer(s) kept in float"
    return {"base": base.name, "base_agreement": base_agreement, "ranking": ranked,
            "steps": steps, "stopped": stopped}
