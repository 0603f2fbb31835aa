"""train.benchmark: the summary of result files (hand-written), a tiny end-to-end run on the
synthetic AI4Mars folder with its result cache, and the checks of methods and presets."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

import train.benchmark as tb
from train.benchmark import (
    METHODS,
    PRESETS,
    BenchmarkConfig,
    markdown_summary,
    result_path,
    run_benchmark,
    summarise,
    write_summary,
)

FIELDS = {"dataset", "split", "method", "label_fraction", "metric", "mean", "std", "seeds",
          "preset", "command", "values"}


def quiet(*_args: object) -> None:
    """A log function that prints nothing."""


def no_temp_files(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert not left, left


# --- summary of hand-written results --------------------------------------------------------

# (dataset, method) -> seed -> fraction -> (accuracy, mean_recall)
RESULTS = {
    ("ai4mars", "supervised"): {0: {"0.1": (0.5, 0.4), "1.0": (0.7, 0.6)},
                                1: {"0.1": (0.6, 0.5), "1.0": (0.8, 0.7)},
                                2: {"0.1": (0.7, 0.3), "1.0": (0.9, 0.8)}},
    ("ai4mars", "simclr+cluster-eliminate"): {0: {"0.1": (0.55, 0.45), "1.0": (0.75, 0.65)},
                                              3: {"0.1": (0.65, 0.35), "1.0": (0.85, 0.6)}},
    ("msl-v2.1", "simclr"): {1: {"1.0": (0.4, 0.2)}},  # one seed, one fraction
}


def write_results(work: Path) -> None:
    for (dataset, method), seeds in RESULTS.items():
        for seed, fracs in seeds.items():
            path = result_path(work, dataset, method, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({
                "dataset": dataset, "method": method, "seed": seed, "preset": {},
                "fractions": {f: {"accuracy": a, "mean_recall": r, "train_items": 10}
                              for f, (a, r) in fracs.items()}}))


def test_result_path_layout(tmp_path):
    assert result_path(tmp_path, "ai4mars", "simclr+cluster+mix", 2) == \
        tmp_path / "results" / "ai4mars" / "simclr_cluster_mix" / "seed2.json"


def test_summarise_mean_std_and_fields(tmp_path):
    work = tmp_path / "work"
    write_results(work)
    records = summarise(work, "cpu-tiny", "edge train benchmark --seeds 0,1,2",
                        ["ai4mars", "msl-v2.1"], METHODS, (0.1, 1.0))
    index = {(r["dataset"], r["method"], r["label_fraction"], r["metric"]): r for r in records}
    # 2 fractions x 2 metrics for each ai4mars method, 1 x 2 for the MSL one.
    assert len(records) == len(index) == 4 + 4 + 2
    for r in records:
        assert set(r) == FIELDS
        assert r["metric"] in {"accuracy", "mean_recall"}
        assert r["preset"] == "cpu-tiny" and r["command"] == "edge train benchmark --seeds 0,1,2"
        assert r["split"].startswith("val")
    for (dataset, method), seeds in RESULTS.items():
        for frac in (0.1, 1.0):
            for m, metric in enumerate(("accuracy", "mean_recall")):
                values = [fr[str(frac)][m] for fr in seeds.values() if str(frac) in fr]
                key = (dataset, method, frac, metric)
                if not values:
                    assert key not in index
                    continue
                r = index[key]
                assert r["seeds"] == sorted(seeds)
                assert r["values"] == pytest.approx(values)
                assert r["mean"] == pytest.approx(np.mean(values), abs=1e-4)
                want_std = np.std(values, ddof=1) if len(values) > 1 else 0.0
                assert r["std"] == pytest.approx(want_std, abs=1e-4)
    # A spot check by hand: supervised accuracy at 10 % over seeds 0, 1, 2 is 0.6 +- 0.1.
    r = index[("ai4mars", "supervised", 0.1, "accuracy")]
    assert (r["mean"], r["std"], r["seeds"]) == (0.6, 0.1, [0, 1, 2])


def test_summarise_takes_only_the_seeds_asked_for(tmp_path):
    """Seeds 0-2 are in the work folder; a run with --seeds 0,1 averages those two only."""
    work = tmp_path / "work"
    write_results(work)
    records = summarise(work, "cpu-tiny", "edge train benchmark --seeds 0,1",
                        ["ai4mars"], ("supervised",), (0.1,), seeds=(0, 1))
    r = next(r for r in records if r["metric"] == "accuracy")
    values = [RESULTS[("ai4mars", "supervised")][s]["0.1"][0] for s in (0, 1)]
    assert r["seeds"] == [0, 1] and r["values"] == pytest.approx(values)
    assert r["mean"] == pytest.approx(np.mean(values), abs=1e-4)


def test_markdown_and_atomic_write(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_results(work)
    records = summarise(work, "cpu-tiny", "edge train benchmark", ["ai4mars", "msl-v2.1"],
                        METHODS, (0.1, 1.0))
    preset = asdict(PRESETS["cpu-tiny"])
    md = markdown_summary(records, preset)
    assert "Preset `cpu-tiny`" in md and "Command: `edge train benchmark`" in md
    assert "## ai4mars, 10% of labels" in md and "## ai4mars, 100% of labels" in md
    assert "## msl-v2.1, 100% of labels" in md and "## msl-v2.1, 10% of labels" not in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| method")]
    # One row per (dataset, fraction, method) with results: 2 + 2 for ai4mars, 1 for MSL.
    assert len(rows) == 5
    assert "| supervised | 0.6000 ± 0.1000 | 0.4000 ± 0.1000 | 3 |" in md
    assert "| simclr | 0.4000 ± 0.0000 | 0.2000 ± 0.0000 | 1 |" in md
    assert sum(row.startswith("| simclr+cluster-eliminate |") for row in rows) == 2

    write_summary(out, records, preset)
    assert json.loads((out / "benchmark.json").read_text()) == records
    assert (out / "benchmark.md").read_text() == md
    write_summary(out, records[:2], preset)  # overwritten in place
    assert len(json.loads((out / "benchmark.json").read_text())) == 2
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json", "benchmark.md"]
    no_temp_files(out)


def test_markdown_of_no_records():
    md = markdown_summary([], asdict(PRESETS["cpu-tiny"]))
    assert "Command" not in md and "| method" not in md


# --- a tiny end-to-end run ------------------------------------------------------------------

TINY = {"epochs": 2, "epoch_size": 64, "batch_size": 32, "ai4mars_train_frames": 4,
        "max_items_per_domain": None, "supervised_steps": 3, "probe_steps": 5,
        "cluster_ks": (2,)}
E2E_METHODS = ("supervised", "simclr", "simclr+cluster-eliminate")


def test_run_benchmark_end_to_end_and_cached(ai4mars_root, tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    data_root.mkdir()
    (data_root / "ai4mars-msl-ncam-256").symlink_to(ai4mars_root, target_is_directory=True)
    cfg = BenchmarkConfig(preset="cpu-tiny", seeds=(0,), datasets=("ai4mars",),
                          methods=E2E_METHODS, fractions=(0.5, 1.0),
                          work_dir=str(tmp_path / "work"), out_dir=str(tmp_path / "out"),
                          data_root=str(data_root), threads=1, command="edge train benchmark",
                          preset_overrides=dict(TINY))
    monkeypatch.setattr(tb, "git_revision", lambda: "rev-a")
    records = run_benchmark(cfg, log=quiet)
    assert {(r["method"], r["label_fraction"], r["metric"]) for r in records} == {
        (m, f, metric) for m in E2E_METHODS for f in (0.5, 1.0)
        for metric in ("accuracy", "mean_recall")}
    assert len(records) == 12
    for r in records:
        assert set(r) == FIELDS and r["dataset"] == "ai4mars" and r["seeds"] == [0]
        assert r["std"] == 0.0 and r["preset"] == "cpu-tiny"
        assert 0.0 <= r["mean"] <= 1.0
    out = tmp_path / "out"
    assert json.loads((out / "benchmark.json").read_text()) == records
    md = (out / "benchmark.md").read_text()
    for m in E2E_METHODS:
        assert f"| {m} |" in md
    runs = json.loads((out / "runs.json").read_text())
    assert [(r["method"], r["seed"]) for r in runs] == [(m, 0) for m in E2E_METHODS]
    for r in runs:
        assert r["seconds"] > 0 and r["git_revisions"] == ["rev-a"]
        if r["method"] == "supervised":
            assert r["pretrain_seconds"] is None and r["pretrain_epochs"] == []
        else:
            assert 0 < r["pretrain_seconds"] <= r["seconds"]
            assert [h["epoch"] for h in r["pretrain_epochs"]] == [0, 1]
    no_temp_files(out)

    work = tmp_path / "work" / "cpu-tiny"
    for m in E2E_METHODS:
        result = json.loads(result_path(work, "ai4mars", m, 0).read_text())
        assert set(result["fractions"]) == {"0.5", "1.0"}
        assert result["preset"]["epochs"] == 2 and result["preset"]["cluster_ks"] == [2]
        if m != "supervised":
            history = result["pretrain_history"]
            assert [h["epoch"] for h in history] == [0, 1]
            assert all(h["steps"] == 2 and "knn_accuracy" in h for h in history)
            assert ("purity_k2" in history[1]) == ("cluster" in m)
    assert (work / "seed0" / "simclr_on_ai4mars" / "done.json").exists()
    assert (work / "seed0" / "simclr_cluster-eliminate_on_ai4mars" / "done.json").exists()
    no_temp_files(work)

    def no_training(*_a: object, **_k: object) -> None:
        raise AssertionError("trained again despite cached results")

    # A new label fraction runs only that fraction, on the cached encoders, and keeps the
    # results the files had.
    before = {m: json.loads(result_path(work, "ai4mars", m, 0).read_text()) for m in E2E_METHODS}
    monkeypatch.setattr(tb, "pretrain", no_training)
    monkeypatch.setattr(tb, "git_revision", lambda: "rev-b")
    wider = replace(cfg, fractions=(0.25, 0.5, 1.0))
    wider_records = run_benchmark(wider, log=quiet)
    assert len(wider_records) == 18
    assert [r for r in wider_records if r["label_fraction"] != 0.25] == records
    for m in E2E_METHODS:
        result = json.loads(result_path(work, "ai4mars", m, 0).read_text())
        assert set(result["fractions"]) == {"0.25", "0.5", "1.0"}
        for frac in ("0.5", "1.0"):
            assert result["fractions"][frac] == before[m]["fractions"][frac]
            assert result["fractions"][frac]["git_revision"] == "rev-a"
        assert result["fractions"]["0.25"]["git_revision"] == "rev-b"
        assert result["seconds"] > before[m]["seconds"]
    runs = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert all(r["git_revisions"] == ["rev-a", "rev-b"] for r in runs)

    # A further call trains nothing: every result holds every fraction asked for.
    monkeypatch.setattr(tb, "train_supervised", no_training)
    monkeypatch.setattr(tb, "load_encoder", no_training)
    assert run_benchmark(wider, log=quiet) == wider_records
    assert run_benchmark(cfg, log=quiet) == records

    # Files written before `precision` existed ran as 'auto', and are reused as such.
    for m in E2E_METHODS:
        path = result_path(work, "ai4mars", m, 0)
        result = json.loads(path.read_text())
        assert result["preset"].pop("precision") == "auto"
        path.write_text(json.dumps(result))
    for done_file in work.glob("seed0/*/done.json"):
        old = json.loads(done_file.read_text())
        assert old["settings"].pop("precision") == "auto"
        done_file.write_text(json.dumps(old))
    assert run_benchmark(cfg, log=quiet) == records

    # A cached encoder pretrained with other settings is refused, not reused.
    done = work / "seed0" / "simclr_on_ai4mars" / "done.json"
    saved = json.loads(done.read_text())
    assert saved["settings"]["seed"] == 0 and "root" not in saved["settings"]["data"]
    saved["settings"]["lr"] = 1.0
    done.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"simclr_on_ai4mars/done\.json: its encoder was "
                                         r"pretrained with other settings"):
        run_benchmark(replace(cfg, methods=("simclr",), fractions=(0.75,)), log=quiet)


def test_unknown_method_raises_with_its_name(tmp_path):
    cfg = BenchmarkConfig(methods=("simclr", "simclr+magic"), work_dir=str(tmp_path / "w"),
                          out_dir=str(tmp_path / "o"), data_root=str(tmp_path))
    with pytest.raises(ValueError, match="simclr\\+magic"):
        run_benchmark(cfg, log=quiet)
    assert not (tmp_path / "o").exists()


def test_unknown_preset_raises_with_its_name(tmp_path):
    cfg = BenchmarkConfig(preset="tpu-giant", work_dir=str(tmp_path / "w"),
                          out_dir=str(tmp_path / "o"), data_root=str(tmp_path))
    with pytest.raises(ValueError, match="tpu-giant"):
        cfg.resolved_preset()
    with pytest.raises(ValueError, match="tpu-giant"):
        run_benchmark(cfg, log=quiet)


# --- preset overrides -----------------------------------------------------------------------

def test_overrides_take_the_type_of_the_preset_field():
    assert tb.parse_overrides(["supervised_steps=2000", "lr=5e-4", "encoder=small"]) == {
        "supervised_steps": 2000, "lr": 5e-4, "encoder": "small"}
    assert tb.parse_overrides([]) == {}
    assert tb.parse_overrides(["precision=bf16"]) == {"precision": "bf16"}
    assert tb.parse_overrides(["mix=msl:0.8,ai4mars:0.1,hirise:0.1", "cluster_ks=8,16"]) == {
        "mix": (("msl", 0.8), ("ai4mars", 0.1), ("hirise", 0.1)), "cluster_ks": (8, 16)}


@pytest.mark.parametrize(("item", "match"), [
    ("supervised_steps", "KEY=VALUE"), ("nope=1", "KEY=VALUE"), ("name=x", "KEY=VALUE"),
    ("seeds=1", "KEY=VALUE"), ("supervised_steps=many", "takes a int"),
    ("mix=mars:1", "unknown domain"), ("cluster_ks=8,x", "takes a list"),
    ("precision=fp16", "precision takes one of auto, fp32, bf16"),
])
def test_bad_overrides_are_refused(item, match):
    with pytest.raises(ValueError, match=match) as err:
        tb.parse_overrides([item])
    assert item in str(err.value)


def test_cli_override_names_the_preset_and_its_work_folder(monkeypatch, tmp_path):
    from toolkit_cli.main import main

    seen = {}

    def fake_run(cfg, log):
        seen["preset"] = cfg.resolved_preset()
        return []

    monkeypatch.setattr(tb, "run_benchmark", fake_run)
    code = main(["train", "benchmark", "--override", "supervised_steps=2000", "--work-dir",
                 str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 0
    assert seen["preset"].supervised_steps == 2000
    assert seen["preset"].name == "cpu-tiny+supervised_steps=2000"
    assert main(["train", "benchmark", "--override", "bogus=1"]) == 1
