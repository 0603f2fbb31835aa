"""Reliability scenarios shared by the tests and by ``reliability_campaign.py``: each runs real
``edge`` processes on tiny synthetic inputs and returns its figures (the tests assert on them,
the campaign prints them as the table of docs/reliability.md)."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hostile_inputs import Hostile, write_hostile_folder
from process_kill import count_lines, run_and_kill
from reliability_data import REPO, edge_cmd, edge_env, make_bundle, run_edge, write_frames

from edge.bundle import MANIFEST_FILE, MODEL_FILE
from edge.outputs import PARTIAL

# ----------------------------------------------------------------------------- records

def read_jsonl(path: Path) -> list[dict]:
    """Every line parsed; the file must be valid UTF-8 and end with a newline (no torn line)."""
    data = path.read_bytes()
    text = data.decode("utf-8")  # strict: the outputs are valid UTF-8
    assert data == b"" or data.endswith(b"\n"), f"{path.name}: torn last line"
    return [json.loads(line) for line in text.splitlines()]


def check_records(out: Path, entries: list[Hostile], good: list[str]) -> Counter:
    """Assert the outcome of every hostile entry and good frame in a finished run's outputs;
    returns outcome counts per ``(kind, outcome)``."""
    frames = read_jsonl(out / "frames.jsonl")
    tiles = read_jsonl(out / "tiles.jsonl")
    names = [f["frame"] for f in frames]
    assert len(names) == len(set(names)), "a frame has more than one record"
    by_name = {f["frame"]: f for f in frames}
    tile_counts = Counter(t["frame"] for t in tiles)
    expected_names = {h.name for h in entries if h.expected != "not_listed"} | set(good)
    assert set(names) == expected_names, set(names) ^ expected_names
    outcomes: Counter = Counter()
    for h in entries:
        if h.expected == "not_listed":
            assert not any(n.startswith(h.name + "/") for n in names), f"{h.name} followed"
            outcomes[h.kind, "not listed"] += 1
            continue
        rec = by_name[h.name]
        if rec["error"] is None:
            assert h.expected in ("classified", "any"), f"{h.name} classified: {h}"
            assert rec["tiles"] > 0 and tile_counts[h.name] == rec["tiles"]
            outcomes[h.kind, "classified"] += 1
        else:
            assert h.expected in ("error", "any"), f"{h.name}: {rec['error']}"
            assert rec["error"].startswith(h.name + ": "), rec["error"]
            assert h.match in rec["error"], rec["error"]
            assert rec["tiles"] == 0 and tile_counts[h.name] == 0
            assert rec["timings_ms"] is None
            outcomes[h.kind, "clear error"] += 1
    for name in good:
        assert by_name[name]["error"] is None and tile_counts[name] == by_name[name]["tiles"] > 0
    return outcomes


def inputs_scenario(work: Path, bundle_dir: Path, seed: int = 0) -> dict[str, Any]:
    """The hostile folder (plus 6 good frames) through one ``edge classify --recursive``."""
    src = work / "hostile"
    entries = write_hostile_folder(src, seed=seed)
    good = write_frames(src, 6)
    out = work / "hostile_out"
    proc = run_edge("classify", str(src), "--out", str(out), "--model", str(bundle_dir),
                    "--recursive", "--format", "jsonl,csv")
    assert "Traceback" not in proc.stderr, proc.stderr
    outcomes = check_records(out, entries, good)
    return {"exit": proc.returncode, "entries": entries, "good": good, "outcomes": outcomes,
            "stderr": proc.stderr}


# ----------------------------------------------------------------------------- bundles

REQUIRED = ["name", "classes", "input", "tiling", "precision", "sha256"]


def _edit_manifest(bundle_dir: Path, change) -> None:
    path = bundle_dir / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def wrong_sha(d: Path) -> None:
    """One byte appended to the model file: its sha256 no longer matches the manifest."""
    model = d / MODEL_FILE
    model.write_bytes(model.read_bytes() + b"\x00")


def _missing(field: str):
    return lambda d: _edit_manifest(d, lambda m: m.pop(field))


def _future(d: Path) -> None:
    _edit_manifest(d, lambda m: m.update(schema_version=99))


def _not_json(d: Path) -> None:
    (d / MANIFEST_FILE).write_text('{"name": "tiny", "classes": [')


BUNDLE_DAMAGE = {
    "wrong_sha256": (wrong_sha, "does not match the manifest"),
    **{f"missing_{f}": (_missing(f), f"lacks required field(s): {f}") for f in REQUIRED},
    "future_schema_version": (_future, "schema_version 99 is not supported"),
    "manifest_not_json": (_not_json, "unreadable manifest"),
    "no_manifest": (lambda d: (d / MANIFEST_FILE).unlink(), "not a model bundle"),
    "no_model_file": (lambda d: (d / MODEL_FILE).unlink(), "not found"),
}


def bundle_scenario(work: Path) -> list[dict[str, Any]]:
    """Every damaged bundle through ``edge classify``: exit status and message."""
    src = work / "bundle_frames"
    write_frames(src, 2)
    rows = []
    cases = {case: (damage, match) for case, (damage, match) in BUNDLE_DAMAGE.items()}
    cases["class_count_mismatch"] = (None, "3 classes")
    cases["onnx_does_not_load"] = (None, "cannot load the model")
    for case, (damage, match) in sorted(cases.items()):
        bundle_dir = work / "bundles" / case
        if case == "class_count_mismatch":
            make_bundle(bundle_dir, classes=["soil", "bedrock", "sand"], n_outputs=4)
        elif case == "onnx_does_not_load":
            make_bundle(bundle_dir, model_bytes=b"not an onnx model at all")
        else:
            make_bundle(bundle_dir)
            damage(bundle_dir)
        out = work / "bundle_out" / case
        proc = run_edge("classify", str(src), "--out", str(out), "--model", str(bundle_dir),
                        "--quiet")
        rows.append({"case": case, "exit": proc.returncode, "message": proc.stderr.strip(),
                     "named": match in proc.stderr, "written": out.exists()})
    return rows


# ----------------------------------------------------------------------------- kills

def run_edge_and_kill(argv: list[str], watched: Path | None, after_lines: int, extra_s: float,
                      timeout: float = 120.0) -> int:
    """``edge ARGV`` from the repository, killed as :func:`process_kill.run_and_kill` says."""
    return run_and_kill(edge_cmd(*argv), watched, after_lines, extra_s, timeout,
                        env=edge_env(), cwd=REPO)


def classify_kill_scenario(work: Path, bundle_dir: Path, n_frames: int = 40, kills: int = 6,
                           seed: int = 0) -> dict[str, Any]:
    """``edge classify --resume`` killed ``kills`` times at seeded random points (once the
    frames file holds a random number of lines, plus a random 0-8 ms: mid-frame, mid-line or
    between frames), then run to completion; compared with an uninterrupted run."""
    rng = random.Random(seed)
    src = work / "kill_frames"
    names = write_frames(src, n_frames)

    def argv(out: Path) -> list[str]:
        return ["classify", str(src), "--out", str(out), "--model", str(bundle_dir),
                "--stride", "8", "--quiet", "--resume"]

    reference = work / "kill_reference"
    assert run_edge(*argv(reference)).returncode == 0
    out = work / "kill_out"
    frames_partial = out / ("frames.jsonl" + PARTIAL)
    codes, points = [], []
    # kill points spread over the run: after a random number of frame lines (a later run
    # whose point is already passed is killed as soon as it starts: during its recovery)
    for after in sorted(rng.sample(range(1, n_frames), kills)):
        extra = rng.uniform(0, 0.008)
        codes.append(run_edge_and_kill(argv(out), frames_partial, after, extra))
        points.append((after, round(extra * 1e3, 2), count_lines(frames_partial)))
        if codes[-1] == 0:
            break
    final = run_edge(*argv(out))
    frames = read_jsonl(out / "frames.jsonl")
    got = [f["frame"] for f in frames]
    tiles_ok = (out / "tiles.jsonl").read_bytes() == (reference / "tiles.jsonl").read_bytes()
    ref_tiles = count_lines(reference / "tiles.jsonl")
    return {
        "kills": sum(c == -signal.SIGKILL for c in codes), "codes": codes, "points": points,
        "final_exit": final.returncode, "frames": len(got), "expected": n_frames,
        "duplicates": len(got) - len(set(got)), "lost": len(set(names) - set(got)),
        "in_order": got == names, "tiles_identical": tiles_ok,
        "tiles_lost": ref_tiles - count_lines(out / "tiles.jsonl"),
        "partials_left": sorted(p.name for p in out.glob("*" + PARTIAL)),
        "resumed": json.loads((out / "run.json").read_text())["summary"]["resumed"],
    }


def _report_state(rep: Path, n_frames: int) -> str:
    """``absent`` or ``complete`` (raises AssertionError when report.json is half-written or
    a visible stray file passes for one)."""
    visible = sorted(p.name for p in rep.iterdir() if not p.name.startswith(".")) \
        if rep.exists() else []
    stray = [n for n in visible if n.startswith("report.json") and n != "report.json"]
    assert not stray, f"stray files passing for a report: {stray}"
    hidden = [p.name for p in rep.glob(".*")] if rep.exists() else []
    assert all(n.endswith(".tmp") for n in hidden), hidden
    if "report.json" not in visible:
        return "absent"
    report = json.loads((rep / "report.json").read_text())  # never half-written
    assert report["schema_version"] == 2 and report["kind"] == "firmware_sim.replay"
    assert "timeline" in report and "exit_code" in report  # the last keys: complete
    if n_frames:
        assert report["frames"]["replayed"] == n_frames
    return "complete"


def sim_kill_scenario(work: Path, bundle_dir: Path, kills: int = 8, n_frames: int = 40,
                      seed: int = 0) -> dict[str, Any]:
    """``edge sim`` killed at seeded random times within an uninterrupted run's duration; after
    each kill the report is absent or complete; then a run completes."""
    rng = random.Random(seed)
    src = work / "sim_frames"
    write_frames(src, n_frames, size=256)
    rep = work / "sim_report"
    argv = ["sim", str(src), "--fps", "5", "--model", str(bundle_dir), "--report", str(rep),
            "--quiet"]
    t0 = time.monotonic()
    assert run_edge(*argv).returncode == 0
    duration = time.monotonic() - t0
    states, codes = [], []
    for _ in range(kills):
        shutil.rmtree(rep, ignore_errors=True)  # what this run alone leaves
        delay = rng.uniform(0.3 * duration, 0.9 * duration)
        codes.append(run_edge_and_kill(argv, None, 0, delay))
        states.append(_report_state(rep, n_frames))
    mid = sim_kill_mid_write(work, bundle_dir, src)
    final = run_edge(*argv)
    return {"kills": sum(c == -signal.SIGKILL for c in codes), "codes": codes,
            "states": Counter(states), "final_exit": final.returncode,
            "final_state": _report_state(rep, n_frames), "mid_write": mid,
            "duration_s": round(duration, 2)}


_KILL_MID_WRITE = """
import builtins, os, signal, sys
import edge.atomic_file as atomic_file
real_open = builtins.open
class Half:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *a): self.fh.close()
    def write(self, data):
        self.fh.write(data[: len(data) // 2]); self.fh.flush(); os.fsync(self.fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
# every atomic write (the first one of this run is report.json) dies halfway through
atomic_file.open = lambda *args, **kwargs: Half(real_open(*args, **kwargs))
from toolkit_cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def sim_kill_mid_write(work: Path, bundle_dir: Path, src: Path) -> dict[str, Any]:
    """A previous complete report, then a run SIGKILLed halfway through writing report.json:
    the previous report must still be there, whole; the torn data only in a hidden .tmp."""
    rep = work / "sim_midwrite"
    argv = ["sim", str(src), "--fps", "5", "--model", str(bundle_dir), "--report", str(rep),
            "--quiet", "--no-plots"]
    assert run_edge(*argv).returncode == 0
    before = (rep / "report.json").read_bytes()
    proc = subprocess.run([*edge_cmd()[:1], "-c", _KILL_MID_WRITE, *argv], env=edge_env(),
                          cwd=REPO, capture_output=True, timeout=120)
    tmp = sorted(p.name for p in rep.glob(".report.json.*.tmp"))
    return {"exit": proc.returncode, "report_unchanged": (rep / "report.json").read_bytes()
            == before, "torn_tmp_files": tmp, "state": _report_state(rep, 0)}


def train_kill_scenario(work: Path, ai4mars: Path, kills: int = 2, epochs: int = 4,
                        seed: int = 0) -> dict[str, Any]:
    """``edge train pretrain`` SIGKILLed at seeded random delays after an epoch line, resumed
    with ``--resume`` each time; the loss history must equal an uninterrupted run's.

    The history compared is the final checkpoint's, every epoch of it, whichever session ran
    it: on a fast machine the killed sessions may have run every epoch before the last
    ``--resume``, which then has none left to run (``epochs_after_resume`` is empty)."""
    rng = random.Random(seed)

    def argv(out: Path, *extra: str) -> list[str]:
        return ["train", "pretrain", "--out", str(out), "--data", str(ai4mars), "--epochs",
                str(epochs), "--max-frames", "2", "--batch-size", "32", "--threads", "1",
                "--seed", "0", *extra]

    straight = run_edge(*argv(work / "train_straight"), timeout=300)
    assert straight.returncode == 0, straight.stderr
    ref = [json.loads(line) for line in straight.stdout.splitlines() if line.startswith("{")]
    out = work / "train_killed"
    codes, resumed_from = [], []
    for k in range(kills):
        extra = ("--resume",) if k else ()
        proc = subprocess.Popen(edge_cmd(*argv(out, *extra)), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=edge_env(), cwd=REPO, text=True)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:  # kill a random time after the first epoch line
                if line.startswith("{"):
                    time.sleep(rng.uniform(0.0, 0.5))
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        codes.append(proc.returncode)
    final = run_edge(*argv(out, "--resume"), timeout=300)
    assert final.returncode == 0, final.stderr
    for line in final.stdout.splitlines():
        if "resum" in line.lower():
            resumed_from.append(line.strip())
    got = [json.loads(line) for line in final.stdout.splitlines() if line.startswith("{")]
    import torch  # the scenario's caller has checked that torch is there

    history = torch.load(out / "encoder.pt", map_location="cpu", weights_only=False)["history"]
    # every epoch of the resumed run's history equals the uninterrupted run's
    by_epoch = {r["epoch"]: r["loss"] for r in ref}
    diffs = [abs(r["loss"] - by_epoch[r["epoch"]]) for r in history]
    return {"kills": sum(c == -signal.SIGKILL for c in codes), "codes": codes,
            "epochs_after_resume": [r["epoch"] for r in got],
            "history_epochs": [r["epoch"] for r in history],
            "max_loss_diff": max(diffs) if diffs else float("inf"),
            "reference_losses": [round(r["loss"], 6) for r in ref], "resumed": resumed_from}


# ----------------------------------------------------------------------------- lock, disk

def lock_scenario(work: Path, bundle_dir: Path, n_frames: int = 40) -> dict[str, Any]:
    """A second ``edge classify`` into a folder that a running one holds."""
    src = work / "lock_frames"
    write_frames(src, n_frames)
    out = work / "lock_out"
    argv = ["classify", str(src), "--out", str(out), "--model", str(bundle_dir), "--stride",
            "4", "--quiet"]
    first = subprocess.Popen(edge_cmd(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=edge_env(), cwd=REPO, text=True)
    try:
        deadline = time.monotonic() + 60
        while count_lines(out / ("frames.jsonl" + PARTIAL)) < 1 and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        second = run_edge(*argv)
        first_still_running = first.poll() is None
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    frames = read_jsonl(out / "frames.jsonl")
    return {"second_exit": second.returncode, "second_message": second.stderr.strip(),
            "first_still_running": first_still_running, "first_exit": first.returncode,
            "first_frames": len(frames), "expected": n_frames}


def _limited(limit: int):  # noqa: ANN202 - a preexec_fn
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def full_disk_scenario(work: Path, bundle_dir: Path, n_frames: int = 40,
                       limit: int = 48 * 1024) -> dict[str, Any]:
    """``edge classify`` and ``edge sim`` under a file-size limit (RLIMIT_FSIZE, SIGXFSZ
    ignored: writes past it fail with EFBIG, as on a full disk); then ``--resume`` with the
    limit lifted."""
    src = work / "disk_frames"
    names = write_frames(src, n_frames)
    reference, out = work / "disk_reference", work / "disk_out"
    argv = ["classify", str(src), "--model", str(bundle_dir), "--quiet"]
    assert run_edge(*argv, "--out", str(reference)).returncode == 0
    full = run_edge(*argv, "--out", str(out), preexec_fn=_limited(limit))
    published = sorted(n for n in ("tiles.jsonl", "frames.jsonl", "run.json")
                       if (out / n).exists())
    partials = sorted(p.name for p in out.glob("*" + PARTIAL))
    partial_sizes = {p.name: p.stat().st_size for p in out.glob("*" + PARTIAL)}
    resumed = run_edge(*argv, "--out", str(out), "--resume")
    frames = read_jsonl(out / "frames.jsonl")
    got = [f["frame"] for f in frames]
    tiles_ok = (out / "tiles.jsonl").read_bytes() == (reference / "tiles.jsonl").read_bytes()
    # the simulator's report under the same kind of limit
    rep = work / "disk_sim"
    sim = run_edge("sim", str(src), "--fps", "5", "--model", str(bundle_dir), "--report",
                   str(rep), "--quiet", preexec_fn=_limited(4096))
    sim_left = sorted(p.name for p in rep.iterdir()) if rep.exists() else []
    return {
        "classify_exit": full.returncode, "classify_message": full.stderr.strip(),
        "published_while_full": published, "partials_left": partials,
        "partial_sizes": partial_sizes, "resume_exit": resumed.returncode,
        "frames": len(got), "lost": len(set(names) - set(got)),
        "duplicates": len(got) - len(set(got)), "tiles_identical": tiles_ok,
        "sim_exit": sim.returncode, "sim_message": sim.stderr.strip(), "sim_left": sim_left,
    }
