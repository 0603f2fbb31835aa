"""The TensorRT engine cache's pure logic (edge.trt_cache): keys, plan checks, fallbacks.

None of this needs TensorRT: plans here are arbitrary bytes, and ``build``/``load`` are plain
functions handed to :func:`obtain_engine`. The real TensorRT path is in
test_edge_trt_runner.py and skips where TensorRT is absent.
"""

import dataclasses
import json
import os
import stat

import numpy as np
import pytest
from onnx_graphs import qdq_model_bytes
from tiny_model import tiny_manifest, tiny_model_bytes

from edge.tiling import TilingSpec
from edge.trt_cache import (
    CACHE_ENV,
    PRECISION_ENV,
    EngineCache,
    EngineKey,
    EngineProfile,
    IOTensor,
    StalePlan,
    TensorRTError,
    canonical_sha256,
    check_engine_io,
    check_plan,
    check_tensorrt_version,
    compare_logits,
    default_cache_dir,
    default_profile,
    engine_key,
    is_writable_dir,
    obtain_engine,
    resolve_key,
    run_in_chunks,
    select_cached_key,
    split_batches,
)

PROFILE = EngineProfile(1, 64, 256, 1, 32)


def make_key(**changes):
    base = dict(model_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin",
                compute_capability="8.7", precision="fp16", profile=PROFILE)
    return EngineKey(**(base | changes))


class Recorder:
    """Collects warnings passed to the ``warn`` callbacks."""

    def __init__(self):
        self.messages = []

    def __call__(self, message):
        self.messages.append(message)


def make_cache(tmp_path, writable=(True, True), warn=None):
    """A cache on tmp_path/preferred with tmp_path/fallback; ``writable`` fakes the probe."""
    preferred, fallback = tmp_path / "preferred", tmp_path / "fallback"
    ok = dict(zip((preferred, fallback), writable, strict=True))

    def probe(path):
        return ok[path] and is_writable_dir(path)

    return EngineCache(preferred, fallback=fallback, probe=probe, warn=warn or Recorder())


# --------------------------------------------------------------------------- keys


def test_key_is_sha256_of_canonical_json():
    key = make_key()
    assert len(key.key) == 64 and int(key.key, 16) >= 0
    assert key.key == canonical_sha256(key.to_json())
    shuffled = dict(reversed(list(key.to_json().items())))
    assert canonical_sha256(shuffled) == key.key
    assert make_key().key == key.key


@pytest.mark.parametrize("change", [
    {"model_sha256": "b" * 64},
    {"tensorrt_version": "10.3.1"},
    {"gpu_name": "Orin (nvgpu)"},
    {"compute_capability": "8.6"},
    {"precision": "fp32"},
    {"precision": "int8"},
    {"profile": EngineProfile(2, 64, 256, 1, 32)},
    {"profile": EngineProfile(1, 32, 256, 1, 32)},
    {"profile": EngineProfile(1, 64, 512, 1, 32)},
    {"profile": EngineProfile(1, 64, 256, 3, 32)},
    {"profile": EngineProfile(1, 64, 256, 1, 64)},
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())[:40])
def test_key_changes_when_any_field_changes(change):
    assert make_key(**change).key != make_key().key


def test_key_fields_round_trip_and_hold_the_input_shapes():
    key = make_key()
    data = json.loads(json.dumps(key.to_json()))
    assert data["input_shape"] == {"min": [1, 1, 32, 32], "opt": [64, 1, 32, 32],
                                   "max": [256, 1, 32, 32]}
    assert EngineKey.from_json(data) == key


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(cache_schema=99),
    lambda d: d.pop("gpu_name"),
    lambda d: d.update(input_shape={"min": [1, 1, 32, 32]}),
    lambda d: d.update(input_shape={"min": [1, 1, 32, 32], "opt": [4, 3, 32, 32],
                                    "max": [8, 1, 32, 32]}),
    lambda d: d.update(precision="bf16"),
])
def test_bad_key_fields_are_refused(mutate):
    data = make_key().to_json()
    mutate(data)
    with pytest.raises(ValueError):
        EngineKey.from_json(data)


def test_profile_validation():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        EngineProfile(1, 300, 256, 1, 32)
    with pytest.raises(ValueError):
        EngineProfile(0, 1, 1, 1, 32)
    assert PROFILE.shapes() == ((1, 1, 32, 32), (64, 1, 32, 32), (256, 1, 32, 32))


