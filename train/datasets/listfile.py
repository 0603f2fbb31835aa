"""Readers for the small text files the datasets ship (``<file> <class id>`` lines, class maps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from train.datasets.errors import DatasetError


def require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise DatasetError saying what was expected there."""
    if not path.exists():
        raise DatasetError(f"{path}: missing; expected {what}")
    return path


def read_class_map(path: Path) -> list[str]:
    """``<id>,<name>`` lines with ids 0..K-1 -> class names in id order."""
    names: dict[int, str] = {}
    for lineno, line in enumerate(require(path, "a class map (<id>,<name> lines)").read_text()
                                  .splitlines(), 1):
        if not line.strip():
            continue
        key, _, name = line.partition(",")
        try:
            names[int(key)] = name.strip()
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected '<id>,<name>', got {line!r}") from None
    if sorted(names) != list(range(len(names))):
        raise DatasetError(f"{path}: class ids must run 0..{len(names) - 1}, got {sorted(names)}")
    return [names[i] for i in range(len(names))]


def read_label_list(path: Path, num_classes: int,
                    check_file: Callable[[str], str | None] | None = None
                    ) -> list[tuple[str, int]]:
    """``<file> <class id>`` lines -> [(file, class id)], checked against ``num_classes``.

    ``check_file`` (optional) returns what is wrong with a file name, or None if nothing is;
    errors name the path and line number.
    """
    rows = []
    for lineno, line in enumerate(require(path, "a label list (<file> <class id> lines)")
                                  .read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetError(f"{path}:{lineno}: expected '<file> <class id>', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise DatasetError(f"{path}:{lineno}: class id {label} outside 0..{num_classes - 1}")
        problem = check_file(parts[0]) if check_file else None
        if problem:
            raise DatasetError(f"{path}:{lineno}: {problem}")
        rows.append((parts[0], label))
    return rows
