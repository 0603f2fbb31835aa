"""The TensorRT engine cache and every decision around it, importable without TensorRT.

A serialized TensorRT engine (a *plan*) is only valid for the model, TensorRT version, GPU
and build settings it was made with. Plans are cached in a folder as ``<key>.plan`` with a
``<key>.json`` sidecar, where ``key`` is the sha256 of a canonical JSON of the key fields
(:class:`EngineKey`): the model's sha256, the TensorRT version, the GPU name and compute
capability, the precision and the input shape (min/opt/max batch and C, S, S).

Before a cached plan is used it is checked (:func:`check_plan`): its sidecar must hold the
current key fields, and the plan's size and sha256 must match those the sidecar records.
After TensorRT deserialises it, the engine's inputs and outputs are checked against the
manifest (:func:`check_engine_io`). A stale, foreign or corrupt plan is rebuilt with a
warning, never crashed on (:func:`obtain_engine`). A cache folder that cannot be written
falls back to a per-user temporary folder with a warning; all writes are atomic (a temporary
file renamed into place).

Nothing here imports tensorrt or CUDA: :mod:`edge.trt_runner` does, lazily.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edge import __version__
from edge.atomic_file import write_bytes_atomic
from edge.bundle import BundleError, Manifest
from edge.tiling import TilingSpec, tile_boxes
from edge.trt_qdq import default_precision, int8_source_problem

CACHE_SCHEMA = 1
PRECISIONS = ("fp32", "fp16", "int8")
#: Bundle precisions TensorRT cannot build: ONNX Runtime's CPU INT8 (``edge export quantize``'s
#: CPU variants), whose uint8 activations carry non-zero zero points. TensorRT's explicit
#: quantization takes symmetric int8 Q/DQ only (bundle precision ``int8-qdq-trt``).
CPU_ONLY_PRECISIONS = ("int8",)
DEFAULT_MAX_BATCH = 256
DEFAULT_WORKSPACE_MB = 1024
CACHE_ENV = "EDGE_ENGINE_CACHE"
PRECISION_ENV = "EDGE_TRT_PRECISION"
SUPPORTED_TENSORRT_MAJOR = 10
PLAN_SUFFIX = ".plan"
SIDECAR_SUFFIX = ".json"
LOCK_SUFFIX = ".lock"

#: Logit tolerance ``(atol, rtol)`` per precision for :func:`compare_logits`. Chosen from the
#: usual FP16/INT8 error of small CNNs; not yet checked on a Jetson (see docs/jetson.md).
TOLERANCES: dict[str, tuple[float, float]] = {
    "fp32": (1e-3, 1e-3),
    "fp16": (5e-2, 5e-2),
    "int8": (2.5e-1, 1e-1),
}

T = TypeVar("T")
Warn = Callable[[str], None]


class TensorRTError(BundleError):
    """The TensorRT path cannot serve this bundle here; the message says what to do."""


class StalePlan(Exception):
    """A plan cannot be used (wrong TensorRT, GPU or model, corrupt); it should be rebuilt."""


class EngineCacheWarning(UserWarning):
    """A cache problem that was worked around (rebuilt engine, temporary folder)."""


def warn_default(message: str) -> None:
    """Default ``warn`` callback: a Python warning of category :class:`EngineCacheWarning`."""
    warnings.warn(message, EngineCacheWarning, stacklevel=3)


# --------------------------------------------------------------------------- key fields


@dataclass(frozen=True)
class EngineProfile:
    """The optimization profile of the engine's one input: batch sizes and tile shape."""

    min_batch: int
    opt_batch: int
    max_batch: int
    channels: int
    tile_pixels: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"batch sizes must satisfy 1 <= min <= opt <= max, got "
                f"{self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )
        if self.channels < 1 or self.tile_pixels < 1:
            raise ValueError(f"bad tile shape {self.channels}x{self.tile_pixels}")

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        """Input shape ``(batch, C, S, S)``."""
        return (batch, self.channels, self.tile_pixels, self.tile_pixels)

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(min, opt, max)`` input shapes, as given to ``profile.set_shape``."""
        return self.shape(self.min_batch), self.shape(self.opt_batch), self.shape(self.max_batch)

    def to_json(self) -> dict[str, list[int]]:
        """``{"min": [N, C, S, S], "opt": [...], "max": [...]}``."""
        lo, opt, hi = self.shapes()
        return {"min": list(lo), "opt": list(opt), "max": list(hi)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineProfile:
        """Inverse of :meth:`to_json`; raises ValueError on a malformed or inconsistent dict."""
        try:
            lo, opt, hi = (tuple(int(v) for v in data[k]) for k in ("min", "opt", "max"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"bad input_shape {data!r} ({exc})") from exc
        if not (len(lo) == len(opt) == len(hi) == 4 and lo[1:] == opt[1:] == hi[1:]
                and lo[2] == lo[3]):
            raise ValueError(f"bad input_shape {data!r}: want [N, C, S, S] with equal C, S")
        return cls(lo[0], opt[0], hi[0], lo[1], lo[2])


def tiles_per_reference_frame(tiling: TilingSpec) -> int:
    """Tiles of a square frame at the reference width: the batch a typical frame sends."""
    return len(tile_boxes(tiling.reference_width, tiling.reference_width, tiling)[0])


def default_profile(manifest: Manifest, max_batch: int = DEFAULT_MAX_BATCH) -> EngineProfile:
    """Batch 1 to ``max_batch``, optimised for the tiles of a square frame at the manifest's
    tiling (clamped to ``max_batch``). Larger frames are split into chunks by the runner."""
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    opt = min(max_batch, tiles_per_reference_frame(manifest.tiling))
    return EngineProfile(1, opt, max_batch, manifest.input.channels, manifest.input.tile_pixels)


@dataclass(frozen=True)
class EngineKey:
    """The fields a plan depends on; :attr:`key` is the sha256 of their canonical JSON."""

    model_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: EngineProfile

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                             f"got '{self.precision}'")

    def to_json(self) -> dict[str, Any]:
        """The key fields as a JSON-ready dict (what the sidecar stores)."""
        return {
            "cache_schema": CACHE_SCHEMA,
            "model_sha256": self.model_sha256,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "input_shape": self.profile.to_json(),
        }

    @property
    def key(self) -> str:
        """Hex sha256 of the canonical JSON (sorted keys, no spaces) of :meth:`to_json`."""
        return canonical_sha256(self.to_json())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineKey:
        """Parse the fields of a sidecar; raises ValueError when malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("key fields must be a JSON object")
        if data.get("cache_schema") != CACHE_SCHEMA:
            raise ValueError(f"cache schema {data.get('cache_schema')!r}, "
                             f"this runtime writes {CACHE_SCHEMA}")
        try:
            return cls(
                model_sha256=str(data["model_sha256"]),
                tensorrt_version=str(data["tensorrt_version"]),
                gpu_name=str(data["gpu_name"]),
                compute_capability=str(data["compute_capability"]),
                precision=str(data["precision"]),
                profile=EngineProfile.from_json(data["input_shape"]),
            )
        except KeyError as exc:
            raise ValueError(f"key fields lack {exc}") from exc

    def differences(self, recorded: Mapping[str, Any]) -> list[str]:
        """Human-readable differences between ``recorded`` key fields and these."""
        mine = self.to_json()
        return [f"{name}: cached {recorded.get(name)!r}, now {value!r}"
                for name, value in mine.items() if recorded.get(name) != value] + \
               [f"unexpected field {name!r}" for name in recorded if name not in mine]