def test_default_profile_follows_the_tiling():
    assert default_profile(tiny_manifest()) == EngineProfile(1, 64, 256, 1, 32)
    overlapping = tiny_manifest(tiling=TilingSpec(256, 32, 16))  # 15 x 15 tiles per frame
    assert default_profile(overlapping).opt_batch == 225
    assert default_profile(overlapping, max_batch=100) == EngineProfile(1, 100, 100, 1, 32)
    assert default_profile(tiny_manifest(channels=3, tile_pixels=64,
                                         tiling=TilingSpec(256, 64, 64))).shapes()[1] == \
        (16, 3, 64, 64)
    with pytest.raises(ValueError):
        default_profile(tiny_manifest(), max_batch=0)


def test_engine_key_from_manifest_normalises_the_gpu_name():
    m = tiny_manifest()
    m.sha256 = "c" * 64
    key = engine_key(m, "10.3.0", "  NVIDIA   Orin ", "8.7", "fp16", default_profile(m))
    assert key.gpu_name == "NVIDIA Orin"
    assert key.model_sha256 == "c" * 64


def test_tensorrt_version_check():
    assert check_tensorrt_version("10.3.0") is None
    assert check_tensorrt_version("10.15.1.29") is None
    for version in ("8.6.2", "11.0.0", "nonsense"):
        assert "TensorRT" in check_tensorrt_version(version)


# --------------------------------------------------------------------------- cache folder


def test_default_cache_dir_from_the_environment(tmp_path):
    assert default_cache_dir({CACHE_ENV: str(tmp_path / "c")}) == tmp_path / "c"
    assert default_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == \
        tmp_path / "mars-edge" / "engines"
    assert default_cache_dir({}).parts[-3:] == (".cache", "mars-edge", "engines")


