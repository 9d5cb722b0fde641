"""`wlbridge doctor` on a real host: the emulated LAN's uplink is a veth, not a Wi-Fi station.

The real command against the real Open vSwitch and a real interface: Open vSwitch is found
running, the uplink is refused as not a Wi-Fi station (FAIL, with its fix), every line is one
finding, exit status 2.  The other findings are checked from injected facts in
tests/unit/test_doctor.py.
"""

from __future__ import annotations

import pytest
from harness import wlbridge

pytestmark = pytest.mark.integration


def test_a_wired_uplink_is_not_a_wifi_station(lan) -> None:
    res = wlbridge("doctor", "--uplink", lan.uplink, "--bridge", f"{lan.uplink}-br",
                   check=False)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[-1].startswith("setup would not work")
    fails = [line for line in lines if line.startswith("FAIL")]
    # the uplink's finding; the host's address manager is the host's business (another suite
    # beside this one may run a NetworkManager): its findings are tested in test_doctor.py
    assert (f"FAIL uplink: {lan.uplink} is not a Wi-Fi station (no /sys/class/net/"
            f"{lan.uplink}/wireless): wlbridge is for a Wi-Fi uplink; a wired one bridges with "
            "a plain bridge -- fix: name the Wi-Fi station with --uplink, or --uplink auto"
            ) in fails
    assert any(line.startswith("ok   openvswitch: Open vSwitch ") for line in lines)
    assert any(line.split()[1] == "address:" for line in lines[:-1])
    assert all(line.split()[0] in ("ok", "warn", "FAIL") for line in lines[:-1])


def test_a_missing_uplink_fails(wl_prefix) -> None:
    res = wlbridge("doctor", "--uplink", f"{wl_prefix}-nope", check=False)
    assert res.returncode == 2
    assert f"FAIL uplink: {wl_prefix}-nope does not exist" in res.stdout
