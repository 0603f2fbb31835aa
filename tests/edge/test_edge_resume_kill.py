"""``edge classify`` killed with SIGKILL at several points, then ``--resume``: every frame
appears exactly once, no line is torn, and the tiles are those of an uninterrupted run."""

import json
import signal
import subprocess
import sys

import pytest
from edge_images import synthetic_frame, write_frame
from process_kill import count_lines, run_and_kill

from edge.outputs import PARTIAL
from toolkit_cli.main import main

N_FRAMES = 60
TILES_PER_FRAME = 29 * 29  # 256-px frames at stride 8: many tiles, so kills land mid-write


def _frames(folder):
    for i in range(N_FRAMES):
        write_frame(folder / f"f{i:03d}.png", synthetic_frame(256, 256, seed=i))
    return folder


def _argv(src, out, bundle, *extra):
    return ["classify", str(src), "--out", str(out), "--model", str(bundle.path), "--stride", "8",
            "--quiet", *extra]


def _run_and_kill(argv, watched, kill_after):
    """``edge ARGV`` in a subprocess, SIGKILLed once ``watched`` holds ``kill_after`` lines."""
    return run_and_kill([sys.executable, "-m", "toolkit_cli.main", *argv], watched, kill_after)


def _jsonl(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path.name} ends with a torn line"
    return [json.loads(line) for line in text.splitlines()]


@pytest.mark.slow
def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, tiny_bundle):
    src = _frames(tmp_path / "frames")
    reference = tmp_path / "reference"
    assert main(_argv(src, reference, tiny_bundle)) == 0

    out = tmp_path / "out"
    frames_partial = out / ("frames.jsonl" + PARTIAL)
    tiles_partial = out / ("tiles.jsonl" + PARTIAL)
    codes = [_run_and_kill(_argv(src, out, tiny_bundle), frames_partial, 3)]
    # killed once the next frame's tiles appear, then after a frame line; each time, tile
    # lines of a frame without its frame line and a torn line are added on top, as a kill
    # between the two writes or mid-write would leave them
    for watched, kill_after in ((tiles_partial, N_FRAMES // 3 * TILES_PER_FRAME + 1),
                                (frames_partial, 2 * N_FRAMES // 3)):
        with open(tiles_partial, "a") as fh:  # tiles of a frame with no frame line, torn
            orphan = {"frame": f"f{N_FRAMES - 1:03d}.png", "x": 0, "y": 0, "w": 32, "h": 32,
                      "label": "sand", "class_id": 2, "confidence": 0.5}
            fh.write((json.dumps(orphan) + "\n") * 3 + '{"frame":"f999.png","x":0,"y":0,"w"')
        codes.append(_run_and_kill(_argv(src, out, tiny_bundle, "--resume"), watched,
                                   kill_after))
        print("killed:", count_lines(frames_partial), "frame lines,", count_lines(tiles_partial),
              "tile lines")
    assert codes == [-signal.SIGKILL] * 3, f"a run finished before it could be killed: {codes}"
    # without --resume the interrupted run is refused, untouched
    proc = subprocess.run([sys.executable, "-m", "toolkit_cli.main",
                           *_argv(src, out, tiny_bundle)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "--resume" in proc.stderr
    assert main(_argv(src, out, tiny_bundle, "--resume")) == 0

    frames = _jsonl(out / "frames.jsonl")
    names = [f["frame"] for f in frames]
    assert names == [f"f{i:03d}.png" for i in range(N_FRAMES)]  # each once, in order
    assert all(f["error"] is None and f["tiles"] == TILES_PER_FRAME for f in frames)
    tiles = _jsonl(out / "tiles.jsonl")
    assert len(tiles) == N_FRAMES * TILES_PER_FRAME
    assert (out / "tiles.jsonl").read_bytes() == (reference / "tiles.jsonl").read_bytes()
    assert not list(out.glob("*" + PARTIAL))
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["frames"] == N_FRAMES and run["summary"]["tiles"] == len(tiles)
    assert run["summary"]["resumed"] > 0
