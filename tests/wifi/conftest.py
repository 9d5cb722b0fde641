"""The Wi-Fi suite's fixtures (runs inside the test bed VM only; see topologies.wifibed).

One bed per session (booting and associating is the slow part under software emulation):
``bed`` (radios, AP, LAN, station), ``wlbridge`` (set up with its defaults and running, through
the CLI as a user would), ``guests`` (a static guest, an ISC dhclient guest, a busybox udhcpc
guest without -B, all attached to the bridge).  Test modules run in the order of their number
(`pytest_collection_modifyitems`) and later ones (rekeys, reassociation, roaming, other AP
configurations) change the bed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from topologies.procs import Proc, wait_for
from topologies.wifibed.bed import PEER_IP, STATION, STATION_IP, Bed, ping
from topologies.wifibed.product import BRIDGE, Wlbridge

__all__ = ["BRIDGE"]

OUT = Path(os.environ.get("WLBRIDGE_WIFIBED_OUT", "/tmp/wf-wifibed-out"))
#: Rekey intervals the AP runs with for the whole session (the rekey tests count them).
HOSTAPD_REKEYS = {"wpa_group_rekey": "15", "wpa_ptk_rekey": "40"}
STATIC_GUEST_IP = "10.77.0.51"


@pytest.fixture(scope="session")
def bed():
    b = Bed(OUT / "logs", hostapd_extra=HOSTAPD_REKEYS)
    try:
        b.start()
        if not b.wait_associated(90):
            raise AssertionError("the station never associated:\n"
                                 + b.procs["wpa_supplicant"].output()[-3000:])
        subprocess.run(["ip", "addr", "add", f"{STATION_IP}/24", "dev", STATION], check=True)
        b.plain_ping = wait_for(lambda: ping(PEER_IP), 30)
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def wlbridge(bed):
    w = Wlbridge(bed.logs)
    try:
        w.setup()
        w.start()
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="session")
def guests(bed, wlbridge):
    static = bed.add_guest("static", BRIDGE)
    static.run("ip", "addr", "add", f"{STATIC_GUEST_IP}/24", "dev", "eth0")
    made = {"static": static,
            "dhclient": bed.add_guest("dhclient", BRIDGE),
            "udhcpc": bed.add_guest("udhcpc", BRIDGE)}
    for client in ("dhclient", "udhcpc"):
        made[client].dhcp(client, timeout=90)
    return made


def module_number(item) -> int:
    """test_wifi<N>_*.py -> N (modules without a number last)."""
    m = re.match(r"test_wifi(\d+)_", item.path.name)
    return int(m.group(1)) if m else 1 << 30


def pytest_collection_modifyitems(items):
    """Modules run in the order of their number (test_wifi10 after test_wifi9, not after
    test_wifi1 as file names sort): later ones change the bed.  Stable: within a module,
    pytest's own order (e.g. grouped by a module-scoped fixture's parameters) is kept."""
    items.sort(key=module_number)


MEASUREMENTS = OUT / "measurements.jsonl"


def record(name: str, **values) -> None:
    """Keep a measured fact (reported by `python -m topologies.wifibed` after the run)."""
    with open(MEASUREMENTS, "a") as f:
        f.write(json.dumps({"name": name, **values}) + "\n")
    print(f"measured {name}: {values}")


def log_since(proc: Proc, mark: int) -> str:
    return proc.output()[mark:]
