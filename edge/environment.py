"""What a machine offers the runtime (``edge env``): versions, the CPU's features, the
backends that can run, and what the features mean for INT8 inference and bf16 training.

Written for the engineer bringing up a new board: before timing anything, it says whether
this CPU has an int8 dot product (the INT8 bundle's gain over fp32 depends on it; see
docs/export.md) and whether TensorRT can be used. Nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from edge import __version__
from edge.bundle import MODELS_DIR
from edge.cpu_info import CpuInfo, cpu_info, usable_cpus


def int8_note(info: CpuInfo) -> str:
    """What the CPU's features mean for an INT8 bundle on ONNX Runtime."""
    if info.int8_dot:
        return (f"int8 dot product ({info.int8_dot}): ONNX Runtime's uint8 x int8 kernels use "
                "it, so the INT8 bundle gains more over fp32 here than on a CPU without one "
                "(docs/export.md)")
    if info.machine in ("x86_64", "AMD64", "i686", "x86"):
        return ("no int8 dot product: ONNX Runtime multiplies uint8 by int8 with 16-bit pair "
                "sums (VPMADDUBSW), so expect a smaller INT8 gain over fp32 "
                "(docs/export.md, 'The ceiling')")
    return ("no int8 dot product listed: time the INT8 and fp32 bundles side by side "
            "(edge bench --model terrain, then --model terrain-fp32) before choosing")


def bf16_note(info: CpuInfo) -> str:
    """What the CPU's features mean for bfloat16 training (``--precision bf16``)."""
    if info.native_bf16:
        return (f"native bfloat16 ({', '.join(info.native_bf16)}): --precision bf16 can speed "
                "training")
    return ("no native bfloat16: keep training in float32 (bf16 autocast would be emulated, "
            "much slower; docs/results/throughput.md)")


def tensorrt_line() -> str:
    """Whether ``--backend tensorrt`` can run here, and if not, why."""
    from edge.trt_runner import tensorrt_status

    problem = tensorrt_status(check_gpu=True)
    return "available" if problem is None else f"unavailable: {problem}"


def shipped_bundles() -> list[str]:
    """Names of the bundles under ``edge/models`` (those with a manifest)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "manifest.json").is_file())


def environment_report() -> dict[str, Any]:
    """The facts ``edge env`` prints, as a JSON-ready dict."""
    info = cpu_info()
    return {
        "edge": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "cpu": info.to_json(),
        "cpu_line": info.describe(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "int8": int8_note(info),
        "bf16": bf16_note(info),
        "tensorrt": tensorrt_line(),
        "torch_installed": importlib.util.find_spec("torch") is not None,
        "bundles": shipped_bundles(),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as the lines ``edge env`` prints."""
    torch = ("installed (edge train / edge export can run)" if report["torch_installed"]
             else "not installed (runtime only: edge classify, bench, sim)")
    rows = [
        ("edge", f"{report['edge']} (python {report['python']}, {report['platform']})"),
        ("packages", f"numpy {report['numpy']}, opencv {report['opencv']}, "
                     f"onnxruntime {report['onnxruntime']}"),
        ("providers", ", ".join(report["onnxruntime_providers"])),
        ("cpu", f"{report['cpu_line']}, {report['cpus_usable']} of {report['cpus']} cores "
                "usable"),
        ("int8", report["int8"]),
        ("bf16", report["bf16"]),
        ("tensorrt", report["tensorrt"]),
        ("torch", torch),
        ("bundles", ", ".join(report["bundles"]) or "none shipped"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
