import json

from edge_images import synthetic_frame, write_frame

import edge.bench as edge_bench
from edge.bench import BenchConfig, bench, bench_interleaved, format_table
from edge.cpu_info import cpu_info
from edge.sources import open_source
from toolkit_cli.main import main


def test_bench_one_row_per_thread_count(frames_dir, tiny_bundle):
    frames = list(open_source(frames_dir))
    rows = bench(tiny_bundle, frames, BenchConfig(threads=(1, 2), repeats=1, warmup=1))
    assert [r["threads"] for r in rows] == [1, 2]
    for row in rows:
        assert row["backend"] == "onnxruntime"
        assert row["frames"] == 2
        for key in ("frames_per_s", "tiles_per_s", "p50_ms", "p99_ms", "max_ms"):
            assert row[key] > 0, key
        assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert row["cpu"] == cpu_info().describe()  # a figure names the CPU's features
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[0].startswith("| backend | threads |")


def test_bench_interleaves_the_thread_counts_pass_by_pass(frames_dir, tiny_bundle,
                                                         monkeypatch):
    budgets = []
    monkeypatch.setattr(edge_bench, "apply_thread_budget", budgets.append)
    frames = list(open_source(frames_dir))
    rows = bench(tiny_bundle, frames, BenchConfig(threads=(1, 2, 4), repeats=3, warmup=1))
    # one budget per classifier made (and warmed up), then each pass times every count once,
    # the order rotated by one each pass
    assert budgets == [1, 2, 4, 1, 2, 4, 2, 4, 1, 4, 1, 2]
    assert [r["threads"] for r in rows] == [1, 2, 4]
    assert all(r["frames"] == 3 * len(frames) for r in rows)


def test_a_frame_decoded_while_its_source_was_read_counts_that_decode(tiny_bundle):
    """A video frame is decoded once, when the source is read; its decode time is still
    part of every pass's per-frame time and of the throughput's wall time."""
    from edge.sources import FrameRef

    image = synthetic_frame(256, 256)
    frames = [FrameRef(f"clip.avi#{i:06d}", lambda: image, decode_ms=40.0) for i in range(3)]
    (row,) = bench(tiny_bundle, frames, BenchConfig(threads=(1,), repeats=2, warmup=0))
    assert row["frames"] == 6
    assert row["p50_ms"] >= 40.0
    assert row["frames_per_s"] < 1000 / 40.0


def test_bench_skips_bad_frames(frames_dir, tiny_bundle):
    (frames_dir / "c.png").write_bytes(b"")
    write_frame(frames_dir / "d.png", synthetic_frame(8, 256))
    frames = list(open_source(frames_dir))
    (row,) = bench(tiny_bundle, frames, BenchConfig(threads=(1,), repeats=2, warmup=0))
    assert row["frames"] == 4  # 2 good frames x 2 passes


def test_bench_cli(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", str(frames_dir), "--model", str(tiny_bundle.path), "--threads", "1",
                 "--repeats", "1", "--max-frames", "2", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["frames"] == 2
    assert "| onnxruntime | 1 | mixed | 2 |" in capsys.readouterr().out


def test_bench_cli_bad_threads(frames_dir, tiny_bundle, capsys):
    assert main(["bench", str(frames_dir), "--model", str(tiny_bundle.path),
                 "--threads", "1,zero"]) == 1
    assert "--threads" in capsys.readouterr().err


def test_interleaved_bench_times_bundles_side_by_side(frames_dir, tiny_bundle):
    frames = list(open_source(frames_dir))
    out = bench_interleaved([("a", tiny_bundle), ("b", tiny_bundle)], frames,
                            BenchConfig(threads=(1, 2), repeats=1, warmup=1), rounds=3)
    assert list(out) == ["a", "b"]
    for label, rows in out.items():
        assert [r["threads"] for r in rows] == [1, 2]
        for row in rows:
            assert row["rounds"] == 3 and row["frames"] == 3 * 2
            assert row["tiles_per_s_min"] <= row["tiles_per_s"] <= row["tiles_per_s_max"]
            assert 0 < row["p50_ms"] <= row["p99_ms"]
            assert row["speed_vs_first"] == 1.0 if label == "a" else row["speed_vs_first"] > 0
            assert "int8 dot product:" in row["cpu"]


def test_interleaved_rounds_rotate_the_order_and_take_medians(tiny_bundle, monkeypatch):
    calls = []
    speeds = {"a": iter([100.0, 300.0, 200.0]), "b": iter([50.0, 60.0, 400.0])}
    frames = [object()]

    def fake(classifier, given, warmup, repeats):
        label = "a" if classifier is first_classifier[0] else "b"
        timed = given is frames  # the warm-up and the settling frames are slices
        if given:
            calls.append(label if timed else f"settle {label}")
        tps = next(speeds[label]) if timed else 1.0
        return {"size": "64x64", "frames": len(frames), "tiles_per_s": tps,
                "p50_ms": 1000 / tps, "p99_ms": 2000 / tps}

    first_classifier = []
    real_classifier = edge_bench.FrameClassifier

    def classifier_factory(bundle, runner):
        made = real_classifier(bundle, runner)
        first_classifier.append(made)
        return made

    monkeypatch.setattr(edge_bench, "time_classifier", fake)
    monkeypatch.setattr(edge_bench, "FrameClassifier", classifier_factory)
    out = bench_interleaved([("a", tiny_bundle), ("b", tiny_bundle)], frames,
                            BenchConfig(threads=(1,), repeats=1, warmup=0), rounds=3)
    # every timed turn follows untimed settling frames of the same model
    turns = ["a", "b", "b", "a", "a", "b"]
    assert calls == [c for t in turns for c in (f"settle {t}", t)]
    a, b = out["a"][0], out["b"][0]
    assert (a["tiles_per_s"], a["tiles_per_s_min"], a["tiles_per_s_max"]) == (200.0, 100.0, 300.0)
    assert b["tiles_per_s"] == 60.0
    assert b["speed_vs_first"] == 0.5  # median of 50/100, 60/300, 400/200


def test_each_timed_turn_pauses_then_runs_untimed_frames(frames_dir, tiny_bundle, monkeypatch):
    import edge.bench as eb

    events = []
    monkeypatch.setattr(eb.time, "sleep", lambda s: events.append(("sleep", s)))
    real = eb._time_passes

    def spy(classifier, frames, warmup, repeats, into):
        events.append(("frames", len(frames)))
        return real(classifier, frames, warmup, repeats, into)

    monkeypatch.setattr(eb, "_time_passes", spy)
    frames = list(open_source(frames_dir))
    bench(tiny_bundle, frames, BenchConfig(threads=(1, 2), repeats=1, warmup=1))
    settling = ("frames", min(eb.SETTLE_FRAMES, len(frames)))
    # a warm-up pass per thread count, then per turn: the pause, the settling frames, the
    # timed pass
    turn = [("sleep", eb.SETTLE_PAUSE_S), settling, ("frames", len(frames))]
    assert events == [("frames", 1)] * 2 + turn * 2 and eb.SETTLE_PAUSE_S > 0
