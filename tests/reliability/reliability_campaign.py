"""The reliability campaign: every scenario of tests/reliability once, figures as a table.

    python tests/reliability/reliability_campaign.py --out /tmp/campaign

Prints the Markdown table of docs/reliability.md and writes it, with the raw figures, to
``OUT/reliability_table.md`` and ``OUT/reliability_figures.json``. Inputs are synthetic and
seeded (``--seed``); nothing is written inside the repository. Takes about a minute on two
cores (training needs torch; without it that row says so).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script, this folder is on sys.path; the shared helpers (pytest's pythonpath) too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from hostile_inputs import write_corrupt_video  # noqa: E402
from reliability_data import make_bundle, make_tiny_ai4mars, run_edge  # noqa: E402
from reliability_scenarios import (  # noqa: E402
    bundle_scenario,
    classify_kill_scenario,
    full_disk_scenario,
    inputs_scenario,
    lock_scenario,
    read_jsonl,
    sim_kill_scenario,
    train_kill_scenario,
)


def _video_scenario(work: Path, bundle_dir: Path) -> dict:
    clip = work / "clip.avi"
    n, corrupt = write_corrupt_video(clip, frames=12, corrupt=(4, 5, 8))
    out = work / "video_out"
    proc = run_edge("classify", str(clip), "--out", str(out), "--model", str(bundle_dir),
                    "--quiet")
    frames = read_jsonl(out / "frames.jsonl")
    names = [f["frame"] for f in frames]
    cut = work / "cut.avi"
    write_corrupt_video(cut, frames=12, corrupt=())
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    cut_proc = run_edge("classify", str(cut), "--out", str(work / "cut_out"), "--model",
                        str(bundle_dir), "--quiet")
    cut_frames = read_jsonl(work / "cut_out" / "frames.jsonl")
    return {"exit": proc.returncode, "frames": n, "corrupted": len(corrupt),
            "records": len(names), "unique": len(set(names)),
            "errors": sum(f["error"] is not None for f in frames),
            "cut_exit": cut_proc.returncode, "cut_records": len(cut_frames),
            "cut_errors": sum(f["error"] is not None for f in cut_frames),
            "cut_message": cut_frames[-1]["error"]}


def campaign(out: Path, seed: int) -> tuple[str, dict]:
    """Run every scenario under ``out``; return the Markdown table and the figures."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bundle = make_bundle(out / "bundle").path
    t0 = time.monotonic()
    figs: dict = {}
    inputs = inputs_scenario(out, bundle, seed=seed)
    kinds: dict[str, Counter] = {}
    for (kind, outcome), count in inputs["outcomes"].items():
        kinds.setdefault(kind, Counter())[outcome] += count
    figs["inputs"] = {"exit": inputs["exit"], "good_frames": len(inputs["good"]),
                      "per_kind": {k: dict(v) for k, v in kinds.items()}}
    figs["video"] = _video_scenario(out, bundle)
    figs["bundles"] = bundle_scenario(out)
    figs["classify_kills"] = classify_kill_scenario(out, bundle, n_frames=40, kills=6, seed=seed)
    figs["sim_kills"] = sim_kill_scenario(out, bundle, kills=8, seed=seed)
    if importlib.util.find_spec("torch") is not None:
        make_tiny_ai4mars(out / "ai4mars")
        figs["train_kills"] = train_kill_scenario(out, out / "ai4mars", kills=2, epochs=4,
                                                  seed=seed)
    figs["lock"] = lock_scenario(out, bundle)
    figs["full_disk"] = full_disk_scenario(out, bundle)
    figs["wall_s"] = round(time.monotonic() - t0, 1)
    (out / "reliability_figures.json").write_text(json.dumps(figs, indent=2, default=str) + "\n")
    return table(figs), figs


def _outcome(counts: dict) -> str:
    return ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))


