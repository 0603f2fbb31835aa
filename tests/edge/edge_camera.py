"""A stand-in for cv2.VideoCapture(int): no camera is attached to the machines that run the
tests, so the camera-index source is tested against this fake."""

from __future__ import annotations

from edge_images import synthetic_frame


class FakeCamera:
    """Stands in for cv2.VideoCapture(int): ``frames`` frames, then end of stream."""

    opened: list = []
    frames = 3
    works = True

    def __init__(self, index):
        FakeCamera.opened.append(index)
        self.left = FakeCamera.frames
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return FakeCamera.works

    def read(self):
        if self.left == 0:
            return False, None
        self.left -= 1
        return True, synthetic_frame(48, 64, 3, seed=self.left)

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True
