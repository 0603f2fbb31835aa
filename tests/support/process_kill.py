"""Kill a subprocess with SIGKILL at a chosen point of its output (test helper)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def count_lines(path: Path) -> int:
    """Newlines in ``path`` so far (0 while it does not exist)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def run_and_kill(cmd: list[str], watched: Path | None, after_lines: int, extra_s: float = 0.0,
                 timeout: float = 120.0, **popen: object) -> int:
    """Start ``cmd``; SIGKILL it ``extra_s`` seconds after ``watched`` holds ``after_lines``
    lines (after start if ``watched`` is None), unless it has finished by then. Returns the
    exit status (-9 when killed). ``popen``: extra :class:`subprocess.Popen` arguments
    (``env``, ``cwd``); stdout and stderr are discarded."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if watched is None or count_lines(watched) >= after_lines:
                if extra_s:
                    time.sleep(extra_s)
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode
