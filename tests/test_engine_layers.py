"""The engine package's one-way flow: each module imports only the ones above it in
``numbench/engine/__init__.py``'s list, function-level imports included, and
``parallel`` imports no other engine module."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "numbench" / "engine"
ORDER = ["config", "prepare", "paths", "engine", "parallel", "shipping", "schedule"]


def imported(module: str) -> set[str]:
    """The engine modules ``module`` imports anywhere in its source (also inside
    functions and ``if TYPE_CHECKING`` blocks)."""
    tree = ast.parse((ENGINE / f"{module}.py").read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x import ... / from . import x
                names = [node.module] if node.module else [a.name for a in node.names]
                out |= {n.split(".")[0] for n in names}
            elif node.module and node.module.startswith("numbench.engine."):
                out.add(node.module.split(".")[2])
            elif node.level == 2 and node.module == "engine":
                out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("numbench.engine.")}
    return out & set(ORDER)


def test_every_engine_module_is_in_the_documented_order():
    assert sorted(p.stem for p in ENGINE.glob("*.py") if p.stem != "__init__") == sorted(ORDER)
    listed = (ENGINE / "__init__.py").read_text(encoding="utf-8")
    assert [m for m in ORDER if f"``{m}``" in listed] == ORDER


@pytest.mark.parametrize("module", ORDER)
def test_an_engine_module_imports_only_what_sits_above_it(module):
    above = set(ORDER[: ORDER.index(module)])
    if module == "parallel":  # handed what to run: it knows no engine module
        above = set()
    assert imported(module) <= above, f"{module} imports {sorted(imported(module) - above)}"


def test_the_engine_knows_nothing_of_tasks_files_or_the_protocol():
    banned = {"tasks", "pairs", "programs", "evaluate", "protocol", "results", "submissions",
              "sequences", "models.files", "cli"}
    for path in ENGINE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                assert node.module not in banned, f"{path.name} imports numbench.{node.module}"


def test_the_old_flat_engine_modules_are_gone():
    root = ENGINE.parent
    assert not list(root.glob("das*.py"))
