"""``edge classify`` over hostile inputs: every bad file gets exactly one error record naming it,
every good frame is classified, nothing crashes (tests/reliability/hostile_inputs.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hostile_inputs import Hostile, write_corrupt_video, write_hostile_folder
from reliability_data import write_frames
from reliability_scenarios import check_records, read_jsonl

from edge.csv_output import CsvCodec
from edge.outputs import complete_lines
from edge.sources import frame_name, list_image_files, open_source
from toolkit_cli.main import main

KINDS = ["truncated_jpeg", "truncated_png", "bitflip_jpeg", "bitflip_png", "zero_byte",
         "random_bytes", "huge_header", "tiny_1x1", "thin_1xN", "deep_16bit", "four_channel",
         "padded_png", "non_finite_float", "non_utf8_name", "symlink_loop", "dir_symlink_loop"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Hostile]]:
    folder = tmp_path_factory.mktemp("hostile") / "src"
    return folder, write_hostile_folder(folder, seed=0)


def _classify(src: Path, out: Path, bundle, *extra: str) -> int:
    return main(["classify", str(src), "--out", str(out), "--model", str(bundle.path),
                 "--quiet", *extra])


def test_hostile_folder_mixed_with_good_frames(tmp_path, hostile, rel_bundle, capsys):
    folder, entries = hostile
    src = tmp_path / "mixed"
    shutil.copytree(folder, src, symlinks=True)
    good = write_frames(src, 6)
    out = tmp_path / "out"
    # not quiet: the summary names the bad frames on stderr, non-UTF-8 names included
    code = main(["classify", str(src), "--out", str(out), "--model", str(rel_bundle.path),
                 "--recursive", "--format", "jsonl,csv", "--overlay"])
    assert code == 2
    err = capsys.readouterr().err
    assert "empty.png: empty file" in err
    outcomes = check_records(out, entries, good)
    assert sum(outcomes.values()) == len(entries)
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["frames"] == len(entries) - 1 + len(good)
    # CSV names the frames exactly as JSONL does
    codec = CsvCodec("frames")
    csv_names = [r["frame"] for r, _ in codec.decode(complete_lines(out / "frames.csv"))]
    assert csv_names == [f["frame"] for f in read_jsonl(out / "frames.jsonl")]
    assert (out / "contact_sheet.html").read_bytes().decode("utf-8")
    assert not list(out.glob("*.partial"))


def _copy_kind(folder: Path, entries: list[Hostile], kind: str, dest: Path) -> list[Hostile]:
    """Copy the files of one kind into ``dest`` (symlinks recreated, bytes names kept)."""
    chosen = [h for h in entries if h.kind == kind]
    dest.mkdir(parents=True)
    for raw in os.listdir(os.fsencode(folder)):
        src = os.path.join(os.fsencode(folder), raw)
        name = frame_name(os.fsdecode(raw))
        if not any(h.name == name or h.name.startswith(name + "/") for h in chosen):
            continue
        target = os.path.join(os.fsencode(dest), raw)
        if os.path.islink(src):
            os.symlink(os.readlink(src), target)
        elif os.path.isdir(src):
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copyfile(src, target)
    return chosen


@pytest.mark.parametrize("kind", KINDS)
def test_each_hostile_kind_alone(tmp_path, hostile, rel_bundle, kind):
    folder, entries = hostile
    chosen = _copy_kind(folder, entries, kind, tmp_path / "src")
    assert chosen, f"the generator wrote no {kind}"
    out = tmp_path / "out"
    code = _classify(tmp_path / "src", out, rel_bundle, "--recursive")
    outcomes = check_records(out, chosen, [])
    expected_code = 2 if any(o == "clear error" for _, o in outcomes) else 0
    assert code == expected_code


def test_non_utf8_names_are_listed_named_and_resumed(tmp_path, rel_bundle):
    src = tmp_path / "src"
    write_frames(src, 3)
    raw = os.path.join(os.fsencode(src), b"caf\xe9.png")
    shutil.copyfile(src / "good_000.png", raw)
    root, files = list_image_files(str(src))
    assert os.fsencode(files[0]) == raw  # listed, and readable back by its path
    assert next(open_source(src)).name == "caf\\xe9.png"
    out = tmp_path / "out"
    assert _classify(src, out, rel_bundle, "--max-frames", "2") == 0
    assert _classify(src, out, rel_bundle, "--resume") == 0
    names = [f["frame"] for f in read_jsonl(out / "frames.jsonl")]
    assert names == ["caf\\xe9.png", "good_000.png", "good_001.png", "good_002.png"]


def test_video_with_corrupt_frames(tmp_path, rel_bundle):
    clip = tmp_path / "clip.avi"
    n, corrupt = write_corrupt_video(clip, frames=12, corrupt=(4, 5, 8))
    out = tmp_path / "out"
    code = _classify(clip, out, rel_bundle)
    frames = read_jsonl(out / "frames.jsonl")
    names = [f["frame"] for f in frames]
    # OpenCV's MJPEG decoder conceals damaged frames (it returns a picture): every frame
    # gets one record, in order; a frame it could not decode would get an error record
    assert names == [f"clip.avi#{i:06d}" for i in range(len(names))]
    assert len(names) == n and code in (0, 2)
    assert all((f["error"] is None) == (f["tiles"] > 0) for f in frames)


def test_truncated_and_garbage_videos(tmp_path, rel_bundle):
    clip = tmp_path / "cut.avi"
    write_corrupt_video(clip, frames=12, corrupt=())
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    assert _classify(clip, tmp_path / "cut", rel_bundle) == 2
    frames = read_jsonl(tmp_path / "cut" / "frames.jsonl")
    assert [f["frame"] for f in frames] == [f"cut.avi#{i:06d}" for i in range(len(frames))]
    # the frames before the cut are classified; the first missing one says the rest is lost
    assert 0 < len(frames) < 12 and all(f["error"] is None for f in frames[:-1])
    assert "ended after" in frames[-1]["error"] and "of the 12 frames" in frames[-1]["error"]
    garbage = tmp_path / "noise.avi"
    garbage.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    assert _classify(garbage, tmp_path / "noise", rel_bundle) == 2
    (rec,) = read_jsonl(tmp_path / "noise" / "frames.jsonl")
    assert rec["frame"] == "noise.avi" and rec["error"].startswith("noise.avi: video")
