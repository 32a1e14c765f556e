"""The package's imports flow one way, in the study's order: a module imports from its own layer or earlier ones,
and no modules import each other round in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "src" / "forgetlens"

LAYERS = [
    {"errors", "utils", "artefacts", "progress"},
    {"models"},
    {"tasks"},
    {"targets"},
    {"config"},
    {"analysis"},
    {"circuits"},
    {"training"},
    {"measure"},
    {"pipeline"},
    {"report"},
    {"embedded_build"},
    {"cli_options", "cli", "__main__", "__init__"},
]
"""Layer order; ``embedded_build`` (how the test model is made) is known to the CLI alone.  ``analysis`` (pure
functions of arrays) comes before everything that runs a model: ``measure`` fills its ``PromptMeasurements``."""


def layer_of(module: str) -> int:
    """Layer index of ``forgetlens.X...`` (by its first component below the package)."""
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer of tests/project/test_layers.py; add its package to LAYERS")


def imported_modules(tree: ast.AST) -> set[str]:
    """Every ``forgetlens`` module an AST imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "forgetlens":
            if node.module == "forgetlens":  # from forgetlens import X: X is a subpackage or module
                out |= {f"forgetlens.{a.name}" for a in node.names}
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "forgetlens"}
    return out


def back_edges(package: Path = PACKAGE) -> list[str]:
    """``importer -> imported`` for every import from a later layer."""
    edges = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(("forgetlens",) + path.relative_to(package).with_suffix("").parts)
        for imported in imported_modules(ast.parse(path.read_text(), str(path))):
            if layer_of(imported) > layer_of(module):
                edges.append(f"{module} -> {imported}")
    return edges


def test_no_module_imports_from_a_later_layer():
    assert back_edges() == []


def test_a_back_edge_is_caught(tmp_path):
    fake = tmp_path / "forgetlens"
    (fake / "models").mkdir(parents=True)
    (fake / "models" / "loading.py").write_text("def load():\n    from forgetlens.pipeline.study import run_study\n")
    (fake / "report").mkdir()
    (fake / "report" / "html.py").write_text("from forgetlens.analysis.summary import prior_tasks\n")
    assert back_edges(fake) == ["forgetlens.models.loading -> forgetlens.pipeline.study"]


def import_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Every set of modules that import each other round in a circle (imports inside functions and under
    ``TYPE_CHECKING`` count: each is a module that must know the other), as sorted lists."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        module = ".".join(("forgetlens",) + path.relative_to(package).with_suffix("").parts).removesuffix(".__init__")
        graph[module] = imported_modules(ast.parse(path.read_text(), str(path)))

    def known(name: str) -> str | None:  # ``from forgetlens.x import y``: the module x (or the package above it)
        while name not in graph and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in graph else None

    edges = {m: {k for i in imports if (k := known(i)) not in (None, m)} for m, imports in graph.items()}

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reachable = {m: reach(m) for m in edges}
    cycles = {tuple(sorted(m2 for m2 in reachable[m] if m in reachable[m2])) for m in edges if m in reachable[m]}
    return sorted(list(c) for c in cycles)


def test_no_import_cycle():
    assert import_cycles() == []


def test_an_import_cycle_is_caught(tmp_path):
    fake = tmp_path / "forgetlens"
    (fake / "pipeline").mkdir(parents=True)
    (fake / "pipeline" / "study.py").write_text("from forgetlens.pipeline.schedule import run_task_graph\n")
    (fake / "pipeline" / "schedule.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from forgetlens.pipeline.study import Study\n"
    )
    (fake / "pipeline" / "plan.py").write_text("from forgetlens.pipeline.study import Study\n")
    assert import_cycles(fake) == [["forgetlens.pipeline.schedule", "forgetlens.pipeline.study"]]


def test_only_the_cli_imports_the_embedded_build():
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        if "embedded_build" in path.parts:
            continue
        if any(m.startswith("forgetlens.embedded_build") for m in imported_modules(ast.parse(path.read_text()))):
            importers.add(path.relative_to(PACKAGE).as_posix())
    assert importers <= {"cli.py"}


def test_analysis_imports_no_torch():
    """Every ``forgetlens.analysis`` module imports without torch: a results file can be analysed anywhere."""
    modules = sorted(f"forgetlens.analysis.{p.stem}" for p in (PACKAGE / "analysis").glob("*.py"))
    assert len(modules) > 5
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_torch_check_sees_torch():
    """The check above can fail: a module that imports torch is seen."""
    code = "import sys, forgetlens.models.heads\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
