"""firmware_sim may import edge, never torch, train or export (DESIGN.md), and needs only the
runtime dependencies: matplotlib is not one, and LoadGen is imported lazily."""

import ast
from pathlib import Path

import pytest

import firmware_sim

SIM_DIR = Path(firmware_sim.__file__).parent
SOURCES = sorted(SIM_DIR.rglob("*.py"))
FORBIDDEN = {"torch", "torchvision", "onnx", "train", "export", "matplotlib"}
LAZY = {"mlperf_loadgen"}


def imports(tree: ast.AST, top_level_only: bool) -> set[str]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_sources_found():
    assert {"replay.py", "capture_queue.py", "profiles.py", "loadgen.py"} <= {
        p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_forbidden_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert not imports(tree, top_level_only=False) & FORBIDDEN
    assert not imports(tree, top_level_only=True) & LAZY, f"{path.name}: import LoadGen lazily"


def test_profiles_file_is_package_data():
    pyproject = (SIM_DIR.parent / "pyproject.toml").read_text()
    assert 'firmware_sim = ["profiles.json"]' in pyproject
    assert (SIM_DIR / "profiles.json").is_file()