def canonical_sha256(data: Any) -> str:
    """sha256 of ``data`` as canonical JSON: sorted keys, ``,``/``:`` separators, UTF-8."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def engine_key(manifest: Manifest, tensorrt_version: str, gpu_name: str,
               compute_capability: str, precision: str, profile: EngineProfile) -> EngineKey:
    """The key fields of an engine for a bundle's manifest on this TensorRT and GPU."""
    return EngineKey(manifest.sha256, str(tensorrt_version), " ".join(str(gpu_name).split()),
                     str(compute_capability), precision, profile)


def check_tensorrt_version(version: str) -> str | None:
    """Why TensorRT ``version`` cannot be used by this code (written for 10.x), or None."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        return f"cannot read the TensorRT version '{version}'"
    if major != SUPPORTED_TENSORRT_MAJOR:
        return (f"TensorRT {version} found, but this runtime is written for TensorRT "
                f"{SUPPORTED_TENSORRT_MAJOR}.x (JetPack 6.1/6.2 ships 10.3); "
                "install TensorRT 10 or use --backend onnxruntime")
    return None


# --------------------------------------------------------------------------- cache folder


def default_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$EDGE_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/mars-edge/engines``, else
    ``~/.cache/mars-edge/engines``."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "mars-edge" / "engines"


def fallback_cache_dir() -> Path:
    """A per-user folder under the system temporary folder (lost at reboot)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"mars-edge-engines-{user}"


