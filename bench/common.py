"""Shared plumbing for wlbridge's benchmarks (bench/bench_*.py): worlds, bridges, statistics.

Every benchmark is a plain script run as root with the project's venv::

    sudo .venv/bin/python bench/bench_throughput.py [--json out.json]

It builds its own emulated Wi-Fi LANs (`topologies`), measures, prints a table and removes
everything it created, also on failure or SIGTERM/SIGINT (`Bench` below).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "controller", ROOT / "tests" / "integration"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from topologies import OvsBridge, World, basic_lan, cleanup_leftovers, free_prefix, ovs_problem
from topologies.procs import run, wait_for


# ------------------------------------------------------------------ statistics
def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = max(0, min(len(vals) - 1, int(-(-q * len(vals) // 100)) - 1))
    return vals[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values) if values else float("nan"),
        "min": min(values) if values else float("nan"),
        "max": max(values) if values else float("nan"),
        "p99": percentile(values, 99),
    }


# ------------------------------------------------------------------ output
def table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def machine() -> dict[str, Any]:
    def cmd(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                  check=False).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ovs": cmd("ovs-vsctl", "--version").splitlines()[0] if cmd("ovs-vsctl", "--version")
        else "",
        "loadavg_start": os.getloadavg(),
    }


def base_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the worlds' work directories (dnsmasq, controller logs)")
    return ap


def write_json(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
        print(f"\nresults written to {path}")


# ------------------------------------------------------------------ lifecycle
class Bench:
    """Owns everything a benchmark creates; `close()` removes it in reverse order.

    SIGTERM and SIGHUP raise SystemExit (like Ctrl-C raises KeyboardInterrupt), so the
    ``finally`` of the script always runs and nothing is left behind.
    """

    def __init__(self, keep_logs: bool = False) -> None:
        self.keep_logs = keep_logs
        self.stack = contextlib.ExitStack()
        self.prefixes: list[str] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="wlbench-"))
        self.pid = os.getpid()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame) -> None:
        if os.getpid() != self.pid:
            # A forked helper (pyroute2 forks to enter namespaces) inherits this handler; it
            # must die as by default, never run our cleanup.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise SystemExit(128 + signum)

    def require_root(self) -> None:
        if os.geteuid() != 0:
            sys.exit("this benchmark needs root (network namespaces, Open vSwitch)")
        problem = ovs_problem()
        if problem:
            sys.exit(problem)

    def world(self, **kw: Any) -> World:
        """Build a basic_lan world (fresh prefix); torn down by close()."""
        prefix = free_prefix()
        self.prefixes.append(prefix)
        self.stack.callback(cleanup_leftovers, prefix)  # safety net, runs after teardown
        world = World(basic_lan(prefix=prefix, **kw), keep_logs=self.keep_logs)
        self.stack.callback(world.teardown)
        world.build()
        print(f"  world {prefix}: LAN {world.subnet}, AP one-MAC rule "
              f"{'on' if kw.get('filter', True) else 'off'}", flush=True)
        return world

    def plain_bridge(self, world: World, guests=None) -> OvsBridge:
        """The baseline: a netdev OVS bridge, uplink + guest ports, one NORMAL flow."""
        br = OvsBridge(f"{world.prefix}-pb")
        self.stack.callback(br.delete)
        br.create()
        br.add_port(world.uplink)
        for g in world.guests if guests is None else guests:
            br.add_port(g.port)
        br.normal()
        return br

    def wlbridge(self, world: World, guests=None, *, verbose: bool = False,
                 setup_args: tuple[str, ...] = (), **kw: Any):
        """The real product: `wlbridge setup` (plus `setup_args`), guests attached,
        `wlbridge run` started (without ``-v`` unless `verbose`: debug logging is not how it
        runs in production)."""
        workdir = self.workdir / f"wlbridge-{world.prefix}"
        workdir.mkdir(parents=True)
        ctl = (_VerboseController if verbose else QuietController)(world, workdir, **kw)
        self.stack.callback(ctl.close)
        ctl.setup(*setup_args)
        ctl.attach(*(world.guests if guests is None else guests))
        ctl.start()
        return ctl

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            if not self.keep_logs:
                import shutil

                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                print(f"logs kept in {self.workdir}", file=sys.stderr)


# ------------------------------------------------------------------ interfaces
def tx_checksum(netns: str | None, ifname: str) -> str:
    """'on'/'off' for tx-checksumming of an interface (from ethtool -k)."""
    res = run(netns, ["ethtool", "-k", ifname], check=False)
    for line in res.stdout.splitlines():
        if line.strip().startswith("tx-checksumming:"):
            return line.split(":", 1)[1].split()[0]
    return "?"


def tx_off(netns: str | None, ifname: str) -> None:
    run(netns, ["ethtool", "-K", ifname, "tx", "off"], check=False)


def offload_report(world: World, bridge: str) -> dict[str, str]:
    """TX checksum offload of every interface on the data path (all must be 'off')."""
    report = {f"{g.name}:{g.ifname}": tx_checksum(g.netns, g.ifname) for g in world.guests}
    report.update({f"root:{g.port}": tx_checksum(None, g.port) for g in world.guests})
    report[f"root:{world.uplink}"] = tx_checksum(None, world.uplink)
    report[f"root:{bridge} (internal)"] = tx_checksum(None, bridge)
    for p in world.peers:
        report[f"{p.name}:{p.ifname}"] = tx_checksum(p.netns, p.ifname)
    return report


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = ""):
    """`topologies.procs.wait_for`, raising when time runs out."""
    value = wait_for(pred, timeout, interval)
    if not value:
        raise RuntimeError(f"timed out waiting for {what or pred}")
    return value


def ip_of(host) -> str:
    return str(host.addr).split("/")[0]


# ------------------------------------------------------------------ the controller process
from harness import CLI
from harness import Controller as _VerboseController


class QuietController(_VerboseController):
    """`harness.Controller`, but `wlbridge run` at its default log level (INFO), as a user
    runs it; the harness starts it with ``-v`` (DEBUG), which costs time on every event."""

    def start(self, wait: bool = True) -> None:
        from harness import wait_for as harness_wait_for

        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                CLI + ["run", "--bridge", self.bridge, "--listen-port", str(self.of_port),
                       "--state-dir", str(self.state_dir), "--status-port",
                       str(self.status_port), "--dhcp-mode", self.dhcp_mode, *self.extra],
                stdout=log, stderr=subprocess.STDOUT)
        if wait:
            harness_wait_for(self._connected, timeout=20, what="the switch to connect")
