"""The Wi-Fi suite's fixtures (runs inside the test bed VM only; see topologies.wifibed).

One bed per session (booting and associating is the slow part under software emulation):
``bed`` (radios, AP, LAN, station), ``wlbridge`` (set up with its defaults and running, through
the CLI as a user would), ``guests`` (a static guest, an ISC dhclient guest, a busybox udhcpc
guest without -B, all attached to the bridge).  Test modules run in file-name order and later
ones (rekeys, reassociation, roaming) change the bed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from topologies.procs import Proc, wait_for
from topologies.wifibed.bed import PEER_IP, STATION, STATION_IP, Bed, ping

OUT = Path(os.environ.get("WLBRIDGE_WIFIBED_OUT", "/tmp/wf-wifibed-out"))
CLI = [sys.executable, "-m", "wlbridge"]
BRIDGE = "br-wl"          # wlbridge's default
STATUS_URL = "http://127.0.0.1:9654/status"   # wlbridge run's default status port
#: Rekey intervals the AP runs with for the whole session (the rekey tests count them).
HOSTAPD_REKEYS = {"wpa_group_rekey": "15", "wpa_ptk_rekey": "40"}
STATIC_GUEST_IP = "10.77.0.51"


def wlbridge_cli(*args: str, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                         check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"wlbridge {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res.stdout + res.stderr


class Wlbridge:
    """`wlbridge setup --uplink wlan1` with defaults, and `wlbridge run`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.setup_output = ""
        self.proc: Proc | None = None

    def setup(self) -> None:
        self.setup_output = wlbridge_cli("setup", "--uplink", STATION)

    def start(self) -> None:
        self.proc = Proc("wlbridge", None, CLI + ["-v", "run"], self.logs / "wlbridge-run.out")
        if not wait_for(self.connected, 90, 0.5):
            raise AssertionError(f"wlbridge run never connected:\n{self.proc.output()[-3000:]}")

    def connected(self) -> bool:
        if self.proc is not None and not self.proc.alive:
            raise AssertionError(f"wlbridge run exited:\n{self.proc.output()[-3000:]}")
        try:
            return bool(self.status().get("connected"))
        except OSError:
            return False

    def status(self) -> dict:
        with urllib.request.urlopen(STATUS_URL, timeout=5) as resp:
            return json.loads(resp.read().decode())

    def packet_ins(self) -> int:
        return sum(v for k, v in self.status()["counters"].items() if k.startswith("packet_in."))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=10)
        wlbridge_cli("teardown", check=False)


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


MEASUREMENTS = OUT / "measurements.jsonl"


def record(name: str, **values) -> None:
    """Keep a measured fact (reported by `python -m topologies.wifibed` after the run)."""
    with open(MEASUREMENTS, "a") as f:
        f.write(json.dumps({"name": name, **values}) + "\n")
    print(f"measured {name}: {values}")


def log_since(proc: Proc, mark: int) -> str:
    return proc.output()[mark:]