def table(f: dict) -> str:
    """The Markdown tables of docs/reliability.md from the figures."""
    rows = ["### Inputs (one `edge classify --recursive --format jsonl,csv` over all of them, "
            f"with {f['inputs']['good_frames']} good frames: exit {f['inputs']['exit']})", "",
            "| input kind | files tried | outcome | records per file |", "|---|---|---|---|"]
    for kind, counts in f["inputs"]["per_kind"].items():
        rows.append(f"| {kind} | {sum(counts.values())} | {_outcome(counts)} | "
                    f"{'none (not a frame)' if 'not listed' in counts else 'exactly 1'} |")
    v = f["video"]
    rows += [f"| MJPG video, {v['corrupted']} of {v['frames']} frames corrupted | 1 "
                f"({v['frames']} frames) | {v['records'] - v['errors']} frames classified, "
                f"{v['errors']} clear errors (exit {v['exit']}) | "
                f"{'exactly 1' if v['unique'] == v['records'] == v['frames'] else 'MISMATCH'} |",
                f"| MJPG video of 12 frames cut in half | 1 | {v['cut_records'] - v['cut_errors']} "
                f"frames classified, {v['cut_errors']} clear error (exit {v['cut_exit']}): "
                f"`{v['cut_message']}` | 1 per readable frame, 1 for the cut |"]
    rows += ["", "### Bundles (`edge classify --model BUNDLE`)", "",
             "| bundle | exit | refused with | outputs written |", "|---|---|---|---|"]
    for b in f["bundles"]:
        rows.append(f"| {b['case']} | {b['exit']} | {'' if b['named'] else 'NOT NAMED: '}"
                    f"`{_tail(b['message'])}` | {'yes' if b['written'] else 'no'} |")
    c, s = f["classify_kills"], f["sim_kills"]
    rows += ["", "### Kills and resumption", "",
             "| run | SIGKILLs survived | outcome | records lost | records twice |",
             "|---|---|---|---|---|",
             f"| `edge classify --resume`, {c['expected']} frames, stride 8 | {c['kills']} | "
             f"resumed to exit {c['final_exit']}; tiles.jsonl byte-identical to an "
             f"uninterrupted run: {c['tiles_identical']}; no torn line | "
             f"{c['lost']} frames, {c['tiles_lost']} tiles | {c['duplicates']} |",
             f"| `edge sim`, 40 frames | {s['kills']} | report after each kill: "
             f"{_outcome(dict(s['states']))} (never half-written); rerun exit {s['final_exit']} "
             "| n/a | n/a |",
             f"| `edge sim`, killed halfway through writing report.json | "
             f"{1 if s['mid_write']['exit'] == -9 else 0} | previous report unchanged: "
             f"{s['mid_write']['report_unchanged']}; torn bytes only in a hidden "
             f"`{'.report.json.*.tmp'}` | 0 | n/a |"]
    if "train_kills" in f:
        t = f["train_kills"]
        rows.append(f"| `edge train pretrain --resume`, 4 epochs | {t['kills']} | epochs "
                    f"{t['epochs_after_resume']} run by the last resume; over the history's "
                    f"epochs {t['history_epochs']}, largest loss difference from the "
                    f"uninterrupted run {t['max_loss_diff']:.1e} | 0 epochs | 0 |")
    else:
        rows.append("| `edge train pretrain --resume` | not run | torch not installed | | |")
    lk, d = f["lock"], f["full_disk"]
    rows += ["", "### Lock and full disk", "", "| case | exit | message | result |",
             "|---|---|---|---|",
             f"| second `edge classify` into a folder in use | {lk['second_exit']} | "
             f"`{_tail(lk['second_message'])}` | first run undisturbed: exit {lk['first_exit']}, "
             f"{lk['first_frames']}/{lk['expected']} frames |",
             f"| `edge classify` with a 48 KiB file-size limit (EFBIG) | {d['classify_exit']} | "
             f"`{_tail(d['classify_message'])}` | published as complete: "
             f"{d['published_while_full'] or 'nothing'}; left: {', '.join(d['partials_left'])};"
             f" `--resume` without the limit: exit {d['resume_exit']}, {d['lost']} frames lost, "
             f"{d['duplicates']} twice, tiles identical: {d['tiles_identical']} |",
             f"| `edge sim` with a 4 KiB file-size limit | {d['sim_exit']} | "
             f"`{_tail(d['sim_message'])}` | left in the report folder: "
             f"{', '.join(d['sim_left']) or 'nothing'} |"]
    rows += ["", f"Campaign wall time {f['wall_s']} s."]
    return "\n".join(rows)


def _tail(message: str) -> str:
    """A message with temporary paths shortened to their last component."""
    words = []
    for word in message.split(" "):
        if "/" in word and ("/tmp" in word or word.startswith("'/")):
            quote = "'" if word.startswith("'") else ""
            rest = word.rstrip("';,)")
            end = word[len(rest):]
            words.append(f"{quote}.../{Path(rest.strip(chr(39))).name}{end}")
        else:
            words.append(word)
    return " ".join(words).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="Work folder (emptied first).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    text, figs = campaign(args.out, args.seed)
    (args.out / "reliability_table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
