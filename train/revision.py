"""The project's git revision, recorded in checkpoints and bundles (no torch needed)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path


@functools.cache
def git_revision() -> str:
    """The revision this process runs, read once (at the first call) and kept: a long run
    records the revision its code came from even when the tree changes before it saves
    (``edge train`` and ``edge export`` ask as they start). See :func:`read_git_revision`."""
    return read_git_revision()


def read_git_revision() -> str:
    """The project's git revision now (with ``+dirty`` if uncommitted changes); where git cannot
    tell (a copy of the tree without ``.git``, e.g. on a lent GPU machine), the revision named
    by the ``EDGE_GIT_REVISION`` environment variable with ``+copy``, else 'unknown'."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        named = os.environ.get("EDGE_GIT_REVISION", "").strip()
        return f"{named}+copy" if named else "unknown"
