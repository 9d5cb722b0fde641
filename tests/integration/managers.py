"""Real address managers on the host's uplink, for the address hand-off tests (issue 13):
the LAN's short-lease DHCP server, a private system D-Bus and a standalone daemon
(systemd-networkd, NetworkManager) started and stopped by the test, and the checks every
hand-off test makes (test_addr_handoff*.py).

The LAN's DHCP server is busybox udhcpd with a 24 s lease (dnsmasq will not go below 120 s);
its log ("sending ACK to ...") proves renewals.  The stand-in for the default route is a route
to a test-only prefix (`stand_in_route`) via the DHCP router, never the machine's default route.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import harness
from harness import wait_for
from setup_station import run_in_process
from wlbridge.cli import bridge_setup
from wlbridge.host.addr_handoff import steps as handoff_steps

LEASE = 24

SCRIPT = """#!/bin/sh
# dhclient -sf script (test tooling): the address only, every event logged with the interface.
echo "$(date +%s) $reason $interface ${new_ip_address:-} ${new_dhcp_lease_time:-}" >> {events}
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" \\
      valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time"
    # the router option, as a route to a test-only prefix (never the machine's default route)
    [ -n "$new_routers" ] && ip -4 route replace {route} via "${new_routers%% *}" \\
      dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip -4 addr del "$old_ip_address/$old_subnet_mask" \\
      dev "$interface" 2>/dev/null ;;
esac
exit 0
"""

CONF = """timeout 20;
retry 2;
initial-interval 1;
backoff-cutoff 2;
request subnet-mask, broadcast-address, routers;
"""


# ---------------------------------------------------------------- the LAN and the host
def udhcpd(world, workdir: Path, lease: int = LEASE, extra: str = "") -> None:
    net = world.subnet
    conf = workdir / "udhcpd.conf"
    (workdir / "udhcpd.leases").touch()
    conf.write_text(
        f"start {net.network_address + 100}\nend {net.network_address + 199}\n"
        f"interface {world.router.ifname}\nlease_file {workdir / 'udhcpd.leases'}\n"
        f"pidfile {workdir / 'udhcpd.pid'}\noption subnet {net.netmask}\n"
        f"option lease {lease}\nmin_lease 10\noption router {net.network_address + 1}\n"
        + extra)
    world.router.popen("busybox", "udhcpd", "-f", str(conf), name="udhcpd")


def server_acks(world, ip: str) -> int:
    """How many ACKs for `ip` udhcpd sent so far."""
    log = world.tmp_path("udhcpd.log")
    return log.read_text().count(f"sending ACK to {ip}\n") if log.exists() else 0


def wait_acked_after(world, ip: str, acks: int, what: str) -> None:
    """Until udhcpd sent `ip` one more ACK than `acks` (a renewal), within a lease time."""
    wait_for(lambda: server_acks(world, ip) > acks, timeout=LEASE + 10, what=what)


def stand_in_route(world) -> ipaddress.IPv4Network:
    """The route standing in for the default route: a prefix no one else uses (by the LAN's
    subnet)."""
    return ipaddress.ip_network(f"198.18.{world.subnet.network_address.packed[2]}.0/24")


def renewals(events: Path, iface: str, since: float = 0) -> list[str]:
    """A DHCP client script's event log (`<time> <reason> <interface> <address> ...`): the
    leases got or renewed on `iface` since `since`."""
    lines = events.read_text().splitlines() if events.exists() else []
    return [ln for ln in lines if ln.split()[2:3] == [iface] and ln.split()[1] in (
        "RENEW", "REBIND", "REBOOT", "BOUND") and int(ln.split()[0]) >= since]


def processes() -> list[tuple[int, list[str]]]:
    """Every running process with a command line: (PID, argv)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if raw:
                found.append((int(entry), [a.decode() for a in raw.rstrip(b"\0").split(b"\0")]))
    return found


def ours(workdir: Path) -> list[tuple[int, list[str]]]:
    """Running processes whose command line names `workdir` (ours alone)."""
    return [(pid, argv) for pid, argv in processes() if any(str(workdir) in a for a in argv)]


