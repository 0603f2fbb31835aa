"""Mixed-precision search (``edge export quantize --float-search``): ranking, steps, graph."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import onnx
import pytest

from edge.bundle import load_bundle
from export.accuracy_gate import GateError
from export.precision_search import (
    candidate_nodes,
    cumulative_steps,
    float_search,
    rank_by_sensitivity,
    search_frame_ids,
)
from export.quantize import QuantizeConfig, QuantVariant, float_nodes_of, quantize_bundle

logging.getLogger().setLevel(logging.ERROR)


@dataclass(frozen=True)
class _Variant:
    float_nodes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return "v" + "".join(f"+{n}" for n in self.float_nodes)


GAIN = {"a": 0.95, "b": 0.97, "c": 0.95, "d": 0.99}


def _agreement(variant: _Variant) -> float:
    return GAIN.get(variant.float_nodes[-1], 0.9) if variant.float_nodes else 0.9


def test_layers_are_ranked_by_the_agreement_they_buy_alone():
    ranked = rank_by_sensitivity(_Variant(("stem",)), list("abcd"), _agreement)
    assert [r["node"] for r in ranked] == ["d", "b", "a", "c"]  # ties keep graph order
    assert ranked[0] == {"node": "d", "agreement": 0.99}


def test_steps_are_cumulative_and_leave_one_layer_quantized():
    ranked = rank_by_sensitivity(_Variant(("stem",)), list("abcd"), _agreement)
    steps = cumulative_steps(_Variant(("stem",)), ranked, max_float=10)
    assert [s.float_nodes for s in steps] == [("stem", "d"), ("stem", "d", "b"),
                                              ("stem", "d", "b", "a")]
    assert len(cumulative_steps(_Variant(), ranked, max_float=2)) == 2
    assert cumulative_steps(_Variant(), ranked[:1], max_float=5) == []


def test_the_search_stops_at_the_first_step_that_passes():
    ran = []

    def run_step(variant: _Variant) -> bool:
        ran.append(variant.name)
        return len(variant.float_nodes) == 2

    record = float_search(_Variant(), list("abcd"), _agreement, run_step, 3, log=lambda _: None)
    assert ran == record["steps"] == ["v+d", "v+d+b"]
    assert record["stopped"] == "v+d+b passes the gate" and record["base_agreement"] == 0.9
    failed = float_search(_Variant(), list("abcd"), _agreement, lambda _: False, 2,
                          log=lambda _: None)
    assert failed["steps"] == ["v+d", "v+d+b"] and "no step passes" in failed["stopped"]


def test_search_frames_avoid_the_calibration_frames():
    ids = [f"f{k:03d}" for k in range(100)]
    picks = search_frame_ids(ids, calib_frames=10, frames=30)
    assert len(picks) == 30 and len(set(picks)) == 30
    assert not set(picks) & {ids[i] for i in (0, 11, 22, 33, 44, 55, 66, 77, 88, 99)}
    assert picks == sorted(picks)  # still clock-ordered, spread over the split


def test_no_search_tiles_left_is_a_clear_error(ai4mars_dir):
    """Calibration takes every train frame: nothing is left to rank the layers on."""
    from export.precision_search import search_tiles
    from train.datasets.errors import DatasetError
    from train.tiles import TileDataConfig

    with pytest.raises(DatasetError, match=r"no scored train tiles outside the 1000 "
                                           r"calibration frames.*fewer --calib-frames"):
        search_tiles(TileDataConfig(root=str(ai4mars_dir)), calib_frames=1000, frames=400)


def test_a_float_node_keeps_its_float_weights(student, tmp_path):
    from export.quantize import quantize_model

    src = load_bundle(student["bundle"]).model_path
    base = QuantVariant("qdq", "u8", True, "minmax", stem_float=True)
    candidates = candidate_nodes(src, float_nodes_of(src, base))
    graph = onnx.load(str(src)).graph
    assert candidates and float_nodes_of(src, base)[0] not in candidates
    assert {n.op_type for n in graph.node if n.name in candidates} <= {
        "Conv", "Gemm", "MatMul", "GlobalAveragePool"}
    keep = candidates[1]
    variant = QuantVariant("qdq", "u8", True, "minmax", stem_float=True, float_nodes=(keep,))
    assert variant.name == "qdq-u8-pc-minmax-stemfp+1fp"
    calib = np.random.default_rng(0).normal(size=(64, 1, 32, 32)).astype(np.float32)
    quant = onnx.load(str(quantize_model(src, tmp_path / "q.onnx", variant, calib, "tiles")))
    made_by = {out: n.op_type for n in quant.graph.node for out in n.output}
    node = next(n for n in quant.graph.node if n.name == keep)
    inits = {t.name: t for t in quant.graph.initializer}
    weight = node.input[1]  # a float initializer, not the output of a DequantizeLinear
    assert weight in inits and inits[weight].data_type == onnx.TensorProto.FLOAT
    other = next(n for n in quant.graph.node if n.name == candidates[0])
    assert made_by.get(other.input[1]) == "DequantizeLinear"  # its neighbour is quantized


def test_quantize_records_the_search_when_no_variant_passes(student, ai4mars_dir, tmp_path):
    cfg = QuantizeConfig(bundle=str(student["bundle"]), out=str(tmp_path / "int8"),
                         trt_out=None, data=str(ai4mars_dir), calib_frames=4, repeats=1,
                         threads=(1,), min_agreement=1.01, max_accuracy_drop=1.0,
                         variants=["qdq-u8-pc-minmax"], float_search=2, search_frames=3)
    with pytest.raises(GateError, match="float search: no step passes"):
        quantize_bundle(cfg, log=lambda *_: None)
    assert not (tmp_path / "int8").exists()
    table = json.loads((tmp_path / "int8.variants.json").read_text())
    search = table["float_search"]
    assert search["base"] == "qdq-u8-pc-minmax" and 0 <= search["base_agreement"] <= 1
    assert [r["variant"] for r in table["variants"]] == ["qdq-u8-pc-minmax", *search["steps"]]
    assert search["steps"] == ["qdq-u8-pc-minmax+1fp", "qdq-u8-pc-minmax+2fp"]
    src = load_bundle(student["bundle"]).model_path
    assert {r["node"] for r in search["ranking"]} == set(candidate_nodes(src, []))
    second = table["variants"][2]
    assert second["float_nodes"] == [r["node"] for r in search["ranking"][:2]]
    assert search["search_tiles"] > 0 and "outside the 4" in search["search_from"]
