"""train.throughput and ``edge train throughput`` with tiny settings (CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from toolkit_cli.main import app
from train.throughput import markdown_table, training_throughput

TINY = {"tile_pixels": 16, "batch_size": 8, "steps": 2, "warmup": 1}


def test_tiny_run_reports_positive_rates_and_settings():
    before = torch.get_num_threads()
    r = training_throughput("tiny", threads=1, **TINY)
    assert torch.get_num_threads() == before
    assert r["preset"] == "tiny" and r["device"] == "cpu" and r["amp"] is None
    assert r["threads"] == 1 and r["torch"] == torch.__version__
    assert r["params"] > r["encoder_params"] > 0
    assert 0 < r["images_per_s_p10"] <= r["images_per_s_median"] <= r["images_per_s_p90"]
    assert (r["tile_pixels"], r["batch_size"], r["steps"], r["warmup"]) == (16, 8, 2, 1)
    table = markdown_table([r])
    assert table.splitlines()[0].startswith("| preset | params |")
    assert "| tiny |" in table


@pytest.mark.parametrize("kwargs", [{"preset": "huge"}, {"preset": "tiny", "batch_size": 1},
                                    {"preset": "tiny", "steps": 0},
                                    {"preset": "tiny", "threads": 0},
                                    {"preset": "tiny", "precision": "fp16"}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        training_throughput(**{**TINY, **kwargs})


def test_bf16_on_the_cpu_runs_under_autocast_and_is_recorded():
    r = training_throughput("tiny", threads=1, precision="bf16", **TINY)
    assert r["amp"] == "bfloat16" and r["device"] == "cpu"
    assert "int8 dot product:" in r["cpu"]  # the CPU's features say whether bf16 is native
    assert "| bfloat16 |" in markdown_table([r])


def test_cli_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "res" / "throughput.json"
    result = CliRunner().invoke(app, ["train", "throughput", "--preset", "tiny",
                                      "--tile-pixels", "16", "--batch-size", "8", "--steps", "2",
                                      "--warmup", "0", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "| preset | params | autocast | images/s (median) | p10 | p90 |" in result.output
    assert "| none (float32) |" in result.output
    rows = json.loads(out.read_text())["results"]
    assert [r["preset"] for r in rows] == ["tiny"]
    assert rows[0]["images_per_s_median"] > 0


def test_cli_unknown_preset_exits_1_before_timing():
    result = CliRunner().invoke(app, ["train", "throughput", "--preset", "tiny,huge"])
    assert result.exit_code == 1
    assert "unknown preset 'huge'" in result.output