def running(comm: str) -> list[int]:
    """PIDs of the processes named `comm` (/proc/PID/comm)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    found.append(int(entry))
    return found


def addr_info(dev: str) -> list[dict]:
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", dev], capture_output=True,
                         text=True, check=False)
    if out.returncode:
        return []
    return [a for link in json.loads(out.stdout) for a in link["addr_info"]]


def routes_to(net: ipaddress.IPv4Network) -> list[str]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "main", str(net)],
                         capture_output=True, text=True, check=True).stdout
    return [ln for ln in out.splitlines() if ln.strip()]


def bridges() -> list[str]:
    return subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True,
                          check=True).stdout.split()


def replace_step(monkeypatch, kind: str, do: Callable[..., None]) -> Callable[..., None]:
    """Step `kind` (version 1) of the address hand-off done by `do(host, **arguments)` until
    `restore_step` (or the test's end); the registered function, to call from `do`."""
    real = handoff_steps.REGISTRY[(kind, 1)]
    monkeypatch.setitem(handoff_steps.REGISTRY, (kind, 1), dataclasses.replace(real, do=do))
    return real.do


def restore_step(monkeypatch, kind: str, do: Callable[..., None]) -> None:
    real = handoff_steps.REGISTRY[(kind, 1)]
    monkeypatch.setitem(handoff_steps.REGISTRY, (kind, 1), dataclasses.replace(real, do=do))


def setup_in_process(world, bridge: str, state_dir: Path, of_port: int = 1) -> tuple[int, str]:
    """`wlbridge setup` of the world's uplink in this process (so a test can patch it):
    (exit code, what it printed)."""
    parser = argparse.ArgumentParser()
    bridge_setup.add_arguments(parser)
    args = parser.parse_args(["--uplink", world.uplink, "--bridge", bridge, "--datapath",
                              "netdev", "--controller", f"tcp:127.0.0.1:{of_port}",
                              "--state-dir", str(state_dir)])
    return run_in_process(bridge_setup, args)


# ---------------------------------------------------------------- the checks
def assert_handed_off(world, ctl, ip: str, route, manager: str, *, exact: bool = True,
                      lease: bool = True, why: Callable[[], str] = str) -> None:
    """The host's address `ip` is on the bridge alone, a lease (renewed), it reaches the LAN
    peer from there, the LAN's and the router's (`route`) routes go by the bridge once each,
    and `wlbridge status` names the address manager (`manager`, or one starting so unless
    `exact`) and, with `lease`, when the lease ends.  `why()`: more to say when the uplink
    still has an address."""
    on_bridge = addr_info(ctl.bridge)
    assert [a["local"] for a in on_bridge] == [ip], on_bridge
    assert 0 < on_bridge[0]["valid_life_time"] <= LEASE, on_bridge     # a lease, renewed
    assert addr_info(world.uplink) == [], why()
    assert world.station.ping(world.peers[0].addr, src=ip)
    for net in (world.subnet, route):        # no route left or doubled
        routes = routes_to(net)
        assert len(routes) == 1 and f"dev {ctl.bridge}" in routes[0], routes
    host = ctl.status()["host_address"]
    named = host["address_manager"]
    assert named == manager if exact else named.startswith(manager), host
    if lease:
        assert time.time() < host["lease_ends"] <= time.time() + LEASE + 1, host


def assert_back_on_uplink(world, ip: str, route) -> None:
    """The host's address `ip` on the uplink again, the LAN peer reached from it, the
    router's route (`route`) once, by the uplink."""
    assert [a["local"] for a in addr_info(world.uplink)] == [ip]
    assert world.station.ping(world.peers[0].addr, src=ip)
    routes = routes_to(route)
    assert len(routes) == 1 and f"dev {world.uplink}" in routes[0], routes


def assert_rolled_back(rc: int, out: str, bridge: str) -> None:
    """A setup that failed on purpose said so in one line, rolled back, left no bridge."""
    assert rc == 2, out
    assert "rolled back" in out and "simulated failure" in out, out
    assert "\n" not in out.split("ERROR: ", 1)[1].strip(), out       # one line
    assert bridge not in bridges()


# ---------------------------------------------------------------- standalone daemons

def cannot(daemon: str, reason: str) -> None:
    """`daemon` cannot run on this machine: the test fails under CI, else is skipped."""
    harness.cannot(f"{daemon} cannot run here: {reason}")


class PrivateBus:
    """A private system D-Bus (dbus-daemon with a system configuration), reached through
    DBUS_SYSTEM_BUS_ADDRESS: the host's own bus (if any) is left alone.  Stopped by PID."""

    def __init__(self, prefix: str) -> None:
        # the socket's directory must be reachable by the bus's (and a daemon's) own user
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.dir.chmod(0o755)
        self.address = f"unix:path={self.dir}/system_bus_socket"
        self.pid: int | None = None

    def start(self, config: Path | str, daemon: str) -> None:
        res = subprocess.run(["dbus-daemon", f"--config-file={config}",
                              f"--address={self.address}", "--fork", "--nopidfile",
                              "--print-pid"],
                             capture_output=True, text=True, timeout=10, check=False)
        if res.returncode != 0:
            cannot(daemon, f"a private system D-Bus did not start: {res.stderr.strip()}")
        self.pid = int(res.stdout.split()[0])

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


# run a daemon with no udev to wait for: /sys read-only in a mount namespace of its own (a
# per-mount flag: the host's /sys is untouched), the container convention for "no udev here"
READ_ONLY_SYS = 'mount --bind /sys /sys && mount -o remount,bind,ro /sys && exec "$0" "$@"'


def _tree(d: Path) -> set[Path]:
    return set(d.rglob("*")) if d.is_dir() else set()


class StandaloneDaemon:
    """A network daemon (not PID 1's service: the test machines run no systemd or udev)
    started by a test on a private system D-Bus, in a read-only-/sys mount namespace;
    stopped by PID, and the files it wrote removed: the new ones in `state_dirs` (its
    compiled-in state directories) and the ones the test made (`created`)."""

    name = "the daemon"        # in messages
    stop_timeout = 10.0

    def __init__(self, workdir: Path, bus_prefix: str, state_dirs: tuple[Path, ...]) -> None:
        self.dir = workdir
        self.bus = PrivateBus(bus_prefix)
        self.proc: subprocess.Popen | None = None
        self.created: list[Path] = []        # removed in reverse order (a directory if empty)
        self.state_before = {d: (d.exists(), _tree(d)) for d in state_dirs}

    @classmethod
    def check_can_run(cls, comm: str, tools: tuple[str, ...], packages: str) -> None:
        """The tools are installed, and no such daemon runs (it would not be ours)."""
        for tool in tools:
            if not shutil.which(tool):
                cannot(cls.name, f"{tool} is not installed (Debian: {packages})")
        if running(comm):
            cannot(cls.name, f"{cls.name} already runs here (PID {running(comm)}): not ours")

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus.address}

    def launch(self, argv: list[str], log: Path, answers: Callable[[], bool],
               timeout: float) -> None:
        """Start `argv` in its mount namespace, output to `log`, until `answers()`."""
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh",
                                          "-c", READ_ONLY_SYS, *argv], stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                         start_new_session=True)
        wait_for(lambda: self.proc.poll() is not None or answers(), timeout=timeout,
                 what=f"{self.name} to answer on D-Bus")
        if self.proc.poll() is not None:
            cannot(self.name, f"{' '.join(argv)} exited {self.proc.returncode} (in a "
                   f"read-only-/sys mount namespace): {self.logs()[-800:]}")

    def client(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A command line tool talking to the daemon on its bus."""
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                             env=self.env(), check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)}: {res.stderr}")
        return res

    def logs(self) -> str:
        log = getattr(self, "log", None)
        return log.read_text(errors="replace") if log is not None and log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.bus.stop()
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        for d, (existed, before) in self.state_before.items():    # what the daemon wrote
            for path in sorted(_tree(d) - before, reverse=True):
                with contextlib.suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()
            if not existed:
                with contextlib.suppress(OSError):
                    d.rmdir()
