"""Output files: JSONL and CSV codecs, torn-line handling, the per-frame writer."""

import csv
import io
import json

import pytest

from edge.csv_output import FRAME_COLUMNS, CsvCodec, tile_columns
from edge.outputs import (
    PARTIAL,
    TILE_FIELDS,
    JsonlCodec,
    RunWriter,
    complete_lines,
    write_json_atomic,
)

FRAME = {"frame": "a, \"odd\"\nname.png", "width": 640, "height": 480, "tiles": 2,
         "timings_ms": {"decode": 1.5, "preprocess": 0.25, "inference": 3.0, "postprocess": 0.125,
                        "write": 0.5}, "error": None}
ERROR_FRAME = {"frame": "bad.jpg", "width": None, "height": None, "tiles": 0, "timings_ms": None,
               "error": "bad.jpg: truncated JPEG (no end-of-image marker)"}
TILE = {"frame": "a.png", "x": 0, "y": 32, "w": 32, "h": 32, "label": "uncertain", "class_id": 2,
        "confidence": 0.4321, "best_label": "sand"}


def _roundtrip(codec, records):
    text = codec.header() + codec.encode(records)
    return [r for r, _ in codec.decode(io.StringIO(text))]


@pytest.mark.parametrize("codec", [JsonlCodec("frames"), CsvCodec("frames")], ids=["jsonl", "csv"])
def test_frame_records_round_trip(codec):
    assert _roundtrip(codec, [FRAME, ERROR_FRAME]) == [FRAME, ERROR_FRAME]


@pytest.mark.parametrize("codec", [JsonlCodec("tiles"), CsvCodec("tiles", tile_columns(True))],
                         ids=["jsonl", "csv"])
def test_tile_records_round_trip(codec):
    assert _roundtrip(codec, [TILE, TILE]) == [TILE, TILE]


def test_csv_columns_and_flattened_timings():
    text = CsvCodec("frames").header() + CsvCodec("frames").encode([FRAME, ERROR_FRAME])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(FRAME_COLUMNS)
    assert FRAME_COLUMNS[4:9] == ("timing_decode_ms", "timing_preprocess_ms",
                                  "timing_inference_ms", "timing_postprocess_ms",
                                  "timing_write_ms")
    assert rows[0]["frame"] == FRAME["frame"] and rows[0]["timing_inference_ms"] == "3.0"
    assert rows[0]["error"] == "" and rows[1]["width"] == "" and rows[1]["error"].startswith("bad")
    assert tile_columns() == TILE_FIELDS and tile_columns(True)[-1] == "best_label"


def test_jsonl_decode_stops_at_torn_or_foreign_line():
    codec = JsonlCodec("tiles")
    good = codec.encode([TILE])
    for tail in ['{"frame":"a.png","x":', "[1, 2]\n", '{"no_frame": 1}\n', "garbage\n"]:
        lines = io.StringIO(good + tail + good)
        assert [r for r, _ in codec.decode(lines)] == [TILE], tail


def test_csv_decode_stops_at_bad_rows_and_wrong_header():
    codec = CsvCodec("frames")
    head, row = codec.header(), codec.encode([ERROR_FRAME])
    assert len(_roundtrip(codec, [ERROR_FRAME])) == 1
    for tail in ["only,three,cells\n", 'open "quote,x\n', "x,notanint,1,0,,,,,,\n"]:
        assert [r for r, _ in codec.decode(io.StringIO(head + row + tail + row))] == [
            ERROR_FRAME], tail
    other = CsvCodec("tiles", tile_columns(True))
    assert list(other.decode(io.StringIO(CsvCodec("tiles").header()))) == []


def test_complete_lines_drops_torn_last_line(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    assert list(complete_lines(path)) == ['{"a":1}\n', '{"b":2}\n']
    path.write_bytes(b"")
    assert list(complete_lines(path)) == []


def test_writer_tiles_before_frame_in_every_format(tmp_path):
    codecs = [JsonlCodec("tiles"), JsonlCodec("frames"), CsvCodec("tiles"), CsvCodec("frames")]
    writer = RunWriter(tmp_path, codecs)
    tile = {k: v for k, v in TILE.items() if k != "best_label"}
    writer.write_tiles([tile])
    # flushed frame by frame: readable before commit
    assert json.loads((tmp_path / ("tiles.jsonl" + PARTIAL)).read_text()) == tile
    assert (tmp_path / ("frames.csv" + PARTIAL)).read_text() == CsvCodec("frames").header()
    writer.write_frame(ERROR_FRAME)
    final = writer.commit()
    assert sorted(final) == ["frames.csv", "frames.jsonl", "tiles.csv", "tiles.jsonl"]
    assert not list(tmp_path.glob("*" + PARTIAL))
    assert _roundtrip(CsvCodec("frames"), []) == []
    rows = list(csv.DictReader((tmp_path / "tiles.csv").open()))
    assert rows[0]["label"] == "uncertain" and rows[0]["confidence"] == "0.4321"


def test_writer_append_keeps_existing_lines(tmp_path):
    first = RunWriter(tmp_path, [CsvCodec("tiles"), CsvCodec("frames")])
    first.write_frame(ERROR_FRAME)
    first.close()
    again = RunWriter(tmp_path, [CsvCodec("tiles"), CsvCodec("frames")], append=True)
    again.write_frame(ERROR_FRAME)
    again.commit()
    text = (tmp_path / "frames.csv").read_text()
    assert text.count("frame,width") == 1  # header written once
    assert len(list(CsvCodec("frames").decode(io.StringIO(text)))) == 2


def test_write_json_atomic_leaves_no_temporary(tmp_path):
    write_json_atomic(tmp_path / "run.json", {"a": 1})
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def _dumps_lines(records):
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)


PLAIN_TILE = {"frame": "d/ü\t\"x\".png", "x": 0, "y": 32, "w": 32, "h": 32, "label": "big rock",
        "class_id": 3, "confidence": 0.1234}


@pytest.mark.parametrize("record", [
    PLAIN_TILE,
    PLAIN_TILE | {"confidence": 1.0},
    PLAIN_TILE | {"confidence": 1e-05, "frame": "\ud800bad-surrogate.png"},
    PLAIN_TILE | {"x": 2**70},
    PLAIN_TILE | {"label": "uncertain", "best_label": "sand"},      # an extra field
    {k: PLAIN_TILE[k] for k in reversed(TILE_FIELDS)},              # other key order
    PLAIN_TILE | {"class_id": True},                                # a bool is not an int here
    PLAIN_TILE | {"confidence": float("nan")},                      # json.dumps writes NaN
    PLAIN_TILE | {"confidence": 1},                                 # an int where a float goes
    PLAIN_TILE | {"frame": None},
])
def test_jsonl_encode_writes_what_json_dumps_writes(record):
    codec = JsonlCodec("tiles")
    assert codec.encode([record, record]) == _dumps_lines([record, record])


def test_jsonl_encode_matches_json_dumps_on_random_tile_records():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    ints = st.integers(min_value=-(2**40), max_value=2**40)
    tile = st.fixed_dictionaries({
        "frame": st.text(), "x": ints, "y": ints, "w": ints, "h": ints, "label": st.text(),
        "class_id": ints, "confidence": st.floats(allow_nan=True, allow_infinity=True)})

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(st.lists(tile, max_size=5))
    def check(records):
        assert JsonlCodec("tiles").encode(records) == _dumps_lines(records)

    check()
