"""The demo: an emulated Wi-Fi LAN; a plain bridge failing on it; wlbridge on it, guests
leased by DHCP, pings.

Everything happens in network namespaces this command creates (prefix ``wldemo``)
and is torn down at the end, also after a failure or Ctrl-C.  Needs root and a
running Open vSwitch; uses the userspace datapath.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from wlbridge.cli.common import require_root
from wlbridge.errors import UserError

PREFIX = "wldemo"
PLAIN_WAIT = 6.0  # seconds a guest tries DHCP through the plain bridge


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _cli(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "wlbridge", *args], capture_output=True,
                         text=True, timeout=60, check=False)
    for line in (res.stdout + res.stderr).strip().splitlines():
        _say(f"     | {line}")
    if res.returncode != 0:
        raise UserError(f"`wlbridge {' '.join(args)}` failed")


def _status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=3) as resp:
        return json.loads(resp.read().decode())


def run(args: argparse.Namespace) -> int:
    require_root("demo")  # network namespaces, Open vSwitch
    try:
        from topologies import OvsBridge, World, basic_lan, cleanup_leftovers, ovs_problem
        from topologies.procs import WaitTimeout, wait_for
    except ImportError as exc:
        raise UserError(f"the demo needs the `topologies` package ({exc})") from exc
    problem = ovs_problem()
    if problem:
        raise UserError(problem)
    n = args.guests
    cleanup_leftovers(PREFIX)
    graph = basic_lan(n_guests=n, prefix=PREFIX, static_guests=False)
    world = World(graph)
    bridge, of_port, status_port = f"{PREFIX}-br", _free_port(), _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="wlbridge-demo-"))
    controller = None
    started = time.monotonic()
    ok = True
    try:
        _say("== 1. An emulated Wi-Fi LAN")
        world.build()
        peer = world.peers[0]
        _say(f"   AP that accepts only the station MAC {world.ap_station_mac} on the station link,")
        _say(f"   router {world.router.ip} with a DHCP server, LAN host {peer.name} {peer.ip},")
        _say(f"   station uplink {world.uplink} ({world.station.ip}), "
             f"{n} guest(s) with no address yet")

        first = world.guests[0]
        _say(f"\n== 2. Before: a plain Open vSwitch bridge (NORMAL) with {world.uplink} and "
             f"{first.port}")
        with OvsBridge(f"{PREFIX}-plain") as plain:
            plain.add_port(world.uplink)
            plain.add_port(first.port)
            plain.normal()
            before = world.ap_counters()["foreign_src"].packets
            lease = first.dhcp("dhclient", broadcast=False, timeout=PLAIN_WAIT)
            first.stop_dhcp()
            dropped = world.ap_counters()["foreign_src"].packets - before
        ok &= lease is None and dropped > 0
        counters = world.ap_counters()
        plain_drops = counters["foreign_src"].packets + counters["foreign_dst"].packets
        _say(f"   {first.name} ({first.mac}) dhclient -> {lease or 'NO LEASE'} "
             f"after {PLAIN_WAIT:.0f}s")
        _say(f"   the AP dropped {dropped} frame(s) whose source MAC was not the station's:")
        _say("   a Wi-Fi AP talks to one MAC per station. wlbridge rewrites the guests' MACs.")

        _say(f"\n== 3. wlbridge setup --uplink {world.uplink} --bridge {bridge}")
        _cli("setup", "--uplink", world.uplink, "--bridge", bridge, "--datapath", "netdev",
             "--controller", f"tcp:127.0.0.1:{of_port}")

        _say(f"\n== 4. wlbridge run (OpenFlow on 127.0.0.1:{of_port})")
        with open(workdir / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "wlbridge", "run", "--bridge", bridge,
                 "--listen-port", str(of_port), "--state-dir", str(workdir / "state"),
                 "--status-port", str(status_port)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: _status(status_port).get("connected"), 20, 0.2,
                     what="the switch to connect", retry=(OSError,))
        except WaitTimeout as exc:
            raise UserError(str(exc)) from exc
        _say("   controller connected to the bridge")

        from wlbridge.host.ovsdb import Ovsdb, PortSpec

        with Ovsdb() as db:
            for g in world.guests:
                db.add_port(bridge, PortSpec(g.port))
        _say(f"   guests attached: {', '.join(g.port for g in world.guests)}")

        _say("\n== 5. Guests ask the LAN's DHCP server (their clients unchanged)")
        for i, g in enumerate(world.guests):
            client = "dhclient" if i % 2 == 0 else "udhcpc"
            ip = g.dhcp(client, broadcast=False, timeout=20)
            ok &= ip is not None
            _say(f"   {g.name} ({g.mac}) {client:<8} -> {ip or 'NO LEASE'}")

        _say("\n== 6. wlbridge status")
        from wlbridge.cli.status_client import render

        snap = _status(status_port)
        snap["bridge"] = bridge
        for line in render(snap).splitlines():
            _say(f"   {line}")

        _say("\n== 7. Pings")
        checks = []
        for g in world.guests:
            checks.append((f"{g.name} -> {peer.name}", g.ping(peer.ip, count=2)))
            checks.append((f"{peer.name} -> {g.name}", peer.ping(g.ip, count=2)))
        if n > 1:
            a, b = world.guests[:2]
            checks.append((f"{a.name} -> {b.name}", a.ping(b.ip, count=2)))
        for what, good in checks:
            ok &= good
            _say(f"   {what:<22} {'OK' if good else 'FAILED'}")
        counters = world.ap_counters()
        foreign = (counters["foreign_src"].packets + counters["foreign_dst"].packets
                   - plain_drops)
        ok &= foreign == 0
        _say(f"   frames the AP dropped for a foreign MAC since wlbridge runs: {foreign}")
        if args.keep:
            input("\n(press Enter to tear everything down) ")
    finally:
        _say("\n== 8. wlbridge teardown")
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(timeout=10)
            except subprocess.TimeoutExpired:
                controller.kill()
        try:
            _cli("teardown", "--bridge", bridge, "--state-dir", str(workdir / "state"),
                 "--remove-state")
        except UserError as exc:
            _say(f"   {exc}")
            ok = False
        world.teardown()
        cleanup_leftovers(PREFIX)
        if not ok:
            _say(f"   controller log: {workdir / 'controller.log'}")
    _say(f"\n{'demo OK' if ok else 'demo FAILED'} in {time.monotonic() - started:.0f}s")
    return 0 if ok else 1
