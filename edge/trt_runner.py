"""TensorRT engine builder and runner, written against the TensorRT 10 Python API.

``tensorrt`` and CUDA's Python bindings (``cuda-python``) are imported lazily, inside the
functions that need them, so this module imports anywhere. Where either is missing,
:class:`TensorRTRunner` raises :class:`TensorRTUnavailable` (a :class:`BundleError`, which
the CLI turns into exit status 1) saying what to install.

Every decision that does not need TensorRT (cache keys, plan checks, fallbacks, chunking,
tolerances) lives in :mod:`edge.trt_cache` and is unit-tested there. This module is the thin
layer that calls TensorRT and CUDA; it has never been run in this repository's workplace,
which has neither TensorRT nor a GPU (see docs/jetson.md, "Verified / not verified").

API used (TensorRT 10): ``trt.Builder``, ``builder.create_network(0)`` (networks are always
explicit-batch in TensorRT 10), ``trt.OnnxParser``, ``builder.create_builder_config()``,
``config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, n)``,
``config.set_flag(trt.BuilderFlag.FP16 / INT8)``, ``builder.create_optimization_profile()``,
``profile.set_shape``, ``config.add_optimization_profile``, ``config.create_timing_cache``,
``config.set_timing_cache``, ``builder.build_serialized_network``,
``trt.Runtime(logger).deserialize_cuda_engine``, ``engine.num_io_tensors``,
``get_tensor_name/get_tensor_mode/get_tensor_shape/get_tensor_dtype/get_tensor_profile_shape``,
``context.set_input_shape``, ``context.set_tensor_address``, ``context.execute_async_v3``.
Device memory and streams: cuda-python's runtime API (``cudaMalloc``, ``cudaMemcpyAsync``,
``cudaStreamCreate``, ``cudaStreamSynchronize``, ``cudaGetDeviceProperties``).
"""

from __future__ import annotations

import os
import time
from types import ModuleType
from typing import Any

import numpy as np

from edge.bundle import Bundle, Manifest
from edge.runners import OnnxRuntimeRunner
from edge.trt_cache import (
    DEFAULT_WORKSPACE_MB,
    EngineCache,
    EngineKey,
    IOTensor,
    LogitComparison,
    StalePlan,
    TensorRTError,
    Warn,
    check_engine_io,
    check_tensorrt_version,
    compare_logits,
    obtain_engine,
    resolve_key,
    run_in_chunks,
    warn_default,
)
from edge.trt_qdq import has_qdq_nodes

INSTALL_TENSORRT = ("install JetPack's python3-libnvinfer (TensorRT 10 Python bindings, "
                    "see docs/jetson.md) or use --backend onnxruntime")
INSTALL_CUDA_PYTHON = ("pip install 'cuda-python>=12,<13' (CUDA 12 bindings, as JetPack 6 "
                       "ships CUDA 12) or use --backend onnxruntime")


class TensorRTUnavailable(TensorRTError):
    """TensorRT or CUDA's Python bindings cannot be imported here."""


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, checked to be TensorRT 10; :class:`TensorRTUnavailable` if it
    cannot be imported, :class:`TensorRTError` for another major version."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: bindings present, libnvinfer.so missing
        raise TensorRTUnavailable(f"TensorRT is not installed: {INSTALL_TENSORRT} "
                                  f"({type(exc).__name__}: {exc})") from None
    problem = check_tensorrt_version(getattr(trt, "__version__", "unknown"))
    if problem:
        raise TensorRTError(problem)
    return trt


def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (cuda-python >= 12.6.1), else
    the older ``cuda.cudart``; :class:`TensorRTUnavailable` if neither imports."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise TensorRTUnavailable(f"cuda-python is not installed: {INSTALL_CUDA_PYTHON} "
                                      f"({exc})") from None
    return cudart


def tensorrt_status(check_gpu: bool = False) -> str | None:
    """Why the TensorRT backend cannot run here (TensorRT or cuda-python missing, or with
    ``check_gpu`` no CUDA GPU visible), or None."""
    try:
        import_tensorrt()
        cudart = import_cudart()
        if check_gpu:
            gpu_identity(cudart)
    except TensorRTError as exc:
        return str(exc)
    return None


