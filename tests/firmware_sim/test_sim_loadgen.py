"""`edge sim loadgen`: a tiny MLPerf LoadGen run, and a clear refusal where LoadGen is absent."""

from __future__ import annotations

import pytest

from edge.classify import FrameClassifier
from edge.runners import make_runner
from edge.sources import open_source
from firmware_sim import loadgen
from firmware_sim.loadgen import (
    DETAIL_FILE,
    SUMMARY_FILE,
    LoadGenConfig,
    LoadGenUnavailable,
    parse_summary,
    run_loadgen,
)
from toolkit_cli.main import main

AVAILABLE, WHY = loadgen.loadgen_available()
needs_loadgen = pytest.mark.skipif(not AVAILABLE, reason=WHY or "MLPerf LoadGen is absent")


def samples_of(folder):
    return [(ref.name, ref.load()) for ref in open_source(folder)]


def spy_classifier(bundle):
    classifier = FrameClassifier(bundle, make_runner(bundle))
    calls = []
    original = classifier.classify

    def classify(image):
        calls.append(image.shape)
        return original(image)

    classifier.classify = classify
    return classifier, calls


@needs_loadgen
@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_tiny_loadgen_run_writes_the_standard_logs(scenario, frames_dir, tiny_bundle, tmp_path):
    classifier, calls = spy_classifier(tiny_bundle)
    config = LoadGenConfig(scenario=scenario, min_duration_ms=50, min_query_count=8,
                           max_query_count=16, expected_latency_ms=1.0, offline_expected_qps=50)
    result = run_loadgen(samples_of(frames_dir), classifier, config, tmp_path / "lg")
    summary_text = (tmp_path / "lg" / SUMMARY_FILE).read_text()
    assert "MLPerf Results Summary" in summary_text
    assert (tmp_path / "lg" / DETAIL_FILE).is_file()
    assert result["summary"]["Scenario"] == scenario
    assert result["summary"]["Mode"] == "PerformanceOnly"
    # Every issued sample went through the same FrameClassifier as `edge classify`.
    assert len(calls) == result["samples_served"] >= 8
    assert result["samples"] == 4


@needs_loadgen
def test_loadgen_cli(frames_dir, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "lg"
    code = main(["sim", "loadgen", str(frames_dir), "--model",
                 str(tiny_bundle.path), "--report", str(out), "--min-duration-ms", "50",
                 "--min-query-count", "8", "--max-query-count", "8"])
    assert code == 0
    assert (out / SUMMARY_FILE).is_file() and (out / "loadgen.json").is_file()
    assert "Scenario: SingleStream" in capsys.readouterr().out


def test_absent_loadgen_is_skipped_with_its_reason():
    pytest.importorskip("mlperf_loadgen", reason="MLPerf LoadGen (mlcommons-loadgen, the "
                                                 "'sim' extra) is not installed")
    assert AVAILABLE


def test_absent_loadgen_is_a_clear_error(frames_dir, tiny_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loadgen.importlib.util, "find_spec",
                        lambda name, *a: None if name == loadgen.MODULE else object())
    with pytest.raises(LoadGenUnavailable, match="mlcommons-loadgen"):
        run_loadgen(samples_of(frames_dir), None, LoadGenConfig(), tmp_path / "x")
    code = main(["sim", "loadgen", str(frames_dir), "--model", str(tiny_bundle.path),
                 "--report", str(tmp_path / "lg")])
    assert code == 1
    assert "error: MLPerf LoadGen is not installed" in capsys.readouterr().err


def test_bad_scenario_is_refused():
    with pytest.raises(ValueError, match="--scenario"):
        LoadGenConfig(scenario="Server")


def test_parse_summary():
    text = ("SUT name : PySUT\nScenario : Offline\nSamples per second: 2323.53\n"
            "Result is : INVALID\n  Min duration satisfied : NO\n * Only processed 3\n")
    parsed = parse_summary(text)
    assert parsed["Scenario"] == "Offline" and parsed["Samples per second"] == "2323.53"
    assert parsed["Min duration satisfied"] == "NO"
