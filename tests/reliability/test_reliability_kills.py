"""Long runs killed with SIGKILL at seeded random points and resumed: nothing lost, nothing
twice, no torn line, no half-written report (tests/reliability/reliability_scenarios.py)."""

from __future__ import annotations

import signal

import pytest
from reliability_data import make_tiny_ai4mars, write_frames
from reliability_scenarios import (
    classify_kill_scenario,
    sim_kill_mid_write,
    sim_kill_scenario,
    train_kill_scenario,
)


@pytest.mark.slow
def test_classify_killed_at_random_points_resumes_to_the_uninterrupted_result(
        tmp_path, rel_bundle):
    r = classify_kill_scenario(tmp_path, rel_bundle.path, n_frames=40, kills=6, seed=0)
    assert r["kills"] >= 5, r["codes"]
    assert r["final_exit"] == 0
    assert r["frames"] == r["expected"] and r["duplicates"] == 0 and r["lost"] == 0
    assert r["in_order"] and r["tiles_identical"] and r["tiles_lost"] == 0
    assert r["partials_left"] == [] and r["resumed"] > 0


@pytest.mark.slow
def test_sim_killed_at_random_times_leaves_no_half_written_report(tmp_path, rel_bundle):
    r = sim_kill_scenario(tmp_path, rel_bundle.path, kills=8, seed=0)
    assert r["kills"] >= 5, r["codes"]
    assert set(r["states"]) <= {"absent", "complete"}  # _report_state asserts the rest
    assert r["final_exit"] == 0 and r["final_state"] == "complete"


def test_sim_killed_while_writing_its_report_keeps_the_previous_one(tmp_path, rel_bundle):
    src = tmp_path / "frames"
    write_frames(src, 4)
    r = sim_kill_mid_write(tmp_path, rel_bundle.path, src)
    assert r["exit"] == -signal.SIGKILL
    assert r["report_unchanged"] and r["state"] == "complete"
    assert len(r["torn_tmp_files"]) == 1  # the torn data only in a hidden temporary


@pytest.mark.slow
def test_pretrain_killed_and_resumed_gives_the_uninterrupted_losses(tmp_path):
    pytest.importorskip("torch")
    root = tmp_path / "ai4mars-msl-ncam-256"
    make_tiny_ai4mars(root)
    r = train_kill_scenario(tmp_path, root, kills=2, epochs=4, seed=0)
    assert r["kills"] == 2, r["codes"]
    assert r["history_epochs"] == [0, 1, 2, 3], r
    assert r["resumed"], r  # the last session resumed from a checkpoint, not from scratch
    assert r["max_loss_diff"] <= 1e-6, r
