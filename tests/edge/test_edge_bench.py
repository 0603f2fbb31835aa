import json

from edge_images import synthetic_frame, write_frame

from edge.bench import BenchConfig, bench, format_table
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
    table = format_table(rows).splitlines()
    assert len(table) == 2 + len(rows) and table[0].startswith("| backend | threads |")


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
