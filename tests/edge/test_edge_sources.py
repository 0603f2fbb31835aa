import cv2
import numpy as np
import pytest
from edge_camera import FakeCamera
from edge_images import synthetic_frame, write_frame

from edge.decode import FrameError
from edge.sources import SourceError, list_image_files, open_source


def _names(source, **kwargs):
    return [ref.name for ref in open_source(source, **kwargs)]


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "src"
    for name in ["b.png", "a.jpg", "c.JPEG", "d.tif", "sub/e.png", "sub/deeper/f.png"]:
        write_frame(root / name, synthetic_frame(32, 32))
    (root / "notes.txt").write_text("not an image")
    (root / "manifest.json").write_text("{}")
    (root / "folder.png").mkdir()  # a folder with an image suffix is not a frame
    return root


def test_directory_sorted_non_images_ignored(tree):
    assert _names(tree) == ["a.jpg", "b.png", "c.JPEG", "d.tif"]


def test_directory_recursive(tree):
    assert _names(tree, recursive=True) == [
        "a.jpg", "b.png", "c.JPEG", "d.tif", "sub/deeper/f.png", "sub/e.png"]


def test_frames_decode_lazily(tree):
    refs = list(open_source(tree))
    assert all(ref.decode_ms is None for ref in refs)
    image = refs[0].load()
    assert image.shape == (32, 32)


def test_glob_names_relative_to_static_root(tree):
    assert _names(str(tree / "*.png")) == ["b.png"]
    assert _names(str(tree / "sub" / "*" / "*.png")) == ["deeper/f.png"]
    assert _names(str(tree / "**" / "*.png"), recursive=True) == [
        "b.png", "sub/deeper/f.png", "sub/e.png"]
    assert _names(str(tree / "[ab].*")) == ["a.jpg", "b.png"]


def test_glob_skips_non_images(tree):
    assert _names(str(tree / "*")) == ["a.jpg", "b.png", "c.JPEG", "d.tif"]


def test_glob_matching_nothing(tree):
    with pytest.raises(SourceError, match="matches no image files"):
        open_source(str(tree / "*.bmp"))


def test_relative_glob(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert _names("*.jpg") == ["a.jpg"]
    root, files = list_image_files("sub/*.png")
    assert str(root) == "sub" and [f.name for f in files] == ["e.png"]


def test_single_file(tree):
    refs = list(open_source(tree / "sub" / "e.png"))
    assert [r.name for r in refs] == ["e.png"]
    assert refs[0].load().shape == (32, 32)


def test_single_corrupt_file_fails_on_load_not_on_open(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (ref,) = open_source(path)
    with pytest.raises(FrameError, match="^bad.png: "):
        ref.load()


def test_nonexistent_path(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "missing")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "missing.avi")


def test_empty_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no image files.*--recursive"):
        open_source(tmp_path / "empty")


def test_directory_with_images_only_in_subfolders(tree):
    outer = tree.parent / "outer"
    write_frame(outer / "inner" / "x.png", synthetic_frame(32, 32))
    with pytest.raises(SourceError, match="--recursive"):
        open_source(outer)
    assert _names(outer, recursive=True) == ["inner/x.png"]


def test_non_image_file_as_source(tree):
    with pytest.raises(SourceError, match="neither an image .* nor a video"):
        open_source(tree / "notes.txt")


def _write_video(path, frames, fps=5):
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def test_video_yields_numbered_frames(tmp_path):
    levels = [20, 120, 220]
    frames = [np.full((48, 64, 3), v, np.uint8) for v in levels]
    path = _write_video(tmp_path / "clip.avi", frames)
    refs = list(open_source(path))
    assert [r.name for r in refs] == ["clip.avi#000000", "clip.avi#000001", "clip.avi#000002"]
    for ref, level in zip(refs, levels, strict=True):
        image = ref.load()
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8
        assert abs(float(image.mean()) - level) < 6
        assert ref.decode_ms is not None and ref.decode_ms >= 0


def test_unreadable_video_is_one_error_frame(tmp_path):
    path = tmp_path / "broken.avi"
    path.write_bytes(b"RIFF" + b"\x00" * 64)
    (ref,) = list(open_source(path))  # bad input, not a usage error: recorded, exit 2
    assert ref.name == "broken.avi"
    with pytest.raises(FrameError, match=r"^broken\.avi: video cannot be opened"):
        ref.load()


def test_stream_totals(tree, tmp_path):
    assert open_source(tree).total == 4 and open_source(tree).kind == "files"
    assert open_source(str(tree / "*.png")).total == 1
    video = _write_video(tmp_path / "clip.avi", [np.zeros((16, 16, 3), np.uint8)] * 3)
    stream = open_source(video)
    assert stream.kind == "video" and stream.total == 3 and len(list(stream)) == 3


@pytest.fixture()
def camera(monkeypatch, tmp_path):
    """No camera is attached here: cv2.VideoCapture is replaced by FakeCamera."""
    import edge.sources

    monkeypatch.setattr(edge.sources.cv2, "VideoCapture", FakeCamera)
    monkeypatch.chdir(tmp_path)
    FakeCamera.opened, FakeCamera.frames, FakeCamera.works = [], 3, True
    return FakeCamera


def test_camera_index_opens_video_capture(camera):
    stream = open_source("1")
    assert camera.opened == [1] and stream.kind == "camera" and stream.total is None
    refs = list(stream)
    assert [r.name for r in refs] == ["camera1#000000", "camera1#000001", "camera1#000002"]
    assert refs[0].load().shape == (48, 64, 3) and refs[0].decode_ms is not None


def test_camera_that_does_not_open(camera):
    camera.works = False
    with pytest.raises(SourceError, match="camera 0 cannot be opened"):
        open_source("0")


def test_camera_without_frames_is_an_error_frame(camera):
    camera.frames = 0
    (ref,) = list(open_source("0"))
    with pytest.raises(FrameError, match="camera 0 holds no readable frame"):
        ref.load()


def test_digits_that_name_a_path_are_a_path(camera, tmp_path):
    write_frame(tmp_path / "0" / "a.png", synthetic_frame(32, 32))
    assert _names("0") == ["a.png"] and camera.opened == []
