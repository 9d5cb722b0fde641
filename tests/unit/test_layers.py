"""The import contracts of docs/architecture.md (`.importlinter`, run with import-linter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controller" / "wlbridge"


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter.cli")
    # in a process of its own: import-linter configures logging, which the caplog tests use
    run = ("import sys; from importlinter.cli import lint_imports; "
           "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")
    proc = subprocess.run([sys.executable, "-c", run, str(ROOT / ".importlinter")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_every_module_has_a_layer():
    """A new module must be in a layer package or named in .importlinter (import-linter
    ignores modules that no contract names)."""
    text = (ROOT / ".importlinter").read_text()
    layered = {word.removeprefix("wlbridge.") for word in text.split()
               if word.startswith("wlbridge.")}
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert top | packages <= layered, (
        f"not in any layer of .importlinter: {sorted((top | packages) - layered)}")
    # a package inside a layer package (host.addr_handoff) is the container of a contract
    # of its own, which orders its modules
    inner = {".".join(p.parent.relative_to(PACKAGE).parts)
             for p in PACKAGE.glob("*/*/__init__.py")}
    assert inner <= layered, f"packages without a contract of their own: {sorted(inner - layered)}"
    assert not list(PACKAGE.glob("*/*/*/__init__.py")), "packages are at most two levels deep"


def test_nothing_in_the_package_imports_the_app_module():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert "wlbridge_app" not in names, f"{path.name} imports wlbridge_app"


def test_the_app_module_imports_only_the_app_layers_adapter():
    """`wlbridge_app` (outside the package, so outside the contracts) only declares the app
    class of `wlbridge.app.framework`, which the contracts cover."""
    tree = ast.parse((ROOT / "controller" / "wlbridge_app.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{a.name}" for a in node.names}
    assert imported == {"wlbridge.app.framework"}
    assert [type(n).__name__ for n in tree.body] == ["Expr", "ImportFrom", "ClassDef"]


OPENFLOW_LAYER = {"fastof", "ofmsg", "compat"}


def test_only_the_openflow_layer_builds_framework_messages():
    """Packet-outs, meter-mods, stats requests, flow-mods and their actions are built by
    `ofmsg`/`fastof` (checked there), nowhere else: no call of a framework ``OFP...`` class."""
    builders = []
    for path in PACKAGE.rglob("*.py"):
        if path.stem in OPENFLOW_LAYER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr.startswith("OFP")):
                builders.append(f"{path.name}:{node.lineno} {node.func.attr}")
    assert builders == []
