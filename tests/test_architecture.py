"""The package's layers: every import points down (or sideways within a layer), never up."""

import ast
from pathlib import Path

import pytest

import cryodyna

ROOT = Path(cryodyna.__file__).parent
# lowest first; a package may import its own layer's other members only where listed in SIDEWAYS
LAYERS = [
    {"errors", "chunking", "progress", "distributed", "threads"},
    {"config", "io"},
    {"structure", "imaging"},
    {"physics"},
    {"data"},
    {"runs"},
    {"models"},
    {"assembly"},
    {"train"},
    {"simulate", "analysis"},
    {"pipelines"},
    {"cli", "quicktest", "reference"},
]
LAYER = {name: i for i, layer in enumerate(LAYERS) for name in layer}
SIDEWAYS = {("reference", "cli"), ("cli", "quicktest")}


def imports():
    """(importing top-level unit, imported top-level unit, file) for every cryodyna import."""
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        unit = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cryodyna":
                parts = node.module.split(".")
                targets = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("cryodyna.")]
            else:
                continue
            for target in targets:
                if target != unit and target != "__version__":
                    yield unit, target, rel


def test_every_unit_has_a_layer():
    units = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
    assert units - {"__init__"} == set(LAYER), "add new packages to LAYERS"


@pytest.mark.parametrize("unit", sorted(LAYER))
def test_imports_point_down(unit):
    up = [f"{rel}: {src} -> {dst}" for src, dst, rel in imports() if src == unit
          and (LAYER[dst] > LAYER[src] or (LAYER[dst] == LAYER[src] and (src, dst) not in SIDEWAYS))]
    assert not up, "imports against the layering:\n" + "\n".join(up)
