"""The docs name modules that exist: every ``wlbridge/...py`` path in README.md and docs/*.md.

Modules moved into the layer packages (docs/architecture.md) left old paths behind in the docs
(issue 24: ``wlbridge/ryu_tls.py`` for ``wlbridge/app/ryu_tls.py``).  A path is relative to
``controller/`` (with or without that prefix); an upper-case name is a placeholder
(``controller/wlbridge/MODULE.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATH = re.compile(r"(?<![\w/.-])(?:controller/)?(wlbridge(?:/\w+)*\.py)\b")
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def module_paths(text: str) -> set[str]:
    return {m.group(1) for m in PATH.finditer(text) if not m.group(1).split("/")[-1].isupper()
            and not m.group(1).split("/")[-1][:-3].isupper()}


def test_the_path_pattern_finds_what_docs_write() -> None:
    text = ("see `wlbridge/app/ryu_tls.py` and controller/wlbridge/flows/wanted.py, "
            "not tests/unit/wlbridge_x.py nor controller/wlbridge/MODULE.py")
    assert module_paths(text) == {"wlbridge/app/ryu_tls.py", "wlbridge/flows/wanted.py"}


def test_every_module_path_in_the_docs_exists() -> None:
    missing = [f"{doc.relative_to(ROOT)}: {path}" for doc in DOCS
               for path in sorted(module_paths(doc.read_text()))
               if not (ROOT / "controller" / path).is_file()]
    assert missing == [], "docs name modules that do not exist:\n" + "\n".join(missing)


def test_the_bindings_metric_is_described_with_every_source() -> None:
    """`wlbridge_bindings` counts IPv4 and IPv6 bindings, by every source the model has."""
    from wlbridge.model.state import SOURCES

    text = (ROOT / "docs" / "usage.md").read_text()
    para = text[text.index("`wlbridge_bindings` the"):][:400]
    assert "IPv4 and IPv6" in para
    for source in SOURCES:
        assert f"`{source}`" in para, source


LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_every_relative_link_in_the_docs_resolves() -> None:
    """Links to files (the units and the config moved into the package) point somewhere."""
    broken = [f"{doc.relative_to(ROOT)}: {target}" for doc in DOCS
              for target in LINK.findall(doc.read_text())
              if "://" not in target and not target.startswith("mailto:")
              and not (doc.parent / target).exists()]
    assert broken == [], "broken links:\n" + "\n".join(broken)
