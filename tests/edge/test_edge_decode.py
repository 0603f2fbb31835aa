from pathlib import Path

import cv2
import numpy as np
import pytest
from edge_images import synthetic_frame, write_frame
from image_headers import huge_jpeg, huge_png, huge_tiff

from edge.decode import MAX_PIXELS, FrameError, decode_image, read_image


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def _read_error(path: Path) -> str:
    with pytest.raises(FrameError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(str(path)), message  # the error names the file
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in _read_error(path)


def test_truncated_jpeg(tmp_path):
    data = _encode(".jpg", synthetic_frame(64, 64, 3))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated JPEG" in _read_error(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_png(tmp_path, keep):
    data = _encode(".png", synthetic_frame(64, 64, 3))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * keep)])
    assert "truncated PNG" in _read_error(path)


def test_png_with_bytes_after_iend_decodes(tmp_path):
    """Padding after a whole IEND chunk (block-padded transfers) is not truncation."""
    frame = synthetic_frame(64, 64)
    data = _encode(".png", frame)
    path = tmp_path / "padded.png"
    path.write_bytes(data + b"\x00" * 40)
    np.testing.assert_array_equal(read_image(path), frame)


def test_png_with_a_corrupt_chunk_length_is_refused(tmp_path):
    """A chunk length pointing past the end of the file: the chunk list never reaches IEND,
    though an IEND still sits in the last bytes."""
    data = bytearray(_encode(".png", synthetic_frame(64, 64)))
    data[33:37] = (10_000_000).to_bytes(4, "big")  # the first chunk after IHDR
    path = tmp_path / "bad_length.png"
    path.write_bytes(bytes(data))
    assert "truncated PNG" in _read_error(path)


def test_random_bytes_with_jpg_extension(tmp_path):
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "not a readable image" in _read_error(path)


def test_corrupt_png_body(tmp_path):
    data = bytearray(_encode(".png", synthetic_frame(64, 64)))
    data[60:120] = b"\x00" * 60  # inside IDAT; signature and IEND intact
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    _read_error(path)


def test_png_header_claiming_enormous_size(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png(100_000, 100_000))
    message = _read_error(path)
    assert "100000x100000" in message and str(MAX_PIXELS) in message


def test_jpeg_header_claiming_enormous_size(tmp_path):
    path = tmp_path / "bomb.jpg"
    path.write_bytes(huge_jpeg(65_000, 65_000))
    assert "65000x65000" in _read_error(path)


def test_png_header_size_is_parsed_right():
    # Within the limit the header check lets the decoder speak (this one is not decodable).
    with pytest.raises(FrameError, match="not a readable image"):
        decode_image(huge_png(64, 64), "small.png")


def test_missing_file(tmp_path):
    assert "cannot read" in _read_error(tmp_path / "absent.png")


def test_directory_instead_of_file(tmp_path):
    folder = tmp_path / "dir.png"
    folder.mkdir()
    _read_error(folder)


def test_error_uses_given_name(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(FrameError, match=r"^sub/empty\.jpg: "):
        read_image(path, "sub/empty.jpg")


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("grey8.png", synthetic_frame(40, 50)),
        ("grey16.png", synthetic_frame(40, 50, dtype=np.uint16)),
        ("bgr8.png", synthetic_frame(40, 50, 3)),
        ("bgr16.png", synthetic_frame(40, 50, 3, dtype=np.uint16)),
        ("bgra8.png", synthetic_frame(40, 50, 4)),
        ("grey.tif", synthetic_frame(40, 50, dtype=np.uint16)),
    ],
)
def test_lossless_formats_round_trip(tmp_path, name, image):
    path = write_frame(tmp_path / name, image)
    decoded = read_image(path)
    assert decoded.dtype == image.dtype
    np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize(("channels", "shape"), [(0, (40, 50)), (3, (40, 50, 3))])
def test_jpeg_decodes(tmp_path, channels, shape):
    image = synthetic_frame(40, 50, channels)
    path = write_frame(tmp_path / "f.jpg", image)
    decoded = read_image(path)
    assert decoded.shape == shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - image.astype(int)).mean() < 16  # noise is lossy in JPEG
    assert abs(decoded.mean() - image.mean()) < 3


def test_jpeg_with_trailing_padding_is_accepted(tmp_path):
    data = _encode(".jpg", synthetic_frame(32, 32))
    assert decode_image(data + b"\x00" * 32, "padded.jpg").shape == (32, 32)


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("grey8.tif", synthetic_frame(40, 50)),
        ("bgr8.tif", synthetic_frame(40, 50, 3)),
        ("bgr16.tiff", synthetic_frame(40, 50, 3, dtype=np.uint16)),
        ("bgra8.tif", synthetic_frame(40, 50, 4)),
        ("bgra16.tif", synthetic_frame(40, 50, 4, dtype=np.uint16)),
        ("bgra16.png", synthetic_frame(40, 50, 4, dtype=np.uint16)),
    ],
)
def test_tiff_and_rgba_round_trip(tmp_path, name, image):
    decoded = read_image(write_frame(tmp_path / name, image))
    assert decoded.dtype == image.dtype and decoded.shape == image.shape
    np.testing.assert_array_equal(decoded, image)


def test_tiff_header_claiming_enormous_size(tmp_path):
    path = tmp_path / "bomb.tif"
    path.write_bytes(huge_tiff(70_000, 70_000))
    assert "70000x70000" in _read_error(path)


@pytest.mark.parametrize("ext", [".tif", ".png", ".jpg"])
def test_real_header_sizes_within_limit_pass(ext):
    data = _encode(ext, synthetic_frame(30, 70, 3))
    assert decode_image(data, "f" + ext).shape == (30, 70, 3)


def test_truncated_tiff(tmp_path):
    data = _encode(".tif", synthetic_frame(64, 64, 3))
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 3])
    _read_error(path)


def test_text_file_with_image_name(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not a picture\n")
    assert "not a readable image" in _read_error(path)