def _cuda(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(status, *values)`` result; TensorRTError unless it succeeded."""
    status = result[0]
    if status != cudart.cudaError_t.cudaSuccess:
        raise TensorRTError(f"CUDA {what} failed ({status})")
    values = result[1:]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def gpu_identity(cudart: Any) -> tuple[str, str]:
    """``(name, "major.minor")`` of the current CUDA device."""
    try:
        count = _cuda(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except TensorRTError as exc:
        raise TensorRTError(f"no usable CUDA GPU ({exc}); use --backend onnxruntime") from None
    if not count:
        raise TensorRTError("no CUDA GPU is visible; use --backend onnxruntime")
    device = _cuda(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
    prop = _cuda(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return " ".join(str(name).split()), f"{prop.major}.{prop.minor}"


_LOGGERS: dict[int, Any] = {}


def _logger(trt: ModuleType) -> Any:
    """One ``trt.Logger`` per process (TensorRT expects the same logger to be reused)."""
    if id(trt) not in _LOGGERS:
        _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
    return _LOGGERS[id(trt)]


def build_plan(
    trt: ModuleType,
    model_bytes: bytes,
    manifest: Manifest,
    key: EngineKey,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    timing_cache: bytes | None = None,
    warn: Warn = warn_default,
) -> tuple[bytes, bytes | None]:
    """Build a serialized engine for ``key`` from ONNX bytes: ``(plan, timing cache bytes)``.

    fp32: no precision flag; fp16: ``BuilderFlag.FP16``; int8: ``BuilderFlag.INT8`` (explicit
    quantization from the model's Q/DQ nodes, no calibrator) plus FP16 for the layers left
    in floating point.
    """
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: always explicit batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"TensorRT's ONNX parser rejects the model: {errors or 'no detail'}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if inputs != [manifest.input_name]:
        raise TensorRTError(f"the network's inputs are {inputs}, the manifest names "
                            f"'{manifest.input_name}'")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if key.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if key.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    lo, opt, hi = key.profile.shapes()
    profile.set_shape(manifest.input_name, lo, opt, hi)
    if config.add_optimization_profile(profile) < 0:
        raise TensorRTError(f"TensorRT rejects the optimization profile {lo}/{opt}/{hi}")
    cache = config.create_timing_cache(timing_cache or b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        warn("the stored timing cache does not fit this TensorRT and GPU; building without it")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError(f"TensorRT could not build a {key.precision} engine (its messages "
                            "above say why); try another --precision or a larger --workspace-mb")
    timing = config.get_timing_cache()
    timing_bytes = bytes(memoryview(timing.serialize())) if timing is not None else None
    return bytes(memoryview(serialized)), timing_bytes


def engine_io(trt: ModuleType, engine: Any) -> list[IOTensor]:
    """The inputs and outputs of a deserialised engine as :class:`IOTensor` values."""
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        profile = None
        if is_input:
            profile = tuple(tuple(int(d) for d in s)
                            for s in engine.get_tensor_profile_shape(name, 0))
        io.append(IOTensor(name, is_input, shape, profile))
    return io


class TensorRTRunner:
    """A TensorRT engine for a bundle behind the :class:`edge.runners.Runner` interface.

    The engine comes from the cache (:mod:`edge.trt_cache`) or is built on first use. Device
    buffers for ``max_batch`` tiles are allocated once; larger batches run in chunks.
    """

    name = "tensorrt"

    def __init__(
        self,
        bundle: Bundle,
        precision: str | None = None,
        max_batch: int | None = None,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        cache_dir: str | os.PathLike | None = None,
        rebuild: bool = False,
        warn: Warn = warn_default,
    ):
        self._buffers: list[Any] = []
        self._stream: Any = None
        self.context: Any = None
        self.engine: Any = None
        self.build_seconds: float | None = None
        trt = import_tensorrt()
        cudart = import_cudart()
        self._trt, self._cudart = trt, cudart
        self.manifest = bundle.manifest
        try:
            self._open(bundle, precision, max_batch, workspace_mb, cache_dir, rebuild, warn)
        except TensorRTError:
            self.close()
            raise
        except Exception as exc:  # CUDA, TensorRT or file failures become model errors
            self.close()
            raise TensorRTError(f"TensorRT failed for {bundle.model_path} "
                                f"({type(exc).__name__}: {exc})") from exc

    def _open(self, bundle: Bundle, precision: str | None, max_batch: int | None,
              workspace_mb: int, cache_dir: str | os.PathLike | None, rebuild: bool,
              warn: Warn) -> None:
        trt, m = self._trt, self.manifest
        model_bytes = bundle.model_path.read_bytes()
        gpu_name, capability = gpu_identity(self._cudart)
        cache = EngineCache(cache_dir, warn=warn)
        key = resolve_key(m, model_bytes, trt.__version__, gpu_name, capability,
                          cache.entries(), precision, max_batch)
        if key.precision != "int8" and _has_qdq(model_bytes):
            warn(f"{bundle.model_path} carries Q/DQ (explicitly quantized) nodes but a "
                 f"{key.precision} engine was asked for; use --precision int8 for such a model")
        self._runtime = trt.Runtime(_logger(trt))

        def build() -> bytes:
            t0 = time.perf_counter()
            plan, timing = build_plan(trt, model_bytes, m, key, workspace_mb,
                                      cache.load_timing_cache(key), warn)
            if timing:
                cache.store_timing_cache(key, timing)
            self.build_seconds = time.perf_counter() - t0
            return plan

        def load(plan: bytes) -> Any:
            try:
                engine = self._runtime.deserialize_cuda_engine(plan)
            except Exception as exc:  # the bindings raise several types for a bad plan
                raise StalePlan(f"TensorRT cannot deserialise it ({exc})") from exc
            if engine is None:
                raise StalePlan("TensorRT cannot deserialise it (made by another TensorRT "
                                "version or for another GPU?)")
            problems = check_engine_io(engine_io(trt, engine), m, key.profile)
            if problems:
                raise StalePlan("; ".join(problems))
            return engine

        self.engine, self.source = obtain_engine(cache, key, build, load, warn, rebuild)
        self._setup(key)

    @property
    def key(self) -> EngineKey:
        """Key fields of the engine in use."""
        return self.source.key

    def _setup(self, key: EngineKey) -> None:
        trt, cudart, m = self._trt, self._cudart, self.manifest
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise TensorRTError("TensorRT cannot create an execution context (GPU memory?)")
        self.max_batch = key.profile.max_batch
        self.tile_shape = (m.input.channels, m.input.tile_pixels, m.input.tile_pixels)
        self.n_classes = len(m.classes)
        self._in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(m.input_name)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(m.output_name)))
        self._stream = _cuda(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        in_bytes = self.max_batch * int(np.prod(self.tile_shape)) * self._in_dtype.itemsize
        out_bytes = self.max_batch * self.n_classes * self._out_dtype.itemsize
        self._d_in = _cuda(cudart, cudart.cudaMalloc(in_bytes), "cudaMalloc")
        self._buffers.append(self._d_in)
        self._d_out = _cuda(cudart, cudart.cudaMalloc(out_bytes), "cudaMalloc")
        self._buffers.append(self._d_out)
        self.context.set_tensor_address(m.input_name, int(self._d_in))
        self.context.set_tensor_address(m.output_name, int(self._d_out))

    def run(self, tiles: np.ndarray) -> np.ndarray:
        """Logits float32 (N, K) for tiles float32 (N, C, S, S), N of any size."""
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tuple(tiles.shape[1:]) != self.tile_shape:
            raise ValueError(f"tiles must be (N, {', '.join(map(str, self.tile_shape))}), "
                             f"got {tiles.shape}")
        return run_in_chunks(tiles, self.max_batch, self._run_chunk)

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        cudart, m = self._cudart, self.manifest
        n = len(chunk)
        host_in = np.ascontiguousarray(chunk, dtype=self._in_dtype)
        host_out = np.empty((n, self.n_classes), dtype=self._out_dtype)
        if not self.context.set_input_shape(m.input_name, (n, *self.tile_shape)):
            raise TensorRTError(f"TensorRT rejects input shape {(n, *self.tile_shape)}")
        out_shape = tuple(self.context.get_tensor_shape(m.output_name))
        if out_shape != host_out.shape:
            raise TensorRTError(f"TensorRT output shape {out_shape}, expected {host_out.shape}")
        _cuda(cudart, cudart.cudaMemcpyAsync(
            self._d_in, host_in.ctypes.data, host_in.nbytes,
            cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream), "copy to the GPU")
        if not self.context.execute_async_v3(stream_handle=int(self._stream)):
            raise TensorRTError("TensorRT execute_async_v3 failed")
        _cuda(cudart, cudart.cudaMemcpyAsync(
            host_out.ctypes.data, self._d_out, host_out.nbytes,
            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream), "copy from the GPU")
        _cuda(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return host_out.astype(np.float32, copy=False)

    def close(self) -> None:
        """Free the device buffers and the stream (idempotent)."""
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in self._buffers:
            cudart.cudaFree(ptr)
        self._buffers = []
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.context = None  # the context goes before its engine
        self.engine = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _has_qdq(model_bytes: bytes) -> bool:
    try:
        return has_qdq_nodes(model_bytes)
    except ValueError:
        return False


def verify_against_onnxruntime(bundle: Bundle, runner: TensorRTRunner, n_tiles: int = 64,
                               seed: int = 0) -> LogitComparison:
    """Feed the same random tiles (N, C, S, S) to ONNX Runtime and ``runner``; compare the
    logits within the tolerance of the engine's precision."""
    m = bundle.manifest
    shape = (n_tiles, m.input.channels, m.input.tile_pixels, m.input.tile_pixels)
    tiles = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    reference = OnnxRuntimeRunner(bundle.model_path, m.input_name, m.output_name).run(tiles)
    return compare_logits(reference, runner.run(tiles), runner.key.precision)

