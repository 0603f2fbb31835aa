"""edge/ is what flies: it never imports torch, onnx (the training/export toolchain), nor the
packages above it (train, export, firmware_sim)."""

import ast
from pathlib import Path

import pytest

import edge

EDGE_DIR = Path(edge.__file__).parent
FORBIDDEN = {"torch", "torchvision", "onnx", "train", "export", "firmware_sim", "toolkit_cli"}
SOURCES = sorted(EDGE_DIR.rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of every module a syntax tree imports (also inside functions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__")):
            names.add(node.args[0].value)
    return {n.split(".")[0] for n in names}


def test_sources_found():
    assert {"tiling.py", "preprocess.py", "classify.py", "commands.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(EDGE_DIR)))
def test_no_forbidden_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = imported_modules(tree) & FORBIDDEN
    assert not bad, f"{path} imports {sorted(bad)}"


def test_checker_sees_imports():
    code = "import torch.nn\nfrom export import x\ndef f():\n    import importlib\n" \
           "    importlib.import_module('train.loss')\nimport onnxruntime\n"
    assert imported_modules(ast.parse(code)) == {"torch", "export", "importlib", "train",
                                                 "onnxruntime"}
