"""The project's rules hold for its support code too (docs/architecture.md, "The rule"):
no import cycle among the modules of `topologies/` or of `tests/`, and no module there uses
another module's private names (``from m import _x``, ``m._x``, ``monkeypatch.setattr(m,
"_x", ...)``).  The checks are tried on small sources first: a check that finds nothing in
code that breaks the rule would pass forever."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
#: Where support code imports modules from: the package roots, and the test directories
#: (pytest puts each test file's directory on sys.path: `from harness import ...`).
IMPORT_ROOTS = (ROOT / "controller", ROOT, TESTS, TESTS / "unit", TESTS / "integration",
                TESTS / "wifi")


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


# ---------------------------------------------------------------- module names and imports
def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path, root: Path) -> str:
    name = module_name(path, root)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def is_module(dotted: str, roots: Iterable[Path] = IMPORT_ROOTS) -> bool:
    rel = Path(*dotted.split("."))
    return any((r / rel).with_suffix(".py").is_file() or (r / rel / "__init__.py").is_file()
               for r in roots)


def imported(node: ast.ImportFrom, package: str) -> str:
    """The module an ``from ... import`` statement imports from (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".") if package else []
    base = ".".join(parts[: len(parts) - node.level + 1])
    return ".".join(p for p in (base, node.module) if p)


# ---------------------------------------------------------------- private names
def private_uses(source: str, package: str = "",
                 roots: Iterable[Path] = IMPORT_ROOTS) -> list[str]:
    """Where a module's source uses another module's private names: one "line: what" each."""
    tree = ast.parse(source)
    modules: set[str] = set()       # local names bound to modules by import statements
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            source_module = imported(node, package)
            for a in node.names:
                if private(a.name) and source_module != "__future__":
                    found.append(f"{node.lineno}: from {source_module} import {a.name}")
                if is_module(f"{source_module}.{a.name}", roots):
                    modules.add(a.asname or a.name)

    def rooted_in_module(expr: ast.expr) -> bool:
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        return isinstance(expr, ast.Name) and expr.id in modules

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr) \
                and rooted_in_module(node.value):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("setattr", "delattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)
              and private(node.args[1].value) and rooted_in_module(node.args[0])):
            found.append(f"{node.lineno}: {node.func.attr}({ast.unparse(node.args[0])}, "
                         f"{node.args[1].value!r})")
    return found


# ---------------------------------------------------------------- import cycles
def import_graph(files: dict[str, Path], root_of: dict[str, Path]) -> nx.DiGraph:
    """Module -> the modules (of `files`) it imports: every import statement counts, those
    under TYPE_CHECKING and inside functions included."""
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        package = package_of(path, root_of[name])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                stem = imported(node, package)
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph.add_edge(name, target)
    return graph


def cycles(graph: nx.DiGraph) -> list[list[str]]:
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def support_modules(kind: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """{module name: path} and {module name: its import root} of topologies/ or tests/."""
    if kind == "topologies":
        pairs = [(p, ROOT) for p in (ROOT / "topologies").rglob("*.py")]
    else:   # test modules import each other by bare name, from their own directory
        pairs = [(p, d) for d in (TESTS, TESTS / "unit", TESTS / "integration", TESTS / "wifi")
                 for p in d.glob("*.py")]
    files = {module_name(p, r): p for p, r in pairs}
    return files, {module_name(p, r): r for p, r in pairs}


# ---------------------------------------------------------------- the checks, tried first
def write_package(tmp_path: Path, sources: dict[str, str]) -> dict[str, Path]:
    files = {}
    for name, text in sources.items():
        path = tmp_path / Path(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files[name] = path
    return files


@pytest.mark.parametrize("source", [
    "from topologies.procs import _exists\n",
    "from .procs import _exists\n",
    "from topologies import procs\nprocs._exists(1)\n",
    "import topologies.procs\ntopologies.procs._exists(1)\n",
    "from topologies import world\nworld.World._make_ap\n",
    ("from topologies import procs\ndef t(monkeypatch):\n"
     "    monkeypatch.setattr(procs, '_exists', None)\n"),
])
def test_a_private_name_of_another_module_is_found(source: str) -> None:
    assert private_uses(source, package="topologies") != []


@pytest.mark.parametrize("source", [
    "from __future__ import annotations\n",
    "from topologies import procs\nprocs.wait_for\nprocs.__name__\n",
    "class A:\n    def f(self):\n        return self._x\n",
    "from topologies.procs import Proc\ndef f(p: Proc):\n    return p._private_of_an_instance\n",
])
def test_public_names_and_own_attributes_are_not_flagged(source: str) -> None:
    assert private_uses(source, package="topologies") == []


def test_an_import_cycle_is_found_also_behind_type_checking(tmp_path: Path) -> None:
    files = write_package(tmp_path, {
        "pkg.__init__": "",
        "pkg.host": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                    "    from .world import World\n",
        "pkg.world": "from .host import Host\n",
        "pkg.other": "from . import host\n",
    })
    names = {module_name(p, tmp_path): p for p in files.values()}
    graph = import_graph(names, dict.fromkeys(names, tmp_path))
    assert cycles(graph) == [["pkg.host", "pkg.world"]]
    graph.remove_edge("pkg.host", "pkg.world")
    assert cycles(graph) == []


# ---------------------------------------------------------------- the support code itself
@pytest.mark.parametrize("kind", ["topologies", "tests"])
def test_no_import_cycle_in_support_code(kind: str) -> None:
    files, roots = support_modules(kind)
    assert len(files) > 5
    assert cycles(import_graph(files, roots)) == []


@pytest.mark.parametrize("kind", ["topologies", "tests"])
def test_support_code_uses_no_private_name_of_another_module(kind: str) -> None:
    files, roots = support_modules(kind)
    found = [f"{path.relative_to(ROOT)}:{use}"
             for name, path in sorted(files.items())
             for use in private_uses(path.read_text(), package_of(path, roots[name]))]
    assert found == []
