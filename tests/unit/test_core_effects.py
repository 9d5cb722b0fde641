"""Every effect a policy can return has exactly one application in the core (`Core.APPLY`):
a new `Effect` type without one fails here, not on the first packet that returns it."""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass

import pytest
from wlbridge.core import Core
from wlbridge.policy import effects, lifecycle


def effect_types() -> set[type]:
    return {cls for _, cls in inspect.getmembers(effects, inspect.isclass)
            if cls.__module__ == effects.__name__}


def test_every_effect_type_is_an_effect_and_has_a_handler():
    types = effect_types()
    assert len(types) >= 16
    assert types == set(typing.get_args(effects.Effect)), "Effect must name every effect type"
    missing = sorted(t.__name__ for t in types - set(Core.APPLY))
    assert missing == [], f"effect types without a handler in Core.APPLY: {missing}"
    assert set(Core.APPLY) <= types
    assert all(callable(handler) for handler in Core.APPLY.values())


def test_an_effect_without_a_handler_is_refused_not_ignored(monkeypatch):
    @dataclass(frozen=True)
    class Unknown:
        pass

    monkeypatch.setattr(lifecycle, "host_addresses", lambda *args: [Unknown()])
    with pytest.raises(TypeError, match="no handler"):
        Core().host_addresses(["10.0.0.2"], 0.0)
