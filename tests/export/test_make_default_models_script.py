"""scripts/make_default_models.sh, STEP=card, run with EDGE=echo so that no command runs."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TERRAIN_LINEAGE = ("terrain-teacher", "terrain-student-fp32", "terrain-student-qat-snap-fp32")


def run_card_step(runs: Path) -> subprocess.CompletedProcess:
    """The card step against the bundles under RUNS=runs, printing the edge commands."""
    env = {**os.environ, "EDGE": "echo", "STEP": "card", "RUNS": str(runs)}
    return subprocess.run(
        ["bash", "scripts/make_default_models.sh"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )


def card_commands(stdout: str) -> list[str]:
    """The card each echoed `export card` line would write (its --out)."""
    return [line.split(" --out ")[1].split()[0] for line in stdout.splitlines()
            if line.startswith("export card ")]


def test_missing_lineage_skips_the_terrain_card_names_it_and_fails(tmp_path: Path) -> None:
    (tmp_path / "bundles" / "terrain-teacher").mkdir(parents=True)
    (tmp_path / "bundles" / "terrain-teacher" / "manifest.json").write_text("{}")

    result = run_card_step(tmp_path)

    assert result.returncode == 1
    assert card_commands(result.stdout) == ["docs/models/msl.md", "docs/models/terrain-r18.md"]
    assert "docs/models/terrain.md not regenerated" in result.stderr
    assert "terrain-student-fp32" in result.stderr
    assert "terrain-student-qat-snap-fp32" in result.stderr
    assert "/terrain-teacher " not in result.stderr   # present, so not named
    assert "STEP=terrain" in result.stderr


def test_every_card_is_written_when_the_lineage_is_at_hand(tmp_path: Path) -> None:
    for name in TERRAIN_LINEAGE:
        (tmp_path / "bundles" / name).mkdir(parents=True)
        (tmp_path / "bundles" / name / "manifest.json").write_text("{}")

    result = run_card_step(tmp_path)

    assert result.returncode == 0, result.stderr
    assert card_commands(result.stdout) == [
        "docs/models/terrain.md", "docs/models/msl.md", "docs/models/terrain-r18.md",
    ]
    terrain_line = result.stdout.splitlines()[0]
    for name in TERRAIN_LINEAGE:
        assert f"{tmp_path}/bundles/{name}" in terrain_line
