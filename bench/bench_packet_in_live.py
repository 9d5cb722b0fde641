#!/usr/bin/env python3
"""Packet-ins per second the running controller sustains (issue 6): `wlbridge run` as a
user runs it, fed by a stand-in switch over its OpenFlow socket.  Root (Open vSwitch).

    sudo .venv/bin/python bench/bench_packet_in_live.py [--guests 1000] [--ips 4]
                    [--window 64] [--repeat 5] [--tree LABEL=PATH ...]

The rig of bench_start/bench_connect: an emulated LAN and `wlbridge setup` make the bridge
the controller needs in OVSDB (it reads the bridge's record before it starts), but the
bridge's controller target is a port nobody listens on, so ovs-vswitchd never connects and
the stand-in switch is the controller's only switch.

The stand-in switch (this process) connects to the controller like ovs-vswitchd, reports
a bridge with ``--guests`` guest ports (their MACs configured with ``static_macs``), then
sends ``guests × ips`` OFPT_PACKET_IN messages, each a gratuitous ARP announcing a *new*
address of a guest: the controller binds it and answers with six flow-mods and a
packet-out.  At most ``--window`` packet-ins are unanswered at any time (OVS, too, keeps
sending while the controller works); the rate is packet-ins answered per second of wall
clock, from the first packet-in to the last packet-out, and the controller's CPU time
(from /proc) per packet-in is printed alongside.  Each run uses a fresh controller, and
starts once the controller has finished starting up (its CPU time stands still).  The
target is judged on the median run (the best is printed too).
The controller's /status must show every address bound, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_connect import tree_env
from common import Bench, QuietController
from resilience_fixtures import FIRST_GUEST, STATION, arp_frame, guest_ip, guest_mac

TARGET = 5000.0
OFP_VERSION = 4
T_HELLO, T_ERROR, T_ECHO_REQ, T_ECHO_REP = 0, 1, 2, 3
T_FEATURES_REQ, T_FEATURES_REP, T_PACKET_IN, T_PACKET_OUT = 5, 6, 10, 13
T_MP_REQ, T_MP_REP, T_BARRIER_REQ, T_BARRIER_REP = 18, 19, 20, 21
MP_PORT_DESC = 13
OFPP_LOCAL = 0xFFFFFFFE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header(msg_type: int, body: bytes, xid: int) -> bytes:
    return struct.pack("!BBHI", OFP_VERSION, msg_type, 8 + len(body), xid) + body


def port_desc(port_no: int, name: str, mac: str) -> bytes:
    """One ofp_port (64 bytes), up, 10 Gbit/s."""
    return struct.pack("!I4x6s2x16sIIIIIIII", port_no, bytes.fromhex(mac.replace(":", "")),
                       name.encode(), 0, 4, 0, 0, 0, 0, 10_000_000, 10_000_000)


def packet_in(port: int, data: bytes, xid: int) -> bytes:
    match = struct.pack("!HHIII", 1, 12, 0x80000004, port, 0)  # OXM in_port, padded
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(data), 1, 20, 0) + match + b"\0\0" + data
    return header(T_PACKET_IN, body, xid)


class StandInSwitch:
    """Just enough of an OpenFlow 1.3 switch: handshake, port list, empty replies to other
    multipart requests, echo and barrier replies; counts the controller's messages."""

    def __init__(self, port: int, n_guests: int, bridge: str, uplink: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.counts: dict[int, int] = {}
        ports = [port_desc(OFPP_LOCAL, bridge, STATION), port_desc(1, uplink, STATION)]
        ports += [port_desc(FIRST_GUEST + i, f"vm{i}", "fe:00:00:00:00:01")
                  for i in range(n_guests)]
        self.ports = b"".join(ports)
        self.sock.sendall(header(T_HELLO, b"", 1))

    def pump(self) -> None:
        """Read what has arrived (blocking for the first bytes) and answer it."""
        self.buf += self.sock.recv(1 << 20)
        while len(self.buf) >= 8:
            _v, msg_type, length, xid = struct.unpack_from("!BBHI", self.buf)
            if len(self.buf) < length:
                break
            body = bytes(self.buf[8:length])
            del self.buf[:length]
            self.counts[msg_type] = self.counts.get(msg_type, 0) + 1
            self.answer(msg_type, xid, body)

    def answer(self, msg_type: int, xid: int, body: bytes) -> None:
        if msg_type == T_FEATURES_REQ:
            self.sock.sendall(header(T_FEATURES_REP, struct.pack("!QIBB2xII", 0xBE, 0, 254, 0,
                                                                 0, 0), xid))
        elif msg_type == T_ECHO_REQ:
            self.sock.sendall(header(T_ECHO_REP, body, xid))
        elif msg_type == T_BARRIER_REQ:
            self.sock.sendall(header(T_BARRIER_REP, b"", xid))
        elif msg_type == T_MP_REQ:
            (mp_type,) = struct.unpack_from("!H", body)
            payload = self.ports if mp_type == MP_PORT_DESC else b""
            self.sock.sendall(header(T_MP_REP, struct.pack("!HH4x", mp_type, 0) + payload, xid))

    def wait_for(self, msg_type: int, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.counts.get(msg_type, 0) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited for {count} messages of type {msg_type}; "
                                   f"got {self.counts}")
            self.pump()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, switch: StandInSwitch, quiet: float = 0.3, timeout: float = 20.0) -> None:
    """Wait until the controller is done starting up (its CPU time stands still for `quiet`
    seconds; meanwhile the switch answers it): a sustained rate excludes start-up work,
    such as the first OVSDB attempt of the guest-port isolation thread."""
    deadline = time.monotonic() + timeout
    switch.sock.settimeout(0.05)
    last, still_since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        try:
            switch.pump()
        except TimeoutError:
            pass
        now = cpu_seconds(pid)
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
        return json.load(r)