def test_writability_probe(tmp_path):
    assert is_writable_dir(tmp_path / "new" / "deep")
    assert (tmp_path / "new" / "deep").is_dir()
    assert list((tmp_path / "new" / "deep").iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    assert not is_writable_dir(tmp_path / "file")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: chmod does not make a folder read-only here")
        assert not is_writable_dir(ro)
    finally:
        ro.chmod(stat.S_IRWXU)


def test_read_only_cache_falls_back_to_a_temporary_folder_with_a_warning(tmp_path):
    preferred, fallback = tmp_path / "preferred", tmp_path / "fallback"
    preferred.mkdir()
    preferred.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if os.access(preferred, os.W_OK):  # root: chmod is ineffective, fake the probe
            def probe(path):
                return path != preferred and is_writable_dir(path)
        else:
            probe = is_writable_dir
        warn = Recorder()
        cache = EngineCache(preferred, fallback=fallback, probe=probe, warn=warn)
        path = cache.store(make_key(), b"plan bytes")
    finally:
        preferred.chmod(stat.S_IRWXU)
    assert path == fallback / f"{make_key().key}.plan"
    assert path.read_bytes() == b"plan bytes"
    assert len(warn.messages) == 1
    assert "not writable" in warn.messages[0] and str(fallback) in warn.messages[0]
    assert list(preferred.iterdir()) == []


def test_nothing_writable_keeps_the_engine_in_memory(tmp_path):
    warn = Recorder()
    cache = make_cache(tmp_path, writable=(False, False), warn=warn)
    assert cache.store(make_key(), b"plan") is None
    assert cache.store(make_key(precision="fp32"), b"plan") is None
    assert len(warn.messages) == 1 and "in memory only" in warn.messages[0]


def test_write_failure_warns_and_leaves_no_partial_files(tmp_path, monkeypatch):
    warn = Recorder()
    cache = make_cache(tmp_path, warn=warn)

    def disk_full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("edge.trt_cache.write_bytes_atomic", disk_full)
    assert cache.store(make_key(), b"plan") is None
    assert "No space left on device" in warn.messages[0]
    assert list((tmp_path / "preferred").iterdir()) == []


def test_store_is_atomic_and_writes_a_sidecar(tmp_path):
    cache = make_cache(tmp_path)
    key = make_key()
    path = cache.store(key, b"\x00plan\xff")
    folder = tmp_path / "preferred"
    assert sorted(p.name for p in folder.iterdir()) == [f"{key.key}.json", f"{key.key}.plan"]
    sidecar = json.loads((folder / f"{key.key}.json").read_text())
    assert sidecar["key"] == key.key
    assert sidecar["fields"] == key.to_json()
    assert sidecar["plan"]["bytes"] == 6 and len(sidecar["plan"]["sha256"]) == 64
    assert check_plan(path, path.with_suffix(".json"), key).plan == b"\x00plan\xff"


# --------------------------------------------------------------------------- plan checks


@pytest.fixture()
def stored(tmp_path):
    cache = make_cache(tmp_path)
    key = make_key()
    path = cache.store(key, b"0123456789" * 10)
    return cache, key, path, path.with_suffix(".json")


def test_valid_plan_passes(stored):
    cache, key, plan, sidecar = stored
    check = check_plan(plan, sidecar, key)
    assert check.reason is None and check.plan == b"0123456789" * 10
    assert cache.lookup(key).plan == check.plan


def test_sidecar_for_another_tensorrt_is_stale(stored):
    _, key, plan, sidecar = stored
    data = json.loads(sidecar.read_text())
    data["fields"]["tensorrt_version"] = "10.0.1"
    sidecar.write_text(json.dumps(data))
    check = check_plan(plan, sidecar, key)
    assert check.plan is None
    assert "tensorrt_version: cached '10.0.1', now '10.3.0'" in check.reason


def test_foreign_plan_under_our_name_is_stale(stored):
    """A plan and sidecar copied from another GPU and renamed to our key."""
    _, key, plan, sidecar = stored
    data = json.loads(sidecar.read_text())
    data["fields"] = make_key(gpu_name="GeForce RTX 4090", compute_capability="8.9").to_json()
    sidecar.write_text(json.dumps(data))
    reason = check_plan(plan, sidecar, key).reason
    assert "gpu_name" in reason and "compute_capability" in reason


def test_sidecar_key_mismatch_is_stale(stored):
    _, key, plan, sidecar = stored
    data = json.loads(sidecar.read_text())
    data["key"] = "f" * 64
    sidecar.write_text(json.dumps(data))
    assert "key does not match" in check_plan(plan, sidecar, key).reason


def test_truncated_plan_is_stale(stored):
    _, key, plan, sidecar = stored
    plan.write_bytes(plan.read_bytes()[:37])
    assert "truncated" in check_plan(plan, sidecar, key).reason


def test_corrupt_plan_of_the_same_size_is_stale(stored):
    _, key, plan, sidecar = stored
    data = bytearray(plan.read_bytes())
    data[50] ^= 0xFF
    plan.write_bytes(bytes(data))
    assert "sha256 does not match" in check_plan(plan, sidecar, key).reason


@pytest.mark.parametrize("damage", ["missing sidecar", "garbage sidecar", "array sidecar",
                                    "missing plan"])
def test_damaged_entries_are_stale(stored, damage):
    _, key, plan, sidecar = stored
    if damage == "missing sidecar":
        sidecar.unlink()
    elif damage == "garbage sidecar":
        sidecar.write_bytes(b"\x89not json")
    elif damage == "array sidecar":
        sidecar.write_text("[1, 2]")
    else:
        plan.unlink()
    check = check_plan(plan, sidecar, key)
    assert check.plan is None and check.reason


def test_lookup_reports_stale_entries_and_prefers_a_valid_one(tmp_path):
    key = make_key()
    cache = make_cache(tmp_path)
    assert cache.lookup(key).plan is None and cache.lookup(key).problems == []
    cache.store(key, b"good plan")
    preferred_plan = tmp_path / "preferred" / f"{key.key}.plan"
    preferred_plan.write_bytes(b"bad")
    assert cache.lookup(key).plan is None
    assert "truncated" in cache.lookup(key).problems[0]
    # A valid entry in the fallback folder serves even when the preferred one is stale.
    fallback = make_cache(tmp_path, writable=(False, True))
    fallback.store(key, b"fallback plan")
    found = fallback.lookup(key)
    assert found.plan == b"fallback plan" and found.path.parent == tmp_path / "fallback"


# --------------------------------------------------------------------------- obtain_engine


class Builder:
    """A ``build`` callable that returns numbered plan bytes and counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return f"plan #{self.calls}".encode()


def loader(bad=()):
    """A ``load`` callable that refuses the plans in ``bad`` as TensorRT would a stale one."""

    def load(plan):
        if plan in bad:
            raise StalePlan("TensorRT cannot deserialise it")
        return ("engine", plan)

    return load


def test_obtain_builds_once_then_uses_the_cache(tmp_path):
    warn, build = Recorder(), Builder()
    cache = make_cache(tmp_path, warn=warn)
    engine, source = obtain_engine(cache, make_key(), build, loader(), warn)
    assert engine == ("engine", b"plan #1") and source.built and source.path.is_file()
    engine, source = obtain_engine(make_cache(tmp_path), make_key(), build, loader(), warn)
    assert engine == ("engine", b"plan #1") and not source.built
    assert build.calls == 1 and warn.messages == []


def test_obtain_rebuilds_a_stale_plan_with_a_warning(tmp_path):
    warn, build = Recorder(), Builder()
    cache = make_cache(tmp_path, warn=warn)
    _, source = obtain_engine(cache, make_key(), build, loader(), warn)
    source.path.write_bytes(b"corrupted")
    engine, source = obtain_engine(cache, make_key(), build, loader(), warn)
    assert engine == ("engine", b"plan #2") and source.built
    assert len(warn.messages) == 1 and "stale" in warn.messages[0]
    assert check_plan(source.path, source.path.with_suffix(".json"), make_key()).reason is None


def test_obtain_rebuilds_a_plan_that_tensorrt_refuses(tmp_path):
    warn, build = Recorder(), Builder()
    cache = make_cache(tmp_path, warn=warn)
    obtain_engine(cache, make_key(), build, loader(), warn)
    engine, source = obtain_engine(cache, make_key(), build, loader(bad={b"plan #1"}), warn)
    assert engine == ("engine", b"plan #2") and source.built
    assert "cannot be used" in warn.messages[0] and "rebuilding" in warn.messages[0]


def test_obtain_refuses_a_fresh_plan_that_fails_its_check(tmp_path):
    warn, build = Recorder(), Builder()
    cache = make_cache(tmp_path, warn=warn)
    with pytest.raises(TensorRTError, match="just built does not pass its check"):
        obtain_engine(cache, make_key(), build, loader(bad={b"plan #1"}), warn)
    assert list((tmp_path / "preferred").glob("*.plan")) == []


def test_obtain_rebuild_flag_skips_the_cache(tmp_path):
    build = Builder()
    cache = make_cache(tmp_path)
    obtain_engine(cache, make_key(), build, loader())
    engine, source = obtain_engine(cache, make_key(), build, loader(), rebuild=True)
    assert engine == ("engine", b"plan #2") and source.built and build.calls == 2


def test_obtain_with_read_only_cache_uses_the_fallback_then_finds_it_quietly(tmp_path):
    warn, build = Recorder(), Builder()
    obtain_engine(make_cache(tmp_path, (False, True), warn), make_key(), build, loader(), warn)
    assert len(warn.messages) == 1 and "not writable" in warn.messages[0]
    _, source = obtain_engine(make_cache(tmp_path, (False, True), warn), make_key(), build,
                              loader(), warn)
    assert not source.built and source.path.parent == tmp_path / "fallback"
    assert len(warn.messages) == 1 and build.calls == 1


def test_a_refused_plan_that_cannot_be_removed_is_passed_over_not_rebuilt_each_run(tmp_path):
    """TensorRT refuses a plan in a read-only folder: the engine is built once into the
    fallback folder, and later runs use that one instead of rebuilding every time."""
    warn, build = Recorder(), Builder()
    obtain_engine(make_cache(tmp_path), make_key(), build, loader(), warn)  # plan #1, preferred
    for _ in range(3):
        cache = make_cache(tmp_path, (False, True), warn)
        cache.remove = lambda path: False  # the read-only folder keeps the refused plan
        engine, source = obtain_engine(cache, make_key(), build, loader(bad={b"plan #1"}), warn)
        assert engine == ("engine", b"plan #2") and source.path.parent == tmp_path / "fallback"
    assert build.calls == 2
    assert sum("cannot be removed (read-only folder); passing over it" in m
               for m in warn.messages) == 3


def test_a_process_waiting_for_another_build_uses_that_engine(tmp_path):
    """Two processes after the same engine: the second waits for the first's lock, then
    finds its plan and builds nothing (and never pairs a plan with the other's sidecar)."""
    import threading
    import time

    holding = threading.Event()

    def other_process():
        other = make_cache(tmp_path)
        with other.building(make_key()):
            holding.set()
            time.sleep(0.3)
            other.store(make_key(), b"plan by the other process")

    thread = threading.Thread(target=other_process)
    thread.start()
    holding.wait(5)
    build = Builder()
    engine, source = obtain_engine(make_cache(tmp_path), make_key(), build, loader())
    thread.join()
    assert engine == ("engine", b"plan by the other process") and not source.built
    assert build.calls == 0


def test_timing_cache_is_per_tensorrt_and_gpu(tmp_path):
    cache = make_cache(tmp_path)
    assert cache.load_timing_cache(make_key()) is None
    cache.store_timing_cache(make_key(), b"timings")
    assert cache.load_timing_cache(make_key(precision="fp32", model_sha256="d" * 64)) == \
        b"timings"
    assert cache.load_timing_cache(make_key(tensorrt_version="10.4.0")) is None
    assert cache.load_timing_cache(make_key(gpu_name="Other")) is None


# --------------------------------------------------------------------------- key selection


def entry(key, created):
    return {"fields": key.to_json(), "created": created}


def test_select_cached_key_picks_the_newest_matching_entry():
    fp16, fp32 = make_key(), make_key(precision="fp32", profile=EngineProfile(1, 8, 8, 1, 32))
    entries = [entry(fp16, "2026-01-01T00:00:00"), entry(fp32, "2026-02-01T00:00:00"),
               entry(make_key(model_sha256="e" * 64), "2026-03-01T00:00:00"),
               entry(make_key(gpu_name="Other"), "2026-03-01T00:00:00"),
               {"fields": {"cache_schema": 0}, "created": "2027"}]
    args = ("a" * 64, "10.3.0", "Orin", "8.7", 1, 32)
    assert select_cached_key(entries, *args) == fp32
    assert select_cached_key(entries, *args, precision="fp16") == fp16
    assert select_cached_key(entries, *args, precision="int8") is None
    assert select_cached_key([], *args) is None


def _manifest_and_model(model_bytes=None):
    model = model_bytes or tiny_model_bytes()
    m = tiny_manifest()
    m.sha256 = "a" * 64
    return m, model


def test_resolve_key_explicit_options_name_the_engine():
    m, model = _manifest_and_model()
    cached = [entry(make_key(precision="fp32"), "2026-01-01")]
    key = resolve_key(m, qdq_model_bytes(), "10.3.0", "Orin", "8.7", cached, precision="int8",
                      max_batch=32, env={})
    assert key.precision == "int8" and key.profile == EngineProfile(1, 32, 32, 1, 32)
    key = resolve_key(m, model, "10.3.0", "Orin", "8.7", cached, precision="fp16", env={})
    assert key == make_key()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_resolve_key_refuses_int8_for_a_model_without_qdq_nodes(how):
    """An INT8 engine of a plain float model would have no scales: refused whether int8
    comes from --precision or from $EDGE_TRT_PRECISION (which the export's own check missed)."""
    m, model = _manifest_and_model()
    option = {"precision": "int8", "env": {}} if how == "option" else {
        "env": {PRECISION_ENV: "int8"}}
    with pytest.raises(TensorRTError, match="no QuantizeLinear/DequantizeLinear nodes"):
        resolve_key(m, model, "10.3.0", "Orin", "8.7", [], **option)


def test_resolve_key_without_options_prefers_the_cached_engine():
    m, model = _manifest_and_model()
    fp32 = make_key(precision="fp32", profile=EngineProfile(1, 64, 512, 1, 32))
    key = resolve_key(m, model, "10.3.0", "Orin", "8.7", [entry(fp32, "2026")], env={})
    assert key == fp32
    key = resolve_key(m, model, "10.3.0", "Orin", "8.7", [entry(fp32, "2026")],
                      env={PRECISION_ENV: "FP16"})
    assert key == make_key()
    assert resolve_key(m, model, "10.3.0", "Orin", "8.7", [], env={}) == make_key()


def test_resolve_key_refuses_a_bad_precision():
    m, model = _manifest_and_model()
    with pytest.raises(TensorRTError, match=PRECISION_ENV):
        resolve_key(m, model, "10.3.0", "Orin", "8.7", [], env={PRECISION_ENV: "bf16"})
    with pytest.raises(TensorRTError, match="precision 'fp8'"):
        resolve_key(m, model, "10.3.0", "Orin", "8.7", [], precision="fp8", env={})
    with pytest.raises(TensorRTError, match="max batch"):
        resolve_key(m, model, "10.3.0", "Orin", "8.7", [], precision="fp16", max_batch=0,
                    env={})


# --------------------------------------------------------------------------- engine IO


def _io(input_name="tiles", output_name="logits", classes=4, profile=PROFILE.shapes(),
        in_shape=(-1, 1, 32, 32)):
    return [IOTensor(input_name, True, in_shape, profile),
            IOTensor(output_name, False, (-1, classes))]


def test_engine_io_that_fits_the_manifest():
    assert check_engine_io(_io(), tiny_manifest(), PROFILE) == []


@pytest.mark.parametrize("io, expect", [
    (_io(input_name="images"), "inputs ['images']"),
    (_io(output_name="probs"), "outputs ['probs']"),
    (_io(classes=5), "output shape (-1, 5)"),
    (_io(in_shape=(-1, 3, 32, 32)), "input shape"),
    (_io(profile=((1, 1, 32, 32), (8, 1, 32, 32), (8, 1, 32, 32))), "input profile"),
    (_io() + [IOTensor("extra", False, (-1, 4))], "outputs ['logits', 'extra']"),
])
def test_engine_io_mismatches_are_named(io, expect):
    problems = check_engine_io(io, tiny_manifest(), PROFILE)
    assert problems and expect in " ".join(problems)


# --------------------------------------------------------------------------- batches, logits


@pytest.mark.parametrize("n, max_batch, sizes", [
    (0, 4, []), (1, 256, [1]), (256, 256, [256]), (257, 256, [256, 1]),
    (600, 256, [256, 256, 88]), (10, 3, [3, 3, 3, 1]),
])
def test_split_batches(n, max_batch, sizes):
    chunks = split_batches(n, max_batch)
    assert [b - a for a, b in chunks] == sizes
    assert all(a == prev_b for (a, _), (_, prev_b) in zip(chunks[1:], chunks, strict=False))


def test_run_in_chunks_keeps_order_and_never_exceeds_max_batch():
    tiles = np.arange(11 * 2 * 2 * 2, dtype=np.float32).reshape(11, 2, 2, 2)
    seen = []

    def run_chunk(chunk):
        seen.append(len(chunk))
        return chunk.reshape(len(chunk), -1)[:, :3] * 2

    out = run_in_chunks(tiles, 4, run_chunk)
    assert seen == [4, 4, 3]
    np.testing.assert_array_equal(out, tiles.reshape(11, -1)[:, :3] * 2)
    with pytest.raises(ValueError):
        run_in_chunks(tiles[:0], 4, run_chunk)
    with pytest.raises(ValueError):
        split_batches(3, 0)


def test_compare_logits_tolerances():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, (64, 4)).astype(np.float32)
    exact = compare_logits(ref, ref.copy(), "fp32")
    assert exact.within_tolerance and exact.max_abs_diff == 0 and exact.top1_agreement == 1
    half = ref.astype(np.float16).astype(np.float32)
    assert compare_logits(ref, half, "fp16").within_tolerance
    assert not compare_logits(ref, half + 0.01, "fp32").within_tolerance
    off = compare_logits(ref, ref + 1.0, "fp16")
    assert not off.within_tolerance and off.max_abs_diff == pytest.approx(1.0)
    nan = ref.copy()
    nan[3, 1] = np.nan
    assert not compare_logits(ref, nan, "fp16").within_tolerance
    assert "top-1 agreement" in exact.summary()
    with pytest.raises(ValueError):
        compare_logits(ref, ref[:, :3], "fp16")


def test_dataclass_fields_are_what_the_sidecar_documents():
    assert [f.name for f in dataclasses.fields(EngineKey)] == [
        "model_sha256", "tensorrt_version", "gpu_name", "compute_capability", "precision",
        "profile"]


def test_resolve_key_refuses_the_cpu_int8_bundle_naming_what_to_use():
    m, model = _manifest_and_model()
    m.precision = "int8"
    m.provenance = {"float_bundle": {"path": "runs/models/bundles/student-fp32"}}
    with pytest.raises(TensorRTError) as info:
        resolve_key(m, model, "10.3.0", "Orin", "8.7", [], env={})
    message = str(info.value)
    assert "zero points" in message and "int8-qdq-trt" in message
    assert "runs/models/bundles/student-fp32" in message and "--precision fp16" in message
    m.precision = "int8-qdq-trt"   # the TensorRT-targeted bundle is taken
    assert resolve_key(m, qdq_model_bytes(), "10.3.0", "Orin", "8.7", [], precision="int8",
                       env={}).precision == "int8"
