"""What the core has installed, section by section (see `flows` for what a section is).

A section's flows are a pure function of its arguments (`Section.flows`), so what is
remembered per section is its arguments, a few plain values, not its flows: a binding's six
`FlowSpec`s with their matches and actions would be thirty-odd long-lived objects for the
garbage collector to walk, over and over, while the controller learns (issue 6).  Flows are
recomputed when they are needed again: to diff a changed section, and for `specs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from wlbridge.flows.pipeline import FlowSpec
from wlbridge.flows.wanted import Section


def section_flows(section: Section, args: tuple | None) -> dict[tuple, FlowSpec]:
    """A section's flows by key (table, priority, match); none for args None."""
    if args is None:
        return {}
    return {spec.key: spec for spec in section.flows(args)}


class Sections:
    """The arguments of every installed section."""

    def __init__(self) -> None:
        self._args: dict[Section, tuple] = {}

    def __iter__(self) -> Iterator[Section]:
        return iter(self._args)

    def update(self, section: Section, args: tuple | None,
               build: Callable[[list[FlowSpec], list[FlowSpec]], Any] | None = None) -> Any:
        """A section's new arguments (None: it has no flows now): its flows to add (new or
        changed) and to delete, passed to `build` (which makes the messages), and only
        then recorded: when `build` raises, the section stays as it was recorded (the next
        sync tries again).  Returns what `build` returns (without one: the two lists)."""
        old_args = self._args.get(section)
        if args == old_args:
            return build([], []) if build else ([], [])
        if old_args is None:  # a new section (a new binding): nothing to diff against
            specs = section.flows(args)  # (args is not None here)
            out = build(specs, []) if build else (specs, [])
            if specs:
                self._args[section] = args  # type: ignore[assignment]
            return out
        new = section_flows(section, args)
        old = section_flows(section, old_args)
        adds = [s for k, s in new.items() if old.get(k) != s]
        deletes = [s for k, s in old.items() if k not in new]
        out = build(adds, deletes) if build else (adds, deletes)
        if new:
            self._args[section] = args  # type: ignore[assignment]
        else:
            self._args.pop(section, None)
        return out

    def forget(self, section: Section) -> None:
        """Drop a section whose flows the switch no longer has (no deletes needed)."""
        self._args.pop(section, None)

    def specs(self) -> list[FlowSpec]:
        """Every flow of every section."""
        return [s for section, args in self._args.items()
                for s in section_flows(section, args).values()]
