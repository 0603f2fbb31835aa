"""The output folder's lock, and a full disk (a file-size limit on the process)."""

from __future__ import annotations

from reliability_scenarios import full_disk_scenario, lock_scenario


def test_second_classify_into_a_busy_folder_is_refused(tmp_path, rel_bundle):
    r = lock_scenario(tmp_path, rel_bundle.path)
    assert r["first_still_running"], "the first run ended before the second tried"
    assert r["second_exit"] == 1
    assert "another edge classify is writing to" in r["second_message"]
    assert "Traceback" not in r["second_message"]
    assert r["first_exit"] == 0 and r["first_frames"] == r["expected"]  # undisturbed


def test_full_disk_is_a_clear_error_and_resume_completes(tmp_path, rel_bundle):
    r = full_disk_scenario(tmp_path, rel_bundle.path)
    assert r["classify_exit"] == 1
    assert r["classify_message"].startswith("error: cannot write the results to")
    assert "File too large" in r["classify_message"]
    assert r["published_while_full"] == []  # nothing passes for a complete result
    assert "tiles.jsonl.partial" in r["partials_left"]
    assert r["resume_exit"] == 0
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["tiles_identical"]
    assert r["sim_exit"] == 1 and "cannot write the report" in r["sim_message"]
    assert "report.json" not in r["sim_left"] and not any(n.endswith(".tmp") for n in r["sim_left"])