def is_writable_dir(path: Path) -> bool:
    """Whether files can be created in ``path`` (made if missing): tried, not guessed."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return False
    return True


@dataclass
class PlanCheck:
    """Result of :func:`check_plan`: ``plan`` holds the bytes when ``reason`` is None."""

    plan: bytes | None
    reason: str | None


def check_plan(plan_path: Path, sidecar_path: Path, key: EngineKey) -> PlanCheck:
    """Check a cached plan before it is deserialised: sidecar present and readable, recording
    exactly ``key``'s fields; plan present with the size and sha256 the sidecar records."""
    if not sidecar_path.is_file():
        return PlanCheck(None, f"no sidecar {sidecar_path.name}")
    try:
        sidecar = json.loads(sidecar_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return PlanCheck(None, f"unreadable sidecar {sidecar_path.name} ({exc})")
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("fields"), dict) \
            or not isinstance(sidecar.get("plan"), dict):
        return PlanCheck(None, f"malformed sidecar {sidecar_path.name}")
    diffs = key.differences(sidecar["fields"])
    if diffs:
        return PlanCheck(None, "built for something else (" + "; ".join(diffs) + ")")
    if sidecar.get("key") != key.key:
        return PlanCheck(None, "the sidecar's key does not match its fields")
    try:
        plan = plan_path.read_bytes()
    except FileNotFoundError:
        return PlanCheck(None, f"plan file {plan_path.name} is missing")
    except OSError as exc:
        return PlanCheck(None, f"plan file {plan_path.name} is unreadable ({exc})")
    recorded_size = sidecar["plan"].get("bytes")
    if len(plan) != recorded_size:
        return PlanCheck(None, f"plan is {len(plan)} bytes, its sidecar records {recorded_size} "
                               "(truncated or replaced)")
    if hashlib.sha256(plan).hexdigest() != sidecar["plan"].get("sha256"):
        return PlanCheck(None, "plan sha256 does not match its sidecar (corrupt or replaced)")
    return PlanCheck(plan, None)


def remove_entry(plan_path: Path) -> bool:
    """Delete a plan and its sidecar if possible; whether neither is left (a read-only folder
    keeps them)."""
    for path in (plan_path, plan_path.with_suffix(SIDECAR_SUFFIX)):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    return not plan_path.exists() and not plan_path.with_suffix(SIDECAR_SUFFIX).exists()


@dataclass
class Lookup:
    """Result of :meth:`EngineCache.lookup`: a usable plan and where it lies, or the reasons
    why the entries found could not be used (none found: no plan and no reasons);
    ``others``: the usable entries of later folders, ``(plan, path)``, preferred first."""

    plan: bytes | None = None
    path: Path | None = None
    problems: list[str] = field(default_factory=list)
    others: list[tuple[bytes, Path]] = field(default_factory=list)

    def usable(self) -> list[tuple[bytes, Path]]:
        """Every entry that passed :func:`check_plan`, ``(plan, path)``, preferred first."""
        return ([(self.plan, self.path)] if self.plan is not None and self.path else []) \
            + self.others


