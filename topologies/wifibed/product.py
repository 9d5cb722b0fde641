"""The product as a user runs it on the bed: `wlbridge setup --uplink wlan1` with every
default (bridge br-wl, datapath chosen by setup, controller tcp:127.0.0.1:6653) and
`wlbridge run` (status on 127.0.0.1:9654), through ``python -m wlbridge``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from ..procs import Proc, wait_for
from .bed import STATION

CLI = [sys.executable, "-m", "wlbridge"]
BRIDGE = "br-wl"          # wlbridge's default
STATUS_URL = "http://127.0.0.1:9654/status"   # wlbridge run's default status port


def wlbridge_cli(*args: str, check: bool = True, timeout: float = 120) -> str:
    res = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                         check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"wlbridge {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res.stdout + res.stderr


IPV6_BUDGET = 256   # see `Wlbridge.start`


class Wlbridge:
    """`wlbridge setup --uplink wlan1` with defaults, and `wlbridge run` (defaults but the
    station's IPv6 budget, see `start`)."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.setup_output = ""
        self.proc: Proc | None = None

    def setup(self) -> None:
        self.setup_output = wlbridge_cli("setup", "--uplink", STATION)

    def start(self) -> None:
        # The bed's AP does not police addresses, and its modules leave some 25 guests with
        # IPv6 addresses on the one station: more than the station's default IPv6 budget
        # (`max_ipv6_per_station` 8, what Cisco's WLC tracks, issue 25), which would refuse
        # the later modules' SLAAC guests.  The budget itself is tested where it is set.
        self.proc = Proc("wlbridge", None,
                         CLI + ["-v", "run", "--max-ipv6-per-station", str(IPV6_BUDGET)],
                         self.logs / "wlbridge-run.out")
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
