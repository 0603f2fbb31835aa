"""train.revision: the revision recorded with runs, with and without git."""

from __future__ import annotations

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
    assert revision.git_revision() == "unknown"
    monkeypatch.setenv("EDGE_GIT_REVISION", "abc123")
    assert revision.git_revision() == "abc123+copy"