class EngineCache:
    """Plans and sidecars in ``directory``, with a temporary fallback for writing.

    Lookups read both folders (a read-only folder of engines built beforehand still serves);
    writes go to ``directory`` if it can be written, else to ``fallback`` with a warning, else
    nowhere (the engine lives in memory for this run) with a warning.
    """

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        *,
        fallback: str | os.PathLike | None = None,
        probe: Callable[[Path], bool] = is_writable_dir,
        warn: Warn = warn_default,
    ):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()
        self.fallback = Path(fallback) if fallback else fallback_cache_dir()
        self.probe = probe
        self.warn = warn
        self._write_dir: Path | None = None
        self._write_dir_chosen = False

    @property
    def read_dirs(self) -> list[Path]:
        """Folders searched, preferred first."""
        dirs = [self.directory]
        if self.fallback != self.directory:
            dirs.append(self.fallback)
        return dirs

    def write_dir(self) -> Path | None:
        """The folder new files go to, chosen (and warned about) once per cache object."""
        if not self._write_dir_chosen:
            self._write_dir_chosen = True
            if self.probe(self.directory):
                self._write_dir = self.directory
            elif self.probe(self.fallback):
                self._write_dir = self.fallback
                self.warn(f"engine cache folder '{self.directory}' is not writable; using "
                          f"'{self.fallback}' instead (lost at reboot; set ${CACHE_ENV} or "
                          "--cache to a writable folder)")
            else:
                self.warn(f"neither '{self.directory}' nor '{self.fallback}' is writable; the "
                          "engine is kept in memory only and rebuilt on the next run")
        return self._write_dir

    @staticmethod
    def paths(directory: Path, key: str) -> tuple[Path, Path]:
        """``(<key>.plan, <key>.json)`` in ``directory``."""
        return directory / f"{key}{PLAN_SUFFIX}", directory / f"{key}{SIDECAR_SUFFIX}"

    def lookup(self, key: EngineKey) -> Lookup:
        """The first entry for ``key`` that passes :func:`check_plan`, searching
        :attr:`read_dirs` (the later ones that pass too, in ``others``); the reasons for
        entries that fail."""
        found = Lookup()
        for directory in self.read_dirs:
            plan_path, sidecar_path = self.paths(directory, key.key)
            if not plan_path.exists() and not sidecar_path.exists():
                continue
            check = check_plan(plan_path, sidecar_path, key)
            if check.plan is None:
                found.problems.append(f"{plan_path}: {check.reason}")
            elif found.plan is None:
                found.plan, found.path = check.plan, plan_path
            else:
                found.others.append((check.plan, plan_path))
        return found

    @contextlib.contextmanager
    def building(self, key: EngineKey) -> Iterator[None]:
        """Hold ``<key>.lock`` in the write folder (an exclusive ``flock``, waited for) while
        one process builds and stores an engine, so that two processes never interleave a
        plan with another build's sidecar; no lock where nothing can be written."""
        directory = self.write_dir()
        if directory is None:
            yield
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / f"{key.key}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield  # store() will warn if the folder cannot be written either
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def store(self, key: EngineKey, plan: bytes) -> Path | None:
        """Write ``<key>.plan`` then its sidecar, each atomically; None (with a warning) when
        nothing could be written."""
        directory = self.write_dir()
        if directory is None:
            return None
        plan_path, sidecar_path = self.paths(directory, key.key)
        sidecar = {
            "cache_schema": CACHE_SCHEMA,
            "key": key.key,
            "fields": key.to_json(),
            "plan": {"file": plan_path.name, "bytes": len(plan),
                     "sha256": hashlib.sha256(plan).hexdigest()},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
            "written_by": f"mars-edge {__version__}",
        }
        try:
            write_bytes_atomic(plan_path, plan)
            write_bytes_atomic(sidecar_path, (json.dumps(sidecar, indent=2) + "\n").encode())
        except OSError as exc:
            self.warn(f"cannot write the engine to '{directory}' ({exc.strerror or exc}); it is "
                      "kept in memory only and rebuilt on the next run")
            return None
        return plan_path

    def remove(self, plan_path: Path) -> bool:
        """Delete a plan and its sidecar if possible; whether they are gone (a read-only folder
        keeps them)."""
        return remove_entry(plan_path)

    def entries(self) -> list[dict[str, Any]]:
        """Parsed sidecars of every folder (unreadable ones skipped), each with ``"path"``."""
        found = []
        for directory in self.read_dirs:
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob(f"*{SIDECAR_SUFFIX}")):
                try:
                    data = json.loads(path.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    continue
                if isinstance(data, dict) and isinstance(data.get("fields"), dict):
                    found.append(data | {"path": str(path)})
        return found

    # Timing caches (per TensorRT version and GPU, shared by all models).

    def timing_cache_name(self, key: EngineKey) -> str:
        """File name of the timing cache for ``key``'s TensorRT version and GPU."""
        digest = canonical_sha256([key.tensorrt_version, key.gpu_name, key.compute_capability])
        return f"timing-{digest[:16]}.cache"

    def load_timing_cache(self, key: EngineKey) -> bytes | None:
        """The stored timing cache for ``key``'s TensorRT and GPU, if any."""
        for directory in self.read_dirs:
            try:
                return (directory / self.timing_cache_name(key)).read_bytes()
            except OSError:
                continue
        return None

    def store_timing_cache(self, key: EngineKey, data: bytes) -> None:
        """Save a timing cache atomically; failures only cost build time later, so are quiet."""
        directory = self.write_dir()
        if directory is None:
            return
        try:
            write_bytes_atomic(directory / self.timing_cache_name(key), data)
        except OSError:
            pass


def select_cached_key(entries: list[dict[str, Any]], model_sha256: str, tensorrt_version: str,
                      gpu_name: str, compute_capability: str, channels: int, tile_pixels: int,
                      precision: str | None = None) -> EngineKey | None:
    """The key of the most recently built entry for this model on this TensorRT and GPU (and
    ``precision`` if given), whatever its batch profile; None if there is none."""
    best: tuple[str, EngineKey] | None = None
    for entry in entries:
        try:
            key = EngineKey.from_json(entry["fields"])
        except ValueError:
            continue
        if (key.model_sha256, key.tensorrt_version, key.gpu_name, key.compute_capability,
                key.profile.channels, key.profile.tile_pixels) != (
                model_sha256, tensorrt_version, " ".join(gpu_name.split()), compute_capability,
                channels, tile_pixels):
            continue
        if precision is not None and key.precision != precision:
            continue
        created = str(entry.get("created", ""))
        if best is None or created > best[0]:
            best = (created, key)
    return best[1] if best else None


def resolve_key(
    manifest: Manifest,
    model_bytes: bytes,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    entries: list[dict[str, Any]],
    precision: str | None = None,
    max_batch: int | None = None,
    env: Mapping[str, str] | None = None,
) -> EngineKey:
    """The key of the engine to use (a CPU-only INT8 bundle is refused: TensorRTError).

    ``edge export tensorrt`` passes ``precision`` and ``max_batch``: the key is exactly that.
    ``edge classify --backend tensorrt`` passes neither: the most recently built cached engine
    (``entries``, see :meth:`EngineCache.entries`) for this model on this TensorRT and GPU is
    used, restricted to ``$EDGE_TRT_PRECISION`` when set; failing that, one is built with that
    precision (default: int8 for a Q/DQ model, else fp16) and :func:`default_profile`.
    """
    if manifest.precision in CPU_ONLY_PRECISIONS:
        source = (manifest.provenance.get("float_bundle") or {}).get("path")
        raise TensorRTError(
            f"bundle '{manifest.name}' is ONNX Runtime's CPU INT8 variant (uint8 activations "
            "with non-zero zero points), which TensorRT's explicit quantization does not take "
            "(symmetric int8 Q/DQ only). On the GPU, use a bundle written by `edge export "
            "quantize --trt-out` (precision int8-qdq-trt) or the fp32 bundle it was quantized "
            f"from{f' ({source})' if source else ''} with --precision fp16")
    env = os.environ if env is None else env
    chosen = precision is not None
    if precision is None and env.get(PRECISION_ENV):
        precision = env[PRECISION_ENV].strip().lower()
        if precision not in PRECISIONS:
            raise TensorRTError(f"${PRECISION_ENV}='{env[PRECISION_ENV]}' is not one of "
                                f"{', '.join(PRECISIONS)}")
    if precision is not None and precision not in PRECISIONS:
        raise TensorRTError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    # --precision int8 or $EDGE_TRT_PRECISION=int8 for a model without Q/DQ nodes would build
    # an INT8 engine with no scales at all
    problem = int8_source_problem(model_bytes, precision or "")
    if problem:
        raise TensorRTError(f"model of bundle '{manifest.name}': {problem}")
    if max_batch is None and not chosen:
        found = select_cached_key(entries, manifest.sha256, tensorrt_version, gpu_name,
                                  compute_capability, manifest.input.channels,
                                  manifest.input.tile_pixels, precision)
        if found is not None:
            return found
    try:
        profile = default_profile(manifest, DEFAULT_MAX_BATCH if max_batch is None else max_batch)
    except ValueError as exc:
        raise TensorRTError(str(exc)) from None
    return engine_key(manifest, tensorrt_version, gpu_name, compute_capability,
                      precision or default_precision(model_bytes), profile)


# --------------------------------------------------------------------------- obtain


@dataclass
class EngineSource:
    """Where the engine in use came from."""

    key: EngineKey
    path: Path | None
    built: bool


def obtain_engine(
    cache: EngineCache,
    key: EngineKey,
    build: Callable[[], bytes],
    load: Callable[[bytes], T],
    warn: Warn = warn_default,
    rebuild: bool = False,
) -> tuple[T, EngineSource]:
    """A loaded engine for ``key``: from the cache when a plan passes :func:`check_plan` and
    ``load`` accepts it, else built by ``build`` (then stored) and loaded.

    ``load`` raises :class:`StalePlan` for a plan it cannot use (TensorRT cannot deserialise
    it, or its inputs and outputs do not match the manifest): a cached plan is then removed
    (or, in a read-only folder, passed over for the next folder's) and rebuilt with a warning;
    a freshly built one raises :class:`TensorRTError`. Building and storing hold the key's
    lock (:meth:`EngineCache.building`); after waiting for it the cache is read again, since
    another process may have built the engine meanwhile.
    """
    refused: set[Path] = set()

    def from_cache(report: bool) -> tuple[T, EngineSource] | None:
        found = cache.lookup(key)
        for plan, path in found.usable():
            if path in refused:
                continue
            try:
                return load(plan), EngineSource(key, path, built=False)
            except StalePlan as exc:
                refused.add(path)
                if cache.remove(path):
                    warn(f"cached engine {path} cannot be used ({exc}); removed, rebuilding it")
                else:
                    warn(f"cached engine {path} cannot be used ({exc}) and cannot be removed "
                         "(read-only folder); passing over it")
        if report and found.problems:
            warn("cached engine is stale, rebuilding it: " + "; ".join(found.problems))
        return None

    if not rebuild:
        got = from_cache(report=True)
        if got is not None:
            return got
    with cache.building(key):
        if not rebuild:
            got = from_cache(report=False)
            if got is not None:
                return got
        plan = build()
        path = cache.store(key, plan)
    try:
        return load(plan), EngineSource(key, path, built=True)
    except StalePlan as exc:
        if path is not None:
            cache.remove(path)
        raise TensorRTError(f"the engine TensorRT just built does not pass its check ({exc})") \
            from exc


# --------------------------------------------------------------------------- engine checks


@dataclass(frozen=True)
class IOTensor:
    """One input or output of a deserialised engine, as plain Python values."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None


def check_engine_io(io: list[IOTensor], manifest: Manifest, profile: EngineProfile) -> list[str]:
    """Problems with an engine's inputs and outputs against the manifest and profile (empty
    when it fits): one input named ``input_name`` of shape (-1, C, S, S) whose profile is
    ``profile``, one output named ``output_name`` of shape (-1, K) with K the class count."""
    problems = []
    inputs = [t for t in io if t.is_input]
    outputs = [t for t in io if not t.is_input]
    if [t.name for t in inputs] != [manifest.input_name]:
        problems.append(f"inputs {[t.name for t in inputs]}, manifest expects "
                        f"['{manifest.input_name}']")
    if [t.name for t in outputs] != [manifest.output_name]:
        problems.append(f"outputs {[t.name for t in outputs]}, manifest expects "
                        f"['{manifest.output_name}']")
    if problems:
        return problems
    (inp,), (out,) = inputs, outputs
    want_in = (-1, profile.channels, profile.tile_pixels, profile.tile_pixels)
    if tuple(inp.shape) != want_in:
        problems.append(f"input shape {tuple(inp.shape)}, expected {want_in}")
    if inp.profile is not None and tuple(tuple(s) for s in inp.profile) != profile.shapes():
        problems.append(f"input profile {inp.profile}, expected {profile.shapes()}")
    if len(out.shape) != 2 or out.shape[0] != -1 or out.shape[1] != len(manifest.classes):
        problems.append(f"output shape {tuple(out.shape)}, expected (-1, "
                        f"{len(manifest.classes)}) for {len(manifest.classes)} classes")
    return problems


# --------------------------------------------------------------------------- batches, logits


def split_batches(n: int, max_batch: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n)`` in chunks of at most ``max_batch``."""
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    return [(i, min(i + max_batch, n)) for i in range(0, n, max_batch)]


