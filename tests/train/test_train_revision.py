"""train.revision: the revision recorded with runs, with and without git."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from train import revision


def test_revision_from_git_is_a_commit_hash() -> None:
    rev = revision.git_revision()
    if rev == "unknown":
        pytest.skip("not a git checkout (or git is not installed)")
    assert len(rev.removesuffix("+dirty")) == 40


def test_without_git_the_named_revision_is_marked_as_a_copy(monkeypatch) -> None:
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.delenv("EDGE_GIT_REVISION", raising=False)
    assert revision.read_git_revision() == "unknown"
    monkeypatch.setenv("EDGE_GIT_REVISION", "abc123")
    assert revision.read_git_revision() == "abc123+copy"


@pytest.fixture
def revisions(monkeypatch: pytest.MonkeyPatch):
    """git_revision's cache emptied, and the tree's revision made to change at each reading:
    'r1', 'r2', ... (the cache is emptied again afterwards)."""
    readings = (f"r{i}" for i in itertools.count(1))
    monkeypatch.setattr(revision, "read_git_revision", lambda: next(readings))
    revision.git_revision.cache_clear()
    yield revision
    revision.git_revision.cache_clear()


def test_git_revision_is_read_once_per_process(revisions) -> None:
    assert revisions.git_revision() == "r1"
    assert revisions.git_revision() == "r1"   # the tree moved on; the run's revision did not


def test_train_and_export_commands_fix_the_revision_as_they_start(revisions) -> None:
    from toolkit_cli.main import main

    assert main(["classify", "--help"]) == 0
    assert revisions.read_git_revision() == "r1"   # the runtime did not ask git
    assert main(["export", "--help"]) == 0          # reads 'r2' and keeps it
    revisions.read_git_revision()                   # 'r3': the tree moves on during the run
    assert revisions.git_revision() == "r2"
    revisions.git_revision.cache_clear()
    assert main(["train", "--help"]) == 0           # 'r4'
    revisions.read_git_revision()
    assert revisions.git_revision() == "r4"
