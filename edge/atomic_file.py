"""Files that appear whole or not at all: written to a temporary sibling, then renamed.

Every writer of a result, report, checkpoint, bundle file or engine cache entry goes
through here, so that a kill, a full disk or an exception never leaves a half-written
file under the final name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", fsync: bool = True,
                encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing (``mode`` 'w' or 'wb'); on a clean exit
    flush, optionally fsync, and rename it over ``path``; on an exception remove it.

    The file gets the permissions the umask gives a new file (not mkstemp's 0600).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    target = Path(path)
    tmp = _temporary_sibling(target)
    text = mode == "w"
    fh = open(tmp, "x" if text else "xb", encoding=encoding if text else None,  # noqa: SIM115
              newline=newline if text else None)
    try:
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); creates the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(target, "wb", fsync=fsync) as fh:
        fh.write(data)
    return target
