"""Hardware profiles: what a target computer is, and how much slower or faster than this host.

EMULATION, NOT CYCLE-ACCURATE. A profile turns service times measured on this host into
the target's by multiplying them with a speed factor per stage:

- ``speed_factor`` (fixed): the same factor for every stage (the ``host`` profile: 1.0);
- otherwise ``factor = host score / target score`` in FP32 GFLOP/s. The host score is
  measured by :mod:`firmware_sim.calibration`; the target's is its documented peak
  (clock x cores x FLOP per cycle). Decode, preprocess and postprocess run on one core:
  ``host 1-thread score / one target core``. Inference runs on ``threads`` target cores
  (``host score at the threads used here / (threads x one core)``), or on the accelerator
  when the profile names one (``host score / accelerator peak``).

Profiles live in ``firmware_sim/profiles.json`` (shipped); a user file given with
``--profiles FILE`` adds profiles or overrides shipped ones of the same name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from firmware_sim.calibration import HostCalibration, host_cpus, measure_host

SHIPPED_FILE = "profiles.json"
SCHEMA_VERSION = 1
DEFAULT_PROFILE = "host"
CPU_STAGES = ("decode", "preprocess", "postprocess")
STAGES = ("decode", "preprocess", "inference", "postprocess")
DISCLAIMER = (
    "Emulation, not cycle-accurate: service times are measured on this host and scaled by "
    "a speed factor derived from a calibration workload and the target's documented peak "
    "FP32 rate. Caches, memory bandwidth, the operating system, other flight software "
    "sharing the processor and the target's own libraries are not modelled. The memory "
    "cap is compared with this process's measured peak resident set size; it is not "
    "enforced."
)


class ProfileError(ValueError):
    """A profiles file is malformed, or a profile is unknown."""


@dataclass(frozen=True)
class ComputeUnit:
    """A processor of the target: ``cores`` x ``clock_ghz`` x ``flop_per_cycle`` (FP32/core)."""

    name: str
    cores: int
    clock_ghz: float
    flop_per_cycle: float
    derivation: str = ""

    @property
    def core_gflops(self) -> float:
        """Peak FP32 GFLOP/s of one core (or of one CUDA core, for a GPU)."""
        return self.clock_ghz * self.flop_per_cycle

    @property
    def peak_gflops(self) -> float:
        """Peak FP32 GFLOP/s of all cores together."""
        return self.cores * self.core_gflops


@dataclass(frozen=True)
class HardwareProfile:
    """One entry of a profiles file (see ``profiles.json``).

    threads: target cores given to inference (None: --threads); memory_cap_mb: RAM
    available (None: no cap); speed_factor: a fixed factor for all stages, or None to
    derive factors from ``cpu`` (and ``accelerator``, which runs the inference stage);
    rough: the derivation rests on assumptions beyond vendor figures; published: the
    documented figures with their sources; origin: the file the profile came from.
    """

    key: str
    title: str
    threads: int | None = None
    memory_cap_mb: float | None = None
    speed_factor: float | None = None
    cpu: ComputeUnit | None = None
    accelerator: ComputeUnit | None = None
    rough: bool = False
    published: list[dict[str, str]] = field(default_factory=list)
    notes: str = ""
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict, with the derived peak rates."""
        data = asdict(self)
        for unit_key in ("cpu", "accelerator"):
            unit = getattr(self, unit_key)
            if unit is not None:
                data[unit_key]["core_gflops"] = round(unit.core_gflops, 4)
                data[unit_key]["peak_gflops"] = round(unit.peak_gflops, 4)
        return data


# --------------------------------------------------------------------------- parsing


def _number(value: Any, where: str, what: str, *, integer: bool = False,
             optional: bool = False) -> float | int | None:
    if value is None and optional:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or value <= 0:
        kind = "a positive whole number" if integer else "a positive number"
        raise ProfileError(f"{where}: '{what}' must be {kind}"
                           f"{' or null' if optional else ''}, got {value!r}")
    return int(value) if integer else float(value)


