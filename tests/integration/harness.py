"""Running the real product in an emulated Wi-Fi LAN: `wlbridge setup`, `run`, `teardown`.

`Controller` drives the console commands as a user would (through ``python -m
wlbridge.cli.main``), attaches guest ports with ovs-vsctl (test tooling, as libvirt or a
container runtime would), and reads the controller's `/status`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from topologies import World
from topologies.ovs import ofctl, vsctl
from topologies.procs import wait_for

CLI = [sys.executable, "-m", "wlbridge"]


def in_ci() -> bool:
    """tests/conftest.py's rule: under CI an integration test fails, never skips."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def cannot(reason: str) -> None:
    """A component this test needs cannot run here: fail under CI, else skip."""
    (pytest.fail if in_ci() else pytest.skip)(reason)


def need(path: str, what: str) -> None:
    """`path` (from the Debian package `what`) must exist; `make deps` installs it."""
    if not os.path.exists(path):
        cannot(f"{what} ({path}) is not installed (`make deps` installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wlbridge(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                         check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"wlbridge {' '.join(args)} failed ({res.returncode}):\n"
                             f"{res.stdout}\n{res.stderr}")
    return res


class Controller:
    """wlbridge set up on a world's station, with its controller process."""

    def __init__(self, world: World, workdir: Path, *, dhcp_mode: str = "broadcast",
                 extra: tuple[str, ...] = (), bridge: str | None = None,
                 uplink: str | None = None) -> None:
        self.world = world
        self.bridge = bridge or f"{world.prefix}-br"   # another host's: its own (add_station)
        self.uplink = uplink or world.uplink
        self.of_port = free_port()
        self.status_port = free_port()
        self.state_dir = workdir / "state"
        self.log = workdir / "controller.log"
        self.dhcp_mode = dhcp_mode
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.is_set_up = False

    # ------------------------------------------------------------ lifecycle
    def setup(self, *extra: str) -> None:
        """`wlbridge setup` with its default controller target: the bridge listens (root-only
        Unix socket) and the controller connects to it (`wlbridge.app.switch_link`)."""
        wlbridge("setup", "--uplink", self.uplink, "--bridge", self.bridge,
                 "--datapath", "netdev", *extra)
        self.is_set_up = True

    def attach(self, *guests) -> None:
        for g in guests:
            vsctl("--may-exist", "add-port", self.bridge, g.port)

    def detach(self, guest) -> None:
        vsctl("--if-exists", "del-port", self.bridge, guest.port)

    def start(self, wait: bool = True) -> None:
        """Start `wlbridge run`; with `wait`, until the switch is connected."""
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                CLI + ["-v", "run", "--bridge", self.bridge, "--listen-port", str(self.of_port),
                       "--state-dir", str(self.state_dir), "--status-port",
                       str(self.status_port), "--dhcp-mode", self.dhcp_mode, *self.extra],
                stdout=log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: self._connected(), timeout=20, what="the switch to connect")

    def _connected(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"controller exited {self.proc.returncode}:\n{self.logs()}")
        try:
            return bool(self.status().get("connected"))
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        self.stop()
        if self.is_set_up:
            wlbridge("teardown", "--bridge", self.bridge, check=False)
            self.is_set_up = False

    # ------------------------------------------------------------ observation
    def status(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.status_port}/status"
        with urllib.request.urlopen(url, timeout=3) as resp:
            return json.loads(resp.read().decode())

    def counters(self) -> dict[str, int]:
        return self.status()["counters"]

    def packet_ins(self) -> int:
        return sum(v for k, v in self.counters().items() if k.startswith("packet_in."))

    def bound(self, ip: str) -> dict | None:
        for g in self.status()["guests"]:
            for b in g["ips"]:
                if b["ip"] == ip:
                    # (the address's own guest MAC: a port may carry several)
                    return {"mac": g["mac"], **b, "port": g["port"]}
        return None

    def wait_bound(self, ip: str, port: str | None = None, timeout: float = 10) -> dict:
        def check():
            b = self.bound(ip)
            return b if b and (port is None or b["port"] == port) else None
        return wait_for(check, timeout=timeout, what=f"{ip} bound to {port}")

    def flows(self) -> str:
        return ofctl("-O", "OpenFlow13", "dump-flows", self.bridge)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def station_ip(self) -> str:
        return str(self.world.station.addr).split("/")[0]


def ap_foreign(world: World) -> int:
    """Frames the AP dropped for carrying a MAC other than the station's."""
    c = world.ap_counters()
    return c["foreign_src"].packets + c["foreign_dst"].packets
