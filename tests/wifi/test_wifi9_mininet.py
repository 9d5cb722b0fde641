"""Mininet's wifilan topology (docs/mininet.md) on the kernel datapath: the openvswitch module
is loaded in the bed, so the topology's switch defaults to ``datapath=kernel`` and `wlbridge
setup` makes a ``system`` bridge; guests lease through the emulated one-MAC AP and ping.

The emulated LAN (namespaces, nftables AP), not the bed's radios: the bed fixture is here for
its Open vSwitch and kernel module.  Mininet runs under Debian's python3 (the API script of the
integration tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from topologies.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "tests" / "integration" / "mininet_api.py"
CLI = [sys.executable, "-m", "wlbridge"]
SWITCH, PREFIX = "wm9s1", "wm9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mininet_wifilan_on_the_kernel_datapath(bed, tmp_path):
    """Mininet first, then the controller (as a user may do: `wlbridge run` waits only 30 s
    for the bridge, and Mininet is slow to start under emulation); the API script waits for
    the switch to connect before the guests ask for leases."""
    assert Path("/sys/module/openvswitch").is_dir()
    port, log = free_port(), tmp_path / "controller.log"
    api = subprocess.Popen(
        ["/usr/bin/python3", str(API), json.dumps(
            {"switch": SWITCH, "prefix": PREFIX, "port": port, "dhcp_timeout": 60,
             "connect_timeout": 180})],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "WLBRIDGE_CLI": " ".join(CLI)})
    ctl = None
    try:
        assert wait_for(lambda: SWITCH in subprocess.run(
            ["ovs-vsctl", "list-br"], capture_output=True, text=True, check=False).stdout
            or api.poll() is not None, 300), "the bridge never appeared"
        with open(log, "ab") as out:
            ctl = subprocess.Popen(
                [*CLI, "-v", "run", "--bridge", SWITCH, "--listen-port", str(port),
                 "--status-port", str(free_port()), "--state-dir", str(tmp_path / "state")],
                stdout=out, stderr=subprocess.STDOUT)
        output = api.communicate(timeout=900)[0]
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()
        if ctl is not None:
            ctl.send_signal(signal.SIGTERM)
            try:
                ctl.wait(timeout=60)
            except subprocess.TimeoutExpired:
                ctl.kill()
                ctl.wait()
    lines = [ln for ln in output.splitlines() if ln.startswith("{")]
    assert api.returncode == 0 and lines, output + log.read_text(errors="replace")
    got = json.loads(lines[-1])
    print(json.dumps({k: v for k, v in got.items() if k != "flows"}))
    assert got["datapath_type"] == "system"
    assert all(got["leased"].values()), got["leased"]
    assert sorted(map(tuple, got["leases"])) == sorted(
        (mac, got["leased"][g]) for g, mac in got["guest_macs"].items())
    assert got["loss"] == 0
    assert got["ap"]["foreign_src"] == got["ap"]["foreign_dst"] == 0
