"""Every setting of the core is a `wlbridge run` option, passed through by the app."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from wlbridge.app import config
from wlbridge.app.framework import core_config
from wlbridge.core import CoreConfig


def _option_names() -> set[str]:
    return {opt.dest for opt in config.options()}


def test_every_core_setting_is_an_option() -> None:
    missing = {f.name for f in dataclasses.fields(CoreConfig)} - _option_names() - {"uplink"}
    assert not missing, f"CoreConfig fields without a `wlbridge run` option: {sorted(missing)}"


def test_the_app_passes_every_option_to_the_core() -> None:
    values = {f.name: f"value-of-{f.name}" for f in dataclasses.fields(CoreConfig)}
    values["static_macs"] = ["g1=02:00:00:00:00:01"]
    made = core_config(SimpleNamespace(**values), "wlan9")
    for f in dataclasses.fields(CoreConfig):
        if f.name == "uplink":
            assert made.uplink == "wlan9"
        elif f.name == "static_macs":
            assert made.static_macs == config.static_macs(values["static_macs"])
        else:
            assert getattr(made, f.name) == values[f.name], f.name