def one_run(n_guests: int, ips: int, window: int, workdir: Path, bridge: str, uplink: str,
            of_port: int, env: dict | None) -> dict:
    status_port = free_port()
    conf = workdir / "wlbridge.ini"
    macs = ",".join(f"vm{i}={guest_mac(i)}" for i in range(n_guests))
    conf.write_text(f"[wlbridge]\nstatic_macs = {macs}\nmeters = false\n"
                    f"max_bindings = 65536\n")
    state = workdir / f"state-{status_port}"
    log = open(workdir / "controller.log", "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "wlbridge", "run", "--config-file", str(conf), "--bridge", bridge,
         "--uplink", uplink, "--listen-port", str(of_port), "--state-dir", str(state),
         "--status-port", str(status_port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                raise RuntimeError(f"controller exited {proc.returncode}: "
                                   f"{(workdir / 'controller.log').read_text()[-2000:]}")
            try:
                switch = StandInSwitch(of_port, n_guests, bridge, uplink)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("controller did not listen")
        # connected: the controller installs its flows (static + per-port)
        deadline = time.monotonic() + 60
        while not status(status_port).get("connected"):
            switch.sock.settimeout(0.2)
            try:
                switch.pump()
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("controller did not take the switch")
        settle(proc.pid, switch)
        switch.sock.settimeout(30)
        frames = [packet_in(FIRST_GUEST + i, arp_frame(guest_mac(i), guest_ip(i, k),
                                                       guest_ip(i, k)), 1000 + k * n_guests + i)
                  for k in range(ips) for i in range(n_guests)]
        base = switch.counts.get(T_PACKET_OUT, 0)
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        sent = 0
        while sent < len(frames) or switch.counts.get(T_PACKET_OUT, 0) - base < len(frames):
            answered = switch.counts.get(T_PACKET_OUT, 0) - base
            if sent < len(frames) and sent - answered < window:
                burst = frames[sent:min(len(frames), answered + window)]
                switch.sock.sendall(b"".join(burst))
                sent += len(burst)
                continue
            switch.pump()
        wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
        bound = status(status_port).get("counters", {}).get("bindings.learned.arp", 0)
        if bound != len(frames):
            raise RuntimeError(f"controller bound {bound} addresses, expected {len(frames)}")
        return {"packet_ins": len(frames), "wall_s": wall, "per_s": len(frames) / wall,
                "controller_cpu_us_each": cpu / len(frames) * 1e6}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guests", type=int, default=1000)
    ap.add_argument("--ips", type=int, default=4, help="new addresses learned per guest")
    ap.add_argument("--window", type=int, default=64, help="packet-ins in flight at most")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="alternate the runs between the controllers of these source trees")
    args = ap.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.tree] or [("", None)]
    results: dict[str, list[dict]] = {label: [] for label, _ in trees}
    bench = Bench()
    bench.require_root()
    try:
        world = bench.world(n_guests=1)
        workdir = bench.workdir / "live"
        workdir.mkdir()
        ctl = QuietController(world, workdir)
        bench.stack.callback(ctl.close)
        # the bridge's target: a port nobody listens on (ovs-vswitchd never connects)
        ctl.setup("--controller", f"tcp:127.0.0.1:{free_port()}")
        for i in range(args.repeat * len(trees)):
            label, path = trees[i % len(trees)]
            r = one_run(args.guests, args.ips, args.window, workdir, ctl.bridge, world.uplink,
                        ctl.of_port, tree_env(path))
            results[label].append(r)
            print(f"{label + ' ' if label else ''}run {i // len(trees) + 1}: "
                  f"{r['packet_ins']} ARP-learning packet-ins in {r['wall_s']:.2f} s = "
                  f"{r['per_s']:.0f}/s; controller CPU {r['controller_cpu_us_each']:.0f} us "
                  f"each", flush=True)
    finally:
        bench.close()
    met = True
    out = {"target": TARGET}
    for label, runs in results.items():
        best = max(r["per_s"] for r in runs)
        median = statistics.median(r["per_s"] for r in runs)
        cpu = statistics.median(r["controller_cpu_us_each"] for r in runs)
        met = met and median >= TARGET
        print(f"{label + ': ' if label else ''}ARP learning through the running controller: "
              f"median {median:.0f}/s, best {best:.0f}/s of {len(runs)} runs, controller CPU "
              f"median {cpu:.0f} us each (target >= {TARGET:.0f}/s): "
              f"{'met' if median >= TARGET else 'NOT met'}")
        out[label or "tree"] = {"runs": runs, "best_per_s": best, "median_per_s": median,
                                "median_cpu_us_each": cpu}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
