"""export.model_card: the measured section of a model card, from bundles and validation data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from tiny_model import make_tiny_bundle

from edge.bundle import load_bundle
from edge.preprocess import frame_to_tiles
from edge.tiling import TilingSpec
from export.model_card import (
    END,
    START,
    CardConfig,
    CardError,
    card_dataset,
    confusion_png,
    splice,
    training_lines,
    validation_set,
    write_card,
)
from export.quantize import QuantVariant, quantize_model
from export.student import count_onnx_graph
from toolkit_cli.main import main
from train.datasets.ai4mars import load_ai4mars, tile_reference_labels


def quick(bundle: Path, out: Path, **kw: object) -> CardConfig:
    """A card over every val frame, timed on 2 frames, 2 rounds of 1 pass, 1 thread."""
    kw.setdefault("data_root", str(Path(kw.pop("ai4mars")).parent))
    return CardConfig(bundle=str(bundle), out=str(out), threads=(1,), repeats=1, rounds=2,
                      speed_frames=2, **kw)


def test_card_figures_match_an_independent_count(student, ai4mars_dir, tmp_path):
    out = tmp_path / "docs" / "terrain.md"
    out.parent.mkdir()
    write_card(quick(student["bundle"], out, ai4mars=ai4mars_dir,
                     compare=(("again", str(student["bundle"])),)), log=lambda _m: None)
    text = out.read_text()
    assert text.startswith("# Model card") and START in text and END in text

    # Recount accuracy from the frames, the masks and ONNX Runtime, without the card code.
    bundle = load_bundle(student["bundle"])
    data = load_ai4mars(ai4mars_dir)
    from edge.runners import make_runner

    runner = make_runner(bundle, "onnxruntime", 1)
    right = total = 0
    for frame_id in data.splits()["val"]:
        tiles = frame_to_tiles(cv2.imread(str(data.image_path(frame_id)), cv2.IMREAD_UNCHANGED),
                               bundle.manifest.input, bundle.manifest.tiling).tiles
        labels = tile_reference_labels(data.read_mask(frame_id), bundle.manifest.tiling)
        pred = runner.run(tiles).argmax(1)
        right += int((pred == labels)[labels >= 0].sum())
        total += int((labels >= 0).sum())
    assert f"### Validation: {total} tiles" in text
    assert f"Accuracy **{100 * right / total:.1f}%**" in text
    rows = [line for line in text.splitlines() if line.startswith("| shipped")
            or line.startswith("| again")]
    assert len(rows) == 2 and "| 100.0% |" in rows[1]  # the same model agrees with itself
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    ratio = cells.index("x shipped, 1 thr")
    assert [c.strip() for c in rows[0].strip("|").split("|")][ratio] == "1.0"
    assert "timed interleaved: 2 rounds" in text
    run = bundle.manifest.provenance["training_runs"]["distill"]
    assert f"- Trained: distill {run['steps']:,} steps (" in text
    assert "stopped by epochs." in text and "followed the clock" not in text

    png = cv2.imread(str(tmp_path / "docs" / "terrain-confusion.png"))
    assert png is not None and png.shape[2] == 3


def test_training_line_names_each_run_and_warns_of_a_time_budget():
    distill = {"steps": 12363, "epochs_seen": 20.606, "train_tiles": 153600,
               "train_seconds": 720.4, "stopped_by": "time budget"}
    qat = {"steps": 3000, "epochs_seen": 5.0, "train_tiles": 153600, "train_seconds": 347.0,
           "stopped_by": "steps"}
    (line,) = training_lines({"training_runs": {"distill": distill, "qat": qat}})
    assert line.startswith("- Trained: distill 12,363 steps (20.606 passes over 153,600 tiles, "
                           "720 s), stopped by time budget; qat 3,000 steps (5 passes")
    assert "followed the clock" in line
    (line,) = training_lines({"training_runs": {"qat": qat}})
    assert "followed the clock" not in line
    assert training_lines({}) == []   # bundles made before the runs were recorded
    assert training_lines({"training_runs": {"distill": {"steps": 5}}}) == []


def test_regeneration_keeps_the_hand_written_text(student, ai4mars_dir, tmp_path):
    out = tmp_path / "msl.md"
    out.write_text("# Card\n\nIntended use: by hand.\n\n" + START + "\nold figures\n" + END
                   + "\n\n## Limits\nBy hand too.\n")
    cfg = quick(student["bundle"], out, ai4mars=ai4mars_dir,
                reproduce="STEP=x bash scripts/make.sh")
    write_card(cfg, log=lambda _m: None)
    write_card(cfg, log=lambda _m: None)
    text = out.read_text()
    assert "Reproduce the shipped bundle: `STEP=x bash scripts/make.sh`" in text
    assert text.startswith("# Card\n\nIntended use: by hand.\n\n" + START)
    assert text.endswith(END + "\n\n## Limits\nBy hand too.\n")
    assert "old figures" not in text and text.count(START) == 1 == text.count(END)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["msl-confusion.png", "msl.md"]


@pytest.mark.parametrize("card", [f"a\n{START}\nb\n", f"a\n{END}\nb\n", f"{END}\nx\n{START}\n"])
def test_broken_markers_are_refused(card):
    with pytest.raises(CardError, match="marker"):
        splice(card, f"{START}\nnew\n{END}\n")


def test_a_card_without_markers_gets_the_section_appended():
    assert splice("# Card\nText.\n", f"{START}\nnew\n{END}\n") == (
        f"# Card\nText.\n\n{START}\nnew\n{END}\n")


def test_a_bad_card_leaves_the_file_untouched(student, ai4mars_dir, tmp_path):
    out = tmp_path / "card.md"
    out.write_text(f"text\n{START}\nno end marker\n")
    with pytest.raises(CardError):
        write_card(quick(student["bundle"], out, ai4mars=ai4mars_dir), log=lambda _m: None)
    assert out.read_text() == f"text\n{START}\nno end marker\n"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]


def test_whole_image_bundles_are_cards_of_msl(tmp_path):
    whole = make_tiny_bundle(tmp_path / "msl", tiling=TilingSpec(227, 227, 227,
                                                                 crop="centre-square"))
    tiles = make_tiny_bundle(tmp_path / "terrain")
    assert (card_dataset(whole), card_dataset(tiles)) == ("msl-v2.1", "ai4mars")


def test_a_bundle_with_other_normalisation_is_refused(ai4mars_dir, tmp_path):
    b = make_tiny_bundle(tmp_path / "b")
    manifest = json.loads((b.path / "manifest.json").read_text())
    manifest["input"]["mean"] = [0.4]
    (b.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CardError, match="not the training pipeline"):
        validation_set(load_bundle(b.path), str(ai4mars_dir.parent))


def test_confusion_png_shades_rows():
    png = cv2.imdecode(np.frombuffer(confusion_png(np.array([[9, 1], [0, 5]]), ["a", "b"]),
                                     np.uint8), cv2.IMREAD_COLOR)
    assert png is not None and png.shape[0] > 2 * 44 and png.shape[1] > 2 * 44


def test_qdq_graph_counts_the_same_parameters_and_macs_as_its_float_source(student, tmp_path):
    src = load_bundle(student["bundle"]).model_path
    tiles = np.random.default_rng(0).normal(size=(16, 1, 32, 32)).astype(np.float32)
    q = quantize_model(src, tmp_path / "q.onnx", QuantVariant(), tiles, "tiles")
    fp, q8 = count_onnx_graph(onnx.load(str(src))), count_onnx_graph(onnx.load(str(q)))
    assert q8["parameters"] == fp["parameters"] > 0
    assert q8["macs"] == fp["macs"] > 0


def test_card_command_rejects_a_malformed_compare(student, tmp_path, capsys):
    code = main(["export", "card", str(student["bundle"]), "--out", str(tmp_path / "c.md"),
                 "--compare", "no-equals-sign"])
    assert code == 1
    assert "LABEL=BUNDLE" in capsys.readouterr().err
    assert not (tmp_path / "c.md").exists()


@pytest.mark.parametrize("module", ["torch", "onnx"])
def test_card_command_without_the_train_extra_says_what_to_install(student, tmp_path, capsys,
                                                                    monkeypatch, module):
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    code = main(["export", "card", str(student["bundle"]), "--out", str(tmp_path / "c.md")])
    assert code == 1
    assert "pip install '.[train]'" in capsys.readouterr().err
    assert not (tmp_path / "c.md").exists()
