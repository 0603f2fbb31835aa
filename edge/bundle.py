"""The model bundle contract: a folder holding ``model.onnx`` and ``manifest.json``.

The manifest says what the network is (classes, input, tiling, precision), holds
the sha256 of the model file, and records how it was made. A bundle whose model
does not hash to its manifest is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge.preprocess import InputSpec
from edge.tiling import TilingSpec

SCHEMA_VERSION = 1
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_MODEL = "terrain"


class BundleError(Exception):
    """A model bundle is missing, malformed or does not match its manifest."""


@dataclass
class Manifest:
    """Contents of ``manifest.json`` (schema version 1)."""

    name: str
    classes: list[str]
    input: InputSpec
    tiling: TilingSpec
    precision: str
    sha256: str
    model_file: str = MODEL_FILE
    input_name: str = "tiles"
    output_name: str = "logits"
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict."""
        data = asdict(self)
        data["input"]["mean"] = list(self.input.mean)
        data["input"]["std"] = list(self.input.std)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Manifest:
        """Parse and validate a manifest dict; errors name ``where`` and the bad field."""
        if not isinstance(data, dict):
            raise BundleError(f"{where}: manifest must be a JSON object")
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                f"{where}: manifest schema_version {version!r} is not supported "
                f"(this runtime reads version {SCHEMA_VERSION}); upgrade the toolkit or re-export"
            )
        missing = [k for k in ("name", "classes", "input", "tiling", "precision", "sha256")
                   if k not in data]
        if missing:
            raise BundleError(f"{where}: manifest lacks required field(s): {', '.join(missing)}")
        classes = data["classes"]
        if not isinstance(classes, list) or not classes or not all(
            isinstance(c, str) for c in classes
        ):
            raise BundleError(f"{where}: 'classes' must be a non-empty list of names")
        try:
            inp = data["input"]
            spec = InputSpec(
                tile_pixels=int(inp["tile_pixels"]),
                channels=int(inp["channels"]),
                mean=tuple(float(v) for v in inp["mean"]),
                std=tuple(float(v) for v in inp["std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: bad 'input' section ({exc})") from exc
        try:
            til = data["tiling"]
            tiling = TilingSpec(int(til["reference_width"]), int(til["tile"]), int(til["stride"]),
                                str(til.get("crop", "none")))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: bad 'tiling' section ({exc})") from exc
        for key in ("provenance", "metrics"):
            if not isinstance(data.get(key, {}), dict):
                raise BundleError(f"{where}: '{key}' must be a JSON object")
        return cls(
            name=str(data["name"]),
            classes=list(classes),
            input=spec,
            tiling=tiling,
            precision=str(data["precision"]),
            sha256=str(data["sha256"]),
            model_file=str(data.get("model_file", MODEL_FILE)),
            input_name=str(data.get("input_name", "tiles")),
            output_name=str(data.get("output_name", "logits")),
            provenance=dict(data.get("provenance", {})),
            metrics=dict(data.get("metrics", {})),
        )


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        """Path of the ONNX model file."""
        return self.path / self.manifest.model_file


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_bundle_path(model: str | os.PathLike) -> Path:
    """A bundle folder path, or the name of a bundle shipped under ``edge/models/``."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.exists():
        raise BundleError(
            f"model '{model}' is a file; give the bundle folder that holds "
            f"{MODEL_FILE} and {MANIFEST_FILE}"
        )
    shipped = MODELS_DIR / str(model)
    if "/" not in str(model) and shipped.is_dir():
        return shipped
    available = (
        sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()) if MODELS_DIR.is_dir() else []
    )
    raise BundleError(
        f"model '{model}' is neither a bundle folder nor a shipped model "
        f"(shipped: {', '.join(available) or 'none'}); give the path of a bundle folder "
        f"holding {MODEL_FILE} and {MANIFEST_FILE}"
    )


def load_bundle(model: str | os.PathLike) -> Bundle:
    """Load a bundle folder (or shipped name) and verify its model's sha256."""
    path = resolve_bundle_path(model)
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST_FILE})")
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    manifest = Manifest.from_json(data, str(manifest_path))
    model_path = path / manifest.model_file
    if not model_path.is_file():
        raise BundleError(f"{path}: manifest names model file '{manifest.model_file}', not found")
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise BundleError(
            f"{model_path}: sha256 {actual[:16]}... does not match the manifest's "
            f"{manifest.sha256[:16]}...; the model file was changed or corrupted, "
            "re-export the bundle"
        )
    return Bundle(path=path, manifest=manifest)


def finite_json(value: Any) -> Any:
    """NaN and infinities (e.g. a mean recall with no class of 10 tiles) -> None, recursively
    through dicts, lists and tuples, so that a manifest stays strict JSON for every reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def write_bundle(out_dir: str | os.PathLike, model_bytes: bytes, manifest: Manifest) -> Bundle:
    """Write a bundle atomically: into a temporary sibling folder, then renamed into place.

    The manifest's sha256 is set from ``model_bytes``; non-finite figures in it are written
    as null. An existing bundle at ``out_dir`` is replaced only once the new one is complete.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest.sha256 = hashlib.sha256(model_bytes).hexdigest()
    # mkdir (unlike tempfile.mkdtemp, which makes it 0700) gives the bundle the umask's
    # permissions, so that a runtime under another user can read it.
    tmp = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        (tmp / manifest.model_file).write_bytes(model_bytes)
        text = json.dumps(finite_json(manifest.to_json()), indent=2, allow_nan=False)
        (tmp / MANIFEST_FILE).write_text(text + "\n")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_bundle(out)
