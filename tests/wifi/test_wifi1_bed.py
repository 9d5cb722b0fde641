"""The bed itself, and `wlbridge setup` with its defaults on a real station interface."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import BRIDGE, STATION, STATION_IP

from topologies.wifibed.bed import PEER_IP, PEER_NS, ping, sh


def vsctl(*args: str) -> str:
    return sh("ovs-vsctl", "--timeout=30", *args).strip()


def test_station_associates_and_reaches_the_lan_by_itself(bed):
    assert bed.associated()
    assert bed.plain_ping


def test_doctor_finds_the_station_before_setup(bed):
    """`wlbridge doctor` (--uplink auto) on the real station, before setup: nl80211 says
    wlan1 is a managed-mode station (the AP's radio is in another namespace), associated,
    on mac80211_hwsim (no MAC translation of its own); setup would work."""
    res = subprocess.run([sys.executable, "-m", "wlbridge", "doctor"], capture_output=True,
                         text=True, timeout=120, check=False)
    out = res.stdout
    assert f"ok   uplink: {STATION} is an associated managed-mode station" in out, out
    assert "ok   driver: mac80211_hwsim" in out, out
    assert res.returncode == 0 and out.splitlines()[-1] == "setup would work", out


def test_setup_defaults_pick_the_kernel_datapath(wlbridge):
    assert vsctl("get", "bridge", BRIDGE, "datapath_type") == "system"
    assert "system@ovs-system" in sh("ovs-dpctl", "show")
    assert STATION in vsctl("list-ports", BRIDGE).split()


def test_bridge_port_carries_the_station_mac(bed, wlbridge):
    mac = Path(f"/sys/class/net/{BRIDGE}/address").read_text().strip().lower()
    assert mac == bed.station_mac


def test_host_keeps_its_lan_address_through_the_bridge(bed, wlbridge):
    assert STATION_IP in sh("ip", "-4", "-o", "addr", "show", "dev", BRIDGE)
    assert bed.associated()
    assert ping(PEER_IP, count=2)
    assert ping(STATION_IP, PEER_NS, count=2)