def _unit(data: Any, where: str) -> ComputeUnit:
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: must be an object with cores, clock_ghz, flop_per_cycle")
    missing = [k for k in ("cores", "clock_ghz", "flop_per_cycle") if k not in data]
    if missing:
        raise ProfileError(f"{where}: lacks {', '.join(missing)}")
    return ComputeUnit(
        name=str(data.get("name", "")),
        cores=_number(data["cores"], where, "cores", integer=True),
        clock_ghz=_number(data["clock_ghz"], where, "clock_ghz"),
        flop_per_cycle=_number(data["flop_per_cycle"], where, "flop_per_cycle"),
        derivation=str(data.get("derivation", "")),
    )


def parse_profile(key: str, data: Any, origin: str) -> HardwareProfile:
    """Validate one profile entry; errors name ``origin`` and the profile."""
    where = f"{origin}: profile '{key}'"
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: must be a JSON object")
    speed = _number(data.get("speed_factor"), where, "speed_factor", optional=True)
    cpu = _unit(data["cpu"], f"{where}: cpu") if data.get("cpu") is not None else None
    accel = (_unit(data["accelerator"], f"{where}: accelerator")
             if data.get("accelerator") is not None else None)
    if speed is None and cpu is None:
        raise ProfileError(f"{where}: give either a fixed 'speed_factor' or a 'cpu' "
                           "(cores, clock_ghz, flop_per_cycle) to derive it from")
    published = data.get("published", [])
    if not isinstance(published, list) or not all(isinstance(p, dict) for p in published):
        raise ProfileError(f"{where}: 'published' must be a list of "
                           '{"figure": ..., "source": ...} objects')
    return HardwareProfile(
        key=key,
        title=str(data.get("title", key)),
        threads=_number(data.get("threads"), where, "threads", integer=True, optional=True),
        memory_cap_mb=_number(data.get("memory_cap_mb"), where, "memory_cap_mb", optional=True),
        speed_factor=speed,
        cpu=cpu,
        accelerator=accel,
        rough=bool(data.get("rough", False)),
        published=[{str(k): str(v) for k, v in p.items()} for p in published],
        notes=str(data.get("notes", "")),
        origin=origin,
    )


def parse_profiles_text(text: str, origin: str) -> dict[str, HardwareProfile]:
    """Parse the JSON text of a profiles file (``{"schema_version": 1, "profiles": {...}}``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{origin}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise ProfileError(f"{origin}: expected a JSON object with a 'profiles' object "
                           "(see firmware_sim/profiles.json)")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ProfileError(f"{origin}: schema_version {version!r} is not supported "
                           f"(this simulator reads version {SCHEMA_VERSION})")
    return {str(k): parse_profile(str(k), v, origin) for k, v in data["profiles"].items()}


def load_profiles(user_file: str | os.PathLike | None = None) -> dict[str, HardwareProfile]:
    """The shipped profiles, then those of ``user_file`` (added, or replacing by name)."""
    shipped = resources.files("firmware_sim").joinpath(SHIPPED_FILE)
    profiles = parse_profiles_text(shipped.read_text(encoding="utf-8"),
                                   f"firmware_sim/{SHIPPED_FILE}")
    if user_file is not None:
        path = Path(user_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise ProfileError(f"profiles file '{path}' cannot be read ({reason})") from None
        profiles.update(parse_profiles_text(text, f"profiles file '{path}'"))
    return profiles


def get_profile(name: str, profiles: dict[str, HardwareProfile]) -> HardwareProfile:
    """The profile called ``name``; an unknown name lists the known ones."""
    if name not in profiles:
        raise ProfileError(f"unknown profile '{name}' (known: {', '.join(sorted(profiles))}); "
                           "add it to a file given with --profiles FILE")
    return profiles[name]


# --------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class Emulation:
    """The factors a replay applies: emulated ms = host ms x ``stage_factors[stage]``.

    host_threads: inference threads used on this host; calibration: host scores (1 thread,
    and ``host_threads`` threads), empty for a fixed factor; derivation: one line per factor.
    """

    profile: HardwareProfile
    stage_factors: dict[str, float]
    host_threads: int
    calibration: dict[str, HostCalibration] = field(default_factory=dict)
    derivation: list[str] = field(default_factory=list)

    @property
    def cpu_factor(self) -> float:
        """Factor of the CPU stages (also applied to frames that fail to decode)."""
        return self.stage_factors["decode"]

    def scale(self, stage_ms: dict[str, float]) -> dict[str, float]:
        """Emulated stage times (ms) from host ones; unknown stages take the CPU factor."""
        return {s: v * self.stage_factors.get(s, self.cpu_factor) for s, v in stage_ms.items()}

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict for the report."""
        return {
            "profile": self.profile.to_json(),
            "stage_factors": {k: round(v, 6) for k, v in self.stage_factors.items()},
            "host_threads": self.host_threads,
            "calibration": {k: c.to_json() for k, c in self.calibration.items()},
            "derivation": list(self.derivation),
            "disclaimer": DISCLAIMER,
        }


