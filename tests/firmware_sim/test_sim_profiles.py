"""Hardware profiles: the shipped data file, user files and their errors, factor derivation,
and the host calibration workload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware_sim.calibration import HostCalibration, matmul_model_bytes, measure_host
from firmware_sim.profiles import (
    STAGES,
    ProfileError,
    derive_emulation,
    get_profile,
    host_threads_for,
    load_profiles,
    parse_profiles_text,
)
from toolkit_cli.main import main

SHIPPED = {"host", "rad750", "snapdragon801", "orin-nano-cpu", "orin-nano-gpu", "hpsc"}


def fake_measure(scores):
    """A calibration stand-in: ``scores[threads]`` GFLOP/s."""
    calls = []

    def measure(threads):
        calls.append(threads)
        return HostCalibration(gflops=scores[threads], median_gflops=scores[threads],
                               threads=threads, size=8, repeats=1, best_ms=1.0, cpu="test")

    measure.calls = calls
    return measure


def test_shipped_profiles_carry_figures_sources_and_derivations():
    profiles = load_profiles()
    assert SHIPPED <= set(profiles)
    for key in SHIPPED - {"host"}:
        p = profiles[key]
        assert p.cpu is not None and p.cpu.derivation
        assert p.published and all(item.get("figure") and item.get("source")
                                    for item in p.published), key
    assert profiles["host"].speed_factor == 1.0
    assert profiles["rad750"].cpu.peak_gflops == pytest.approx(0.4)  # 0.2 GHz x 2 FLOP
    assert profiles["rad750"].memory_cap_mb == 256
    assert profiles["orin-nano-gpu"].accelerator.peak_gflops == pytest.approx(1280.0)
    assert profiles["orin-nano-gpu"].rough and not profiles["rad750"].rough


def test_factor_is_host_score_over_target_score():
    profiles = load_profiles()
    measure = fake_measure({1: 80.0, 2: 120.0})
    rad = derive_emulation(profiles["rad750"], 1, measure)
    assert all(rad.stage_factors[s] == pytest.approx(200.0) for s in STAGES)  # 80 / 0.4
    assert measure.calls == [1]
    gpu = derive_emulation(profiles["orin-nano-gpu"], 2, measure)
    assert gpu.stage_factors["decode"] == pytest.approx(80.0 / 24.0)  # one A78AE core
    assert gpu.stage_factors["inference"] == pytest.approx(120.0 / 1280.0)
    cpu = derive_emulation(profiles["orin-nano-cpu"], 2, measure)
    assert cpu.stage_factors["inference"] == pytest.approx(120.0 / 144.0)  # 6 cores
    assert set(cpu.calibration) == {"1_thread", "2_threads"}
    assert any("measured" in line for line in cpu.derivation)


def test_fixed_factor_needs_no_calibration():
    measure = fake_measure({})
    emulation = derive_emulation(load_profiles()["host"], 1, measure)
    assert emulation.stage_factors == {s: 1.0 for s in STAGES}
    assert measure.calls == [] and emulation.calibration == {}


def test_host_threads_follow_the_profile_capped_at_the_host(monkeypatch):
    monkeypatch.setattr("firmware_sim.profiles.host_cpus", lambda: 2)
    profiles = load_profiles()
    assert host_threads_for(profiles["hpsc"], None) == 2
    assert host_threads_for(profiles["rad750"], None) == 1
    assert host_threads_for(profiles["host"], None) == 1
    assert host_threads_for(profiles["hpsc"], 1) == 1


def write_profiles(path, profiles):
    path.write_text(json.dumps({"schema_version": 1, "profiles": profiles}))
    return path


def test_user_file_adds_and_overrides_profiles(tmp_path):
    path = write_profiles(tmp_path / "mine.json", {
        "fpga-soft": {"title": "soft core", "threads": 1, "speed_factor": 40.0},
        "rad750": {"title": "slower RAD750", "speed_factor": 500},
    })
    profiles = load_profiles(path)
    assert profiles["fpga-soft"].speed_factor == 40.0
    assert profiles["rad750"].title == "slower RAD750"
    assert "mine.json" in profiles["rad750"].origin
    assert "hpsc" in profiles  # shipped ones are kept


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{ not json", r"mine.json.*not valid JSON \(line 1"),
        ('{"profiles": []}', r"mine.json.*'profiles' object"),
        ('{"schema_version": 9, "profiles": {}}', r"mine.json.*schema_version 9"),
        ('{"profiles": {"x": {"title": "no factor"}}}', r"mine.json.*profile 'x'.*speed_factor"),
        ('{"profiles": {"x": {"speed_factor": -2}}}', r"profile 'x'.*'speed_factor' must be"),
        ('{"profiles": {"x": {"cpu": {"cores": 2}}}}', r"profile 'x': cpu: lacks clock_ghz"),
        ('{"profiles": {"x": {"speed_factor": 1, "threads": 1.5}}}', r"'threads' must be"),
    ],
)
def test_malformed_user_file_is_named(tmp_path, content, match):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match=match):
        load_profiles(path)


def test_missing_user_file_is_named(tmp_path):
    with pytest.raises(ProfileError, match="nope.json.*cannot be read"):
        load_profiles(tmp_path / "nope.json")


def test_unknown_profile_lists_the_known_ones():
    known = r"\(known: host, hpsc, orin-nano-cpu, orin-nano-gpu, rad750, snapdragon801\)"
    with pytest.raises(ProfileError, match=r"unknown profile 'cray' " + known):
        get_profile("cray", load_profiles())


def test_cli_unknown_profile_is_a_usage_error(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["sim", str(frames_dir), "--fps", "2", "--model", str(tiny_bundle.path),
                 "--profile", "cray", "--report", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: unknown profile 'cray'" in err and "rad750" in err
    assert not out.exists()


def test_cli_malformed_profiles_file_is_named(frames_dir, tiny_bundle, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code = main(["sim", str(frames_dir), "--fps", "2", "--model", str(tiny_bundle.path),
                 "--profiles", str(bad), "--report", str(tmp_path / "sim")])
    assert code == 1
    assert f"error: profiles file '{bad}'" in capsys.readouterr().err


def test_cli_lists_profiles_with_user_ones(tmp_path, capsys):
    path = write_profiles(tmp_path / "mine.json", {"fpga-soft": {"speed_factor": 40}})
    assert main(["sim", "profiles", "--profiles", str(path)]) == 0
    out = capsys.readouterr().out
    for key in SHIPPED | {"fpga-soft"}:
        assert key in out
    assert "(rough)" in out


def test_calibration_model_is_a_valid_matmul():
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    model = onnx.load_from_string(matmul_model_bytes(8))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    session = ort.InferenceSession(matmul_model_bytes(8), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 8), dtype=np.float32)
    b = rng.standard_normal((8, 8), dtype=np.float32)
    (c,) = session.run(None, {"A": a, "B": b})
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_measure_host_reports_a_positive_rate():
    result = measure_host(threads=1, size=64, repeats=3)
    assert result.gflops > 0 and result.median_gflops <= result.gflops
    assert result.threads == 1 and result.size == 64
    assert result.best_ms == pytest.approx(2 * 64**3 / (result.gflops * 1e9) * 1e3, rel=0.01)


def test_the_documented_example_profiles_file_parses():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "firmware_sim.md"
    if not doc.is_file():
        pytest.skip("docs/firmware_sim.md is not in this checkout")
    block = doc.read_text().split("```json\n", 1)[1].split("```", 1)[0]
    profiles = parse_profiles_text(block, "docs/firmware_sim.md")
    assert profiles["my-board"].speed_factor == 40
    assert profiles["my-soc"].cpu.peak_gflops == pytest.approx(4 * 1.2 * 4)
