"""The os-ken release wlbridge is pinned to is the one installed, and the framework internals
that the fast paths (`fastof`, `fastaddr`) and `compat` rely on are there (issue 14).

A new os-ken release must be taken on purpose: bump the pin in setup.cfg, and this test and
tests/unit/test_fast_paths.py say whether the fast paths still hold."""

from __future__ import annotations

import configparser
import importlib
import re
from importlib import metadata
from pathlib import Path

import pytest
from wlbridge import compat

SETUP_CFG = Path(__file__).resolve().parents[2] / "setup.cfg"


def pinned_os_ken() -> str:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    for line in cfg["options"]["install_requires"].splitlines():
        m = re.match(r"\s*os-ken\s*==\s*([\w.]+)\s*;", line)
        if m:
            return m.group(1)
    raise AssertionError("setup.cfg does not pin os-ken with ==")


@pytest.mark.skipif(compat.FRAMEWORK != "os_ken", reason="Ryu 4.34 is pinned by .ci/ryu-venv.sh")
def test_installed_os_ken_is_the_pinned_release():
    assert metadata.version("os-ken") == pinned_os_ken()


def test_framework_internals_the_fast_paths_use_are_there():
    from wlbridge.compat import ofp, parser

    match = parser.OFPMatch(in_port=1, eth_type=0x0800)
    assert match._fields2 == [("in_port", 1), ("eth_type", 0x0800)]  # fastof packs these
    for name in ("oxm_from_user", "oxm_serialize", "oxm_get_field_info_by_name"):
        assert callable(getattr(ofp, name)), name
    addrconv = importlib.import_module(f"{compat.FRAMEWORK}.lib.addrconv")  # fastaddr's base
    for conv in (addrconv.mac, addrconv.ipv4):
        assert callable(conv.bin_to_text) and callable(conv.text_to_bin)
