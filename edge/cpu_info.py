"""What CPU a figure was measured on: its model name and the instruction-set features that
decide how fast INT8 and bfloat16 kernels run.

A model name alone does not say it: this workplace's machines have all reported "AMD EPYC",
some with AVX2 only and some with AVX-512 VNNI and BF16, and ONNX Runtime's INT8 kernels ran
at up to 2x their FP32 rate on the first and up to 4.5x on the second (docs/export.md). So
every speed figure the toolkit records names the features too.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: Features worth recording, in the order they are reported. x86: vector widths, the int8
#: dot products (VNNI as AVX-512 or AVX encodings, AMX tiles) and bfloat16 arithmetic. Arm
#: (``/proc/cpuinfo`` "Features"): dot product (SDOT/UDOT), int8 matrix multiply, bf16, SVE.
KNOWN_FEATURES = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2",
)

#: The instructions that give INT8 a dot product of its own, best first. Without any of them
#: an x86 CPU multiplies uint8 by int8 with VPMADDUBSW, which saturates 16-bit pair sums.
INT8_DOT_FEATURES = ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp")

#: Native bfloat16 arithmetic (x86 AMX or AVX-512 BF16, Arm BF16). Without it, bfloat16
#: autocast on a CPU is emulated: a training step ran 17x slower on an AVX2 machine here.
BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    """``name``: the model name; ``machine``: ``x86_64``, ``aarch64``...; ``features``: those
    of :data:`KNOWN_FEATURES` the CPU reports, in that order; ``int8_dot``: the best of
    :data:`INT8_DOT_FEATURES` it has, or None."""

    name: str
    machine: str
    features: tuple[str, ...]
    int8_dot: str | None

    @property
    def native_bf16(self) -> tuple[str, ...]:
        """Those of :data:`BF16_FEATURES` the CPU has (empty: bfloat16 is emulated)."""
        return tuple(f for f in BF16_FEATURES if f in self.features)

    def describe(self) -> str:
        """One line for a report: name, machine, features and the int8 dot product."""
        feats = ", ".join(self.features) if self.features else "no listed features"
        dot = self.int8_dot or "none"
        return f"{self.name} ({self.machine}; {feats}; int8 dot product: {dot})"

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict: name, machine, features (list), int8_dot."""
        return {"name": self.name, "machine": self.machine, "features": list(self.features),
                "int8_dot": self.int8_dot}


def parse_cpuinfo(text: str, machine: str, fallback_name: str = "") -> CpuInfo:
    """The :class:`CpuInfo` of a ``/proc/cpuinfo`` text (first processor's fields: x86
    ``model name`` and ``flags``; Arm ``Features`` and, where there is no model name,
    ``Hardware`` or ``CPU part``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields.get("flags") or fields.get("features"):
                break  # the first processor's block is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    name = (fields.get("model name") or fields.get("hardware")
            or (f"CPU part {fields['cpu part']}" if "cpu part" in fields else "")
            or fallback_name or machine or "unknown CPU")
    have = set((fields.get("flags") or fields.get("features") or "").split())
    features = tuple(f for f in KNOWN_FEATURES if f in have)
    int8_dot = next((f for f in INT8_DOT_FEATURES if f in have), None)
    return CpuInfo(name=name, machine=machine, features=features, int8_dot=int8_dot)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once). Without ``/proc/cpuinfo`` (not Linux):
    the platform's processor name and no features."""
    machine = platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, machine, fallback_name=platform.processor())


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask; all cores where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else the platform's processor)."""
    return cpu_info().name