def host_threads_for(profile: HardwareProfile, requested: int | None) -> int:
    """Inference threads on this host: ``requested``, else the target's, capped at the host's."""
    if requested is not None:
        return requested
    if profile.threads is None:
        return 1
    return max(1, min(profile.threads, host_cpus()))


def derive_emulation(
    profile: HardwareProfile,
    host_threads: int,
    measure: Callable[[int], HostCalibration] = measure_host,
) -> Emulation:
    """Stage factors for ``profile`` (measuring the host with ``measure(threads)`` if needed)."""
    if profile.speed_factor is not None:
        f = profile.speed_factor
        return Emulation(profile, {s: f for s in STAGES}, host_threads,
                         derivation=[f"fixed speed_factor {f:g} for every stage "
                                     f"(from {profile.origin or 'the profile'})"])
    cpu = profile.cpu
    assert cpu is not None  # parse_profile guarantees a cpu when there is no fixed factor
    one = measure(1)
    many = one if host_threads == 1 else measure(host_threads)
    cpu_factor = one.gflops / cpu.core_gflops
    lines = [f"decode, preprocess, postprocess: host {one.gflops:.2f} GFLOP/s (1 thread, "
             f"measured) / target {cpu.core_gflops:.4g} GFLOP/s (one {cpu.name or 'core'}) "
             f"= {cpu_factor:.4g}"]
    if profile.accelerator is not None:
        acc = profile.accelerator
        inf_factor = many.gflops / acc.peak_gflops
        lines.append(f"inference: host {many.gflops:.2f} GFLOP/s ({_threads(host_threads)}, "
                     f"measured) / target {acc.peak_gflops:.4g} GFLOP/s "
                     f"({acc.name or 'accelerator'} peak) = {inf_factor:.4g}")
    else:
        target_threads = min(profile.threads or 1, cpu.cores)
        target = cpu.core_gflops * target_threads
        inf_factor = many.gflops / target
        lines.append(f"inference: host {many.gflops:.2f} GFLOP/s ({_threads(host_threads)}, "
                     f"measured) / target {target:.4g} GFLOP/s ({_cores(target_threads)}) "
                     f"= {inf_factor:.4g}")
    factors = {s: cpu_factor for s in CPU_STAGES}
    factors["inference"] = inf_factor
    calibration = {"1_thread": one}
    if host_threads != 1:
        calibration[f"{host_threads}_threads"] = many
    return Emulation(profile, {s: factors[s] for s in STAGES}, host_threads,
                     calibration=calibration, derivation=lines)


def profile_table(profiles: dict[str, HardwareProfile]) -> list[str]:
    """Lines of ``edge sim profiles``: name, threads, memory cap, peak rates, title."""
    lines = [f"{'profile':<16}{'threads':>8}{'mem MB':>9}{'CPU GFLOP/s':>13}{'accel GFLOP/s':>15}"
             "  title"]
    for key in sorted(profiles):
        p = profiles[key]
        cpu = f"{p.cpu.peak_gflops:.4g}" if p.cpu else (f"x{p.speed_factor:g}" if p.speed_factor
                                                        else "-")
        acc = f"{p.accelerator.peak_gflops:.4g}" if p.accelerator else "-"
        mem = f"{p.memory_cap_mb:g}" if p.memory_cap_mb else "-"
        threads = str(p.threads) if p.threads else "-"
        rough = " (rough)" if p.rough else ""
        lines.append(f"{key:<16}{threads:>8}{mem:>9}{cpu:>13}{acc:>15}  {p.title}{rough}")
    return lines


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def _cores(n: int) -> str:
    return f"{n} core" if n == 1 else f"{n} cores"
