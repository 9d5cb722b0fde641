"""A stand-in for pyroute2's netlink messages, shared by the unit tests."""

from __future__ import annotations

from typing import Any


class FakeMsg(dict):
    """Enough of a pyroute2 message: fields by key, NLAs by get_attr."""

    def __init__(self, fields: dict[str, Any], attrs: dict[str, Any]) -> None:
        super().__init__(fields)
        self.attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self.attrs.get(name)
