"""train.checkpoint: atomic saves and checked loads."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from train.checkpoint import (
    CheckpointError,
    git_revision,
    load_checkpoint,
    on_cpu,
    save_atomic,
)


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "encoder.pt"
    obj = {"kind": "encoder", "state_dict": {"w": torch.arange(3.0)}, "history": [{"loss": 1.0}]}
    assert save_atomic(obj, path) == path
    got = load_checkpoint(path, "encoder")
    assert torch.equal(got["state_dict"]["w"], torch.arange(3.0))
    assert got["history"] == [{"loss": 1.0}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["encoder.pt"]


def test_save_replaces_an_existing_checkpoint_leaving_no_temp_file(tmp_path):
    path = tmp_path / "probe.pt"
    save_atomic({"kind": "probe", "v": 1}, path)
    save_atomic({"kind": "probe", "v": 2}, str(path))
    assert load_checkpoint(path, "probe")["v"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["probe.pt"]


def test_failed_save_keeps_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "probe.pt"
    save_atomic({"kind": "probe", "v": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - pickle raises several types
        save_atomic({"kind": "probe", "v": lambda: None}, path)
    assert load_checkpoint(path, "probe")["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["probe.pt"]


def test_saved_file_gets_ordinary_permissions(tmp_path):
    # Like a plain torch.save: readable according to the umask, not private to the writer.
    umask = os.umask(0o022)
    try:
        save_atomic({"kind": "probe"}, tmp_path / "probe.pt")
        plain = tmp_path / "plain.pt"
        torch.save({"kind": "probe"}, plain)
    finally:
        os.umask(umask)
    mode = stat.S_IMODE((tmp_path / "probe.pt").stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="no such checkpoint") as err:
        load_checkpoint(path, "encoder")
    assert str(path) in str(err.value)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path, "encoder")  # a folder is no checkpoint either


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint\n", b"PK\x03\x04broken"])
def test_garbage_file(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint") as err:
        load_checkpoint(path, "probe")
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("obj", "found"), [({"kind": "encoder"}, "'encoder'"),
                                             ({"state_dict": {}}, "None"),
                                             ([1, 2], "'list'")])
def test_wrong_kind(tmp_path, obj, found):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="expected a 'probe' checkpoint") as err:
        load_checkpoint(path, "probe")
    assert str(path) in str(err.value)
    assert found in str(err.value)


def test_git_revision_is_a_string():
    rev = git_revision()
    assert isinstance(rev, str) and rev
    assert rev == "unknown" or len(rev.removesuffix("+dirty")) == 40


def test_on_cpu_keeps_the_structure_and_every_value() -> None:
    from collections import namedtuple

    import numpy as np

    pair = namedtuple("pair", "a b")(1, torch.ones(2))
    obj = {"state": {"w": torch.arange(3.0)}, "list": [torch.zeros(1), "x", 2],
           "tuple": (torch.ones(1),), "pair": pair, "ids": np.arange(3), "none": None}
    out = on_cpu(obj)
    assert torch.equal(out["state"]["w"], obj["state"]["w"])
    assert isinstance(out["list"], list) and out["list"][1:] == ["x", 2]
    assert isinstance(out["tuple"], tuple) and torch.equal(out["tuple"][0], torch.ones(1))
    assert out["pair"] is pair  # named tuples are left as they are
    assert out["ids"] is obj["ids"] and out["none"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to make CUDA tensors")
def test_a_checkpoint_made_on_the_gpu_holds_cpu_tensors(tmp_path) -> None:
    path = save_atomic({"kind": "encoder", "w": torch.ones(2, device="cuda")}, tmp_path / "e.pt")
    assert torch.load(path, weights_only=False)["w"].device.type == "cpu"