def run_in_chunks(tiles: np.ndarray, max_batch: int,
                  run_chunk: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Logits (N, K) for tiles (N, C, S, S), running at most ``max_batch`` tiles at a time."""
    parts = [run_chunk(tiles[a:b]) for a, b in split_batches(len(tiles), max_batch)]
    if not parts:
        raise ValueError("no tiles to run")
    return np.concatenate(parts, axis=0)


@dataclass(frozen=True)
class LogitComparison:
    """Logits of a backend against reference logits on the same tiles."""

    precision: str
    tiles: int
    max_abs_diff: float
    top1_agreement: float
    atol: float
    rtol: float
    within_tolerance: bool

    def summary(self) -> str:
        """One line for the CLI."""
        return (f"max |onnxruntime - tensorrt| {self.max_abs_diff:.2e} on {self.tiles} tiles, "
                f"top-1 agreement {self.top1_agreement:.1%} ({self.precision} tolerance "
                f"atol {self.atol:g}, rtol {self.rtol:g})")


def compare_logits(reference: np.ndarray, got: np.ndarray, precision: str) -> LogitComparison:
    """Compare logits (N, K) elementwise with ``|got - ref| <= atol + rtol * |ref|``, the
    (atol, rtol) of :data:`TOLERANCES` for ``precision``."""
    if reference.shape != got.shape or reference.ndim != 2:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {got.shape}")
    atol, rtol = TOLERANCES[precision]
    ref = reference.astype(np.float64)
    out = got.astype(np.float64)
    diff = np.abs(out - ref)
    ok = bool(np.all(np.isfinite(out)) and np.all(diff <= atol + rtol * np.abs(ref)))
    agree = float(np.mean(ref.argmax(axis=1) == out.argmax(axis=1))) if len(ref) else 1.0
    return LogitComparison(precision, len(ref), float(diff.max()) if diff.size else 0.0,
                           agree, atol, rtol, ok)
