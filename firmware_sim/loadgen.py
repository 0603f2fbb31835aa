"""``edge sim loadgen``: drive the edge runtime through MLPerf LoadGen.

An optional extra (``pip install 'mars-edge-terrain[sim]'``, PyPI ``mlcommons-loadgen``),
imported lazily. The query sample library (QSL) holds the stream's frames decoded in
memory, as LoadGen expects (loading and unloading are no-ops); the system under test
(SUT) classifies each sample with the same :class:`edge.classify.FrameClassifier` as
``edge classify`` (preprocess, inference, postprocess; decoding happened when the QSL was
filled) and answers at once. Scenarios: SingleStream (one query at a time, the next issued
when the previous completes; p90 latency) and Offline (all samples in one query;
throughput). LoadGen writes its standard ``mlperf_log_summary.txt`` and
``mlperf_log_detail.txt`` into the report folder; this runs on the host as it is (no
hardware profile).
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.classify import FrameClassifier
from firmware_sim.report import write_atomic

SCENARIOS = ("SingleStream", "Offline")
MODULE = "mlperf_loadgen"
SUMMARY_FILE = "mlperf_log_summary.txt"
DETAIL_FILE = "mlperf_log_detail.txt"
RESULT_FILE = "loadgen.json"
INSTALL_HINT = "pip install 'mlcommons-loadgen>=6.0' (or the 'sim' extra: pip install -e '.[sim]')"


class LoadGenUnavailable(RuntimeError):
    """MLPerf LoadGen (the ``mlperf_loadgen`` module) is not installed."""


def loadgen_available() -> tuple[bool, str]:
    """(True, "") when ``mlperf_loadgen`` can be imported, else (False, why and how to fix)."""
    if importlib.util.find_spec(MODULE) is None:
        return False, f"MLPerf LoadGen is not installed (no module '{MODULE}'); {INSTALL_HINT}"
    return True, ""


@dataclass(frozen=True)
class LoadGenConfig:
    """A LoadGen performance run.

    scenario: SingleStream or Offline. min_duration_ms / min_query_count: LoadGen's
    minimums (MLPerf edge submissions use 600000 ms and 1024 queries for SingleStream);
    max_query_count: stop after this many queries (0: no limit). expected_latency_ms:
    SingleStream hint; offline_expected_qps: Offline hint (sets the query's size).
    """

    scenario: str = "SingleStream"
    min_duration_ms: int = 10_000
    min_query_count: int = 64
    max_query_count: int = 0
    expected_latency_ms: float = 10.0
    offline_expected_qps: float = 100.0

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"--scenario must be one of {', '.join(SCENARIOS)}, "
                             f"got {self.scenario!r}")
        if self.min_duration_ms < 0 or self.min_query_count < 1 or self.max_query_count < 0:
            raise ValueError("--min-duration-ms must be >= 0, --min-query-count >= 1 and "
                             "--max-query-count >= 0")
        if not (self.expected_latency_ms > 0 and self.offline_expected_qps > 0):
            raise ValueError("--expected-latency-ms and --offline-qps must be positive")


def parse_summary(text: str) -> dict[str, str]:
    """``key : value`` lines of an ``mlperf_log_summary.txt`` as a dict (first one wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([^:*=][^:]*?)\s*:\s*(.+?)\s*$", line)
        if match and match.group(1) not in out:
            out[match.group(1)] = match.group(2)
    return out


def run_loadgen(
    samples: list[tuple[str, np.ndarray]],
    classifier: FrameClassifier,
    config: LoadGenConfig,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Run LoadGen over ``samples`` (name, decoded image) and return the parsed summary.

    Writes ``out_dir``/mlperf_log_summary.txt, mlperf_log_detail.txt (LoadGen's) and
    loadgen.json (configuration and the summary's key figures). Raises LoadGenUnavailable.
    """
    ok, why = loadgen_available()
    if not ok:
        raise LoadGenUnavailable(why)
    import mlperf_loadgen as lg

    if not samples:
        raise ValueError("no decoded frames to load into the query sample library")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = [image for _, image in samples]
    served = [0]

    def issue_queries(query_samples: list[Any]) -> None:
        for s in query_samples:
            classifier.classify(images[s.index])
            served[0] += 1
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0)])

    def flush_queries() -> None:
        return None

    def load_samples(indices: list[int]) -> None:  # already decoded in memory
        return None

    settings = lg.TestSettings()
    settings.scenario = getattr(lg.TestScenario, config.scenario)
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = int(config.min_duration_ms)
    settings.min_query_count = int(config.min_query_count)
    settings.max_query_count = int(config.max_query_count)
    settings.single_stream_expected_latency_ns = int(config.expected_latency_ms * 1e6)
    settings.offline_expected_qps = float(config.offline_expected_qps)
    log_output = lg.LogOutputSettings()
    log_output.outdir = str(out)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    log_settings.enable_trace = False

    sut = lg.ConstructSUT(issue_queries, flush_queries)
    qsl = lg.ConstructQSL(len(images), len(images), load_samples, load_samples)
    t0 = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    wall_s = time.perf_counter() - t0
    summary_path = out / SUMMARY_FILE
    if not summary_path.is_file():
        raise RuntimeError(f"LoadGen wrote no {SUMMARY_FILE} under '{out}'")
    summary = parse_summary(summary_path.read_text(encoding="utf-8", errors="replace"))
    result = {
        "kind": "firmware_sim.loadgen",
        "config": asdict(config),
        "samples": len(images),
        "samples_served": served[0],
        "wall_s": round(wall_s, 3),
        "summary": summary,
        "files": {"summary": str(summary_path), "detail": str(out / DETAIL_FILE)},
    }
    write_atomic(out / RESULT_FILE, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    return result
