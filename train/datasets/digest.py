"""Content digests of dataset folders, recorded in bundle manifests so that a model can be
traced to the exact data it was made from."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edge.bundle import sha256_file
from train.labelled_sets import canonical


def folder_digest(root: str | Path) -> dict[str, Any]:
    """``{"path", "files", "bytes", "sha256"}`` of every file under ``root``: the sha256 over
    each file's relative path and own sha256, in sorted path order (so renaming, adding or
    changing any file changes it); ``{"path", "missing": True}`` when ``root`` is absent."""
    root = Path(root)
    if not root.is_dir():
        return {"path": str(root), "missing": True}
    total, count, outer = 0, 0, hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        outer.update(path.relative_to(root).as_posix().encode() + b"\0"
                     + sha256_file(path).encode() + b"\n")
        total += path.stat().st_size
        count += 1
    return {"path": str(root), "files": count, "bytes": total, "sha256": outer.hexdigest()}


def _configured(ckpt: dict[str, Any]) -> dict[str, str]:
    """Dataset folders a checkpoint's configs name and use: {name: folder}."""
    found: dict[str, str] = {}
    pretrain = ckpt.get("pretrain_config") or {}
    probe = ckpt.get("probe_config") or {}
    distill = ckpt.get("distill_config") or {}
    for cfg in (pretrain, probe, distill):
        root = (cfg.get("data") or {}).get("root")
        if root:
            found["ai4mars"] = root
    domains = dict(pretrain.get("domains") or [])
    if "msl" in domains and pretrain.get("msl_root"):
        found["msl-v2.1"] = pretrain["msl_root"]
    if canonical(probe.get("dataset", "ai4mars")) == "msl-v2.1" and probe.get("msl_root"):
        found["msl-v2.1"] = probe["msl_root"]
    if "hirise" in domains and pretrain.get("hirise_root"):
        found["hirise-v1"] = pretrain["hirise_root"]
    return found


def checkpoint_data_digests(ckpt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{dataset: :func:`folder_digest`} of the folders a checkpoint was trained on (as its
    saved configs name them: pretraining domains, the probe's labelled set, distillation)."""
    return {name: folder_digest(root) for name, root in sorted(_configured(ckpt).items())}
