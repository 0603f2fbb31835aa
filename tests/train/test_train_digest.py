"""train.datasets.digest: content digests of dataset folders for bundle provenance."""

from __future__ import annotations

import hashlib

from train.datasets.digest import checkpoint_data_digests, folder_digest


def test_digest_is_the_documented_hash_of_paths_and_contents(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_bytes(b"bee")
    (tmp_path / "d" / "sub" / "a.jpg").write_bytes(b"jpeg")
    lines = b"".join(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n".encode()
                     for rel, data in [("b.txt", b"bee"), ("sub/a.jpg", b"jpeg")])
    assert folder_digest(tmp_path / "d") == {"path": str(tmp_path / "d"), "files": 2,
                                            "bytes": 7, "sha256": hashlib.sha256(lines).hexdigest()}


def test_any_change_changes_the_digest(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a").write_bytes(b"1")
    first = folder_digest(root)["sha256"]
    (root / "a").write_bytes(b"2")
    changed = folder_digest(root)["sha256"]
    (root / "a").rename(root / "b")
    renamed = folder_digest(root)["sha256"]
    (root / "c").write_bytes(b"")
    added = folder_digest(root)["sha256"]
    assert len({first, changed, renamed, added}) == 4


def test_missing_folder_is_marked(tmp_path):
    assert folder_digest(tmp_path / "nope") == {"path": str(tmp_path / "nope"), "missing": True}


def test_checkpoint_digests_cover_the_folders_its_configs_use(tmp_path):
    for name in ("ai", "msl", "hirise"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x").write_bytes(name.encode())
    pretrain = {"data": {"root": str(tmp_path / "ai")}, "msl_root": str(tmp_path / "msl"),
                "hirise_root": str(tmp_path / "hirise"), "domains": [["ai4mars", 1.0]]}
    assert set(checkpoint_data_digests({"pretrain_config": pretrain})) == {"ai4mars"}
    mixed = pretrain | {"domains": [["ai4mars", 0.5], ["msl", 0.3], ["hirise", 0.2]]}
    digests = checkpoint_data_digests({"pretrain_config": mixed})
    assert set(digests) == {"ai4mars", "msl-v2.1", "hirise-v1"}
    assert digests["hirise-v1"] == folder_digest(tmp_path / "hirise")
    probe = {"dataset": "msl-v2.1", "msl_root": str(tmp_path / "msl")}
    assert set(checkpoint_data_digests({"pretrain_config": pretrain, "probe_config": probe})) == {
        "ai4mars", "msl-v2.1"}
    assert checkpoint_data_digests({}) == {}
