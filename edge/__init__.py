"""Edge runtime: classify the terrain tiles of rover camera frames (numpy, OpenCV, ONNX Runtime).

This package never imports torch, nor anything from ``train``, ``export`` or ``firmware_sim``.
"""

__version__ = "0.1.0"
