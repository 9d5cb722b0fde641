"""Address hand-off with a real systemd-networkd on the host's uplink (issue 13, item 2).

The test machines have systemd installed but not as PID 1.  systemd-networkd 252 runs
standalone here when (a) it finds no udev to wait for -- it waits for every link's udev
initialisation when /sys is writable, so it is started in a mount namespace of its own where
/sys is read-only (a per-mount flag: the host's /sys is untouched) -- and (b) a system D-Bus
exists for `networkctl reload` (wlbridge's plan runs it): a private dbus-daemon with the
system configuration, reached through DBUS_SYSTEM_BUS_ADDRESS, so the host's own bus (if
any) is left alone.

Safety (networkd shares the root namespace with the machine's own network): every .network
file networkd would read is checked to match none of this machine's interfaces but the test's
(else the test does not run), a runtime drop-in turns off ManageForeignRoutes and
ManageForeignRoutingPolicyRules (networkd then never removes routes or rules it did not make),
links with no .network file stay unmanaged.  networkd and the bus are stopped by PID; only the
files they and the test created are removed.

The LAN's DHCP server is busybox udhcpd with a 24 s lease (as for the dhclient test); its log
("sending ACK to ...") is the proof of renewals.  The stand-in for the default route is a
route to a test-only prefix via the DHCP router (``[Route] Gateway=_dhcp4``), never the
machine's default route.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from harness import Controller, wait_for, wlbridge
from test_addr_handoff import LEASE, _setup_in_process, addr_info, routes_to, udhcpd
from wlbridge.host import addr_handoff

NETWORKD = "/lib/systemd/systemd-networkd"
BUS_CONFIG = "/usr/share/dbus-1/system.conf"
NETWORK_DIRS = ("/etc/systemd/network", "/run/systemd/network", "/usr/lib/systemd/network",
                "/lib/systemd/network")
RUNTIME_DIR = Path("/run/systemd/network")
DROPIN = Path("/run/systemd/networkd.conf.d/50-wlbridge-test-nwd.conf")
NETIF = Path("/run/systemd/netif")
SAFETY = """# wlbridge integration test (tests/integration/test_addr_handoff_networkd.py):
# never remove routes or routing policy rules systemd-networkd did not create
[Network]
ManageForeignRoutes=no
ManageForeignRoutingPolicyRules=no
"""
# networkd with no udev to wait for: /sys read-only in a mount namespace of its own
START = ("mount --bind /sys /sys && mount -o remount,bind,ro /sys && "
         f"exec {NETWORKD}")


def in_ci() -> bool:
    """tests/conftest.py's rule: under CI an integration test fails, never skips."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def cannot(reason: str) -> None:
    (pytest.fail if in_ci() else pytest.skip)(f"systemd-networkd cannot run here: {reason}")


def root_links() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


def _match_sections(text: str) -> list[dict[str, list[str]]]:
    found, current = [], None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            current = {} if line.lower() == "[match]" else None
            if current is not None:
                found.append(current)
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).extend(value.split())
    return found


def foreign_network_files(ours: tuple[str, ...]) -> list[str]:
    """The .network files (not ours) networkd would read that could match an interface of
    this machine, or the test's (`ours`): one line each.  A file matches by Name= globs here;
    one matching by other properties only is accepted for Type=wlan with no Wi-Fi device."""
    seen: set[str] = set()
    problems = []
    names = root_links() + list(ours)
    wifi = [n for n in root_links() if os.path.isdir(f"/sys/class/net/{n}/wireless")]
    for d in NETWORK_DIRS:
        if not os.path.isdir(d):
            continue
        for entry in sorted(os.listdir(d)):
            path = os.path.realpath(os.path.join(d, entry))
            if not entry.endswith(".network") or entry in seen or path in seen:
                continue
            seen.update((entry, path))
            if entry.startswith(("50-nwd-", addr_handoff.NETWORKD_PREFIX)):
                continue
            try:
                text = Path(path).read_text()
            except OSError as exc:
                problems.append(f"{path}: unreadable ({exc})")
                continue
            for match in _match_sections(text) or [{}]:
                globs = match.get("Name", [])
                if globs:
                    hit = [n for n in names if any(fnmatch.fnmatch(n, g) for g in globs)]
                    if hit:
                        problems.append(f"{path} matches {', '.join(hit)}")
                elif match.get("Type") == ["wlan"] and not wifi:
                    continue
                else:
                    problems.append(f"{path} matches interfaces by {sorted(match) or 'nothing'}")
    return problems


def networkd_running() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == "systemd-network":
                    found.append(int(entry))
    return found


class Networkd:
    """A private system D-Bus and systemd-networkd, started and stopped by this test."""

    def __init__(self, workdir: Path) -> None:
        # the bus socket's directory must be reachable by networkd's own user
        self.bus_dir = Path(tempfile.mkdtemp(prefix="nwd-bus-", dir="/tmp"))
        self.bus_dir.chmod(0o755)
        self.bus = f"unix:path={self.bus_dir}/system_bus_socket"
        self.log = workdir / "networkd.log"
        self.bus_pid: int | None = None
        self.proc: subprocess.Popen | None = None
        self.created: list[Path] = []
        self.netif_before = self._netif_files()

    @staticmethod
    def _netif_files() -> set[Path]:
        return {p for p in NETIF.rglob("*") if p.is_file()} if NETIF.is_dir() else set()

    def env(self) -> dict[str, str]:
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus,
                "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_TARGET": "console",
                "SYSTEMD_LOG_TIME": "1"}

    def start(self) -> None:
        res = subprocess.run(["dbus-daemon", f"--config-file={BUS_CONFIG}",
                              f"--address={self.bus}", "--fork", "--nopidfile", "--print-pid"],
                             capture_output=True, text=True, timeout=10, check=False)
        if res.returncode != 0:
            cannot(f"a private system D-Bus did not start: {res.stderr.strip()}")
        self.bus_pid = int(res.stdout.split()[0])
        if not DROPIN.exists():
            DROPIN.parent.mkdir(parents=True, exist_ok=True)
            DROPIN.write_text(SAFETY)
            self.created.append(DROPIN)
        if not RUNTIME_DIR.exists():
            RUNTIME_DIR.mkdir(parents=True)
            self.created.insert(0, RUNTIME_DIR)         # removed last, if empty
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh",
                                          "-c", START], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env(),
                                         start_new_session=True)

        def up() -> bool:
            if self.proc.poll() is not None:
                return True
            return self.ctl("list", check=False).returncode == 0

        wait_for(up, timeout=15, what="systemd-networkd to answer on D-Bus")
        if self.proc.poll() is not None:
            cannot(f"`unshare -m sh -c '{START}'` exited {self.proc.returncode}: "
                   f"{self.log.read_text()[-600:]}")

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(["networkctl", *args], capture_output=True, text=True,
                             timeout=30, env=self.env(), check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"networkctl {' '.join(args)}: {res.stderr}")
        return res

    def write_network(self, name: str, text: str) -> Path:
        path = RUNTIME_DIR / name
        path.write_text(text)
        self.created.append(path)
        return path

    def link_state(self, ifname: str) -> dict[str, str]:
        """networkd's /run/systemd/netif/links/<ifindex> (what wlbridge's detection reads)."""
        try:
            index = Path(f"/sys/class/net/{ifname}/ifindex").read_text().strip()
            text = (NETIF / "links" / index).read_text()
        except OSError:
            return {}
        return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)

    def lease(self, ifname: str) -> dict[str, str]:
        path = self.link_state(ifname).get("DHCP_LEASE")
        text = Path(path).read_text() if path else ""
        return dict(ln.split("=", 1) for ln in text.splitlines() if "=" in ln)

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.bus_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.bus_pid, signal.SIGTERM)
        for path in reversed(self.created):
            with contextlib.suppress(FileNotFoundError, OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        with contextlib.suppress(OSError):
            DROPIN.parent.rmdir()           # only if empty (ours alone)
        for path in self._netif_files() - self.netif_before:    # networkd's state files
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        shutil.rmtree(self.bus_dir, ignore_errors=True)


@pytest.fixture
def networkd(tmp_path):
    for tool in (NETWORKD, "networkctl", "dbus-daemon", "unshare"):
        if not shutil.which(tool):
            cannot(f"{tool} is not installed (Debian: systemd, dbus-daemon)")
    if networkd_running():
        cannot(f"systemd-networkd already runs here (PID {networkd_running()}): not ours")
    nd = Networkd(tmp_path)
    try:
        nd.start()
        yield nd
    finally:
        nd.stop()


def server_acks(world, ip: str) -> int:
    log = world.tmp_path("udhcpd.log")
    return log.read_text().count(f"sending ACK to {ip}\n") if log.exists() else 0


def uplink_network(uplink: str, route: ipaddress.IPv4Network) -> str:
    """The station's .network file: DHCPv4 only, the router as a route to a test prefix."""
    return (f"[Match]\nName={uplink}\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n"
            "IPv6AcceptRA=no\n\n[DHCPv4]\nUseGateway=no\nUseDNS=no\nUseNTP=no\n"
            f"UseHostname=no\nUseDomains=no\n\n[Route]\nDestination={route}\n"
            "Gateway=_dhcp4\n")


def networkd_station(networkd, make_world, tmp_path, monkeypatch):
    """A LAN whose station uplink networkd configures (DHCPv4 from udhcpd, 24 s leases):
    (world, its .network file, the leased address, the router's test route)."""
    world = make_world(n_guests=0, dhcp=False)
    problems = foreign_network_files((world.uplink, f"{world.prefix}-br"))
    if problems:
        cannot("networkd would manage interfaces not ours: " + "; ".join(problems))
    udhcpd(world, tmp_path)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", networkd.bus)     # for wlbridge's networkctl
    route = ipaddress.ip_network(f"198.18.{world.subnet.network_address.packed[2]}.0/24")
    original = networkd.write_network(f"50-nwd-{world.uplink}.network",
                                      uplink_network(world.uplink, route))
    world.station.flush_addr()
    networkd.ctl("reload")
    ip = wait_for(lambda: world.station.ip, timeout=20,
                  what=f"networkd's lease on the uplink:\n{networkd.logs()[-3000:]}")
    assert networkd.link_state(world.uplink).get("NETWORK_FILE") == str(original)
    wait_for(lambda: routes_to(route), timeout=10, what="the DHCP router's route")
    assert len(routes_to(route)) == 1 and world.uplink in routes_to(route)[0]
    assert world.station.ping(world.peers[0].addr, src=ip)
    return world, original, ip, route


def test_networkd_handed_to_bridge_and_back(networkd, make_world, tmp_path, monkeypatch):
    world, original, ip, route = networkd_station(networkd, make_world, tmp_path, monkeypatch)
    peer = world.peers[0]
    client_id = networkd.lease(world.uplink)["CLIENTID"]

    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    up_file, br_file = addr_handoff.networkd_files(world.uplink, ctl.bridge, str(original))
    try:
        res = wlbridge("setup", "--uplink", world.uplink, "--bridge", ctl.bridge,
                       "--datapath", "netdev", "--controller", f"tcp:127.0.0.1:{ctl.of_port}",
                       "--state-dir", str(tmp_path / "state"))
        ctl.is_set_up = True
        assert (f"address manager: systemd-networkd on {ctl.bridge} (was: systemd-networkd "
                f"({original}))") in res.stdout, res.stdout
        assert Path(up_file).exists() and Path(br_file).exists()
        assert addr_info(world.uplink) == []
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]

        started = time.time()
        acks = server_acks(world, ip)
        ctl.start()
        wait_for(lambda: networkd.link_state(ctl.bridge).get("ADMIN_STATE") == "configured",
                 timeout=LEASE, what=f"networkd to configure {ctl.bridge}:\n"
                 f"{networkd.logs()[-3000:]}")
        # renewed on the bridge, again and again, for three lease times
        time.sleep(max(0.0, started + 3 * LEASE + 4 - time.time()))
        assert server_acks(world, ip) - acks >= 4, world.tmp_path("udhcpd.log").read_text()
        assert networkd.link_state(ctl.bridge).get("NETWORK_FILE") == br_file
        assert networkd.link_state(world.uplink).get("NETWORK_FILE") == up_file
        assert networkd.lease(ctl.bridge)["CLIENTID"] == client_id      # the same identity
        on_bridge = addr_info(ctl.bridge)
        assert [a["local"] for a in on_bridge] == [ip], on_bridge
        assert 0 < on_bridge[0]["valid_life_time"] <= LEASE, on_bridge     # a lease, renewed
        assert addr_info(world.uplink) == []
        assert world.station.ping(peer.addr, src=ip)
        for net in (world.subnet, route):        # no route left or doubled
            routes = routes_to(net)
            assert len(routes) == 1 and f"dev {ctl.bridge}" in routes[0], routes
        host = ctl.status()["host_address"]
        assert host["address_manager"] == f"systemd-networkd on {ctl.bridge}", host
        assert time.time() < host["lease_ends"] <= time.time() + LEASE + 1, host
    finally:
        ctl.stop()
        res = wlbridge("teardown", "--bridge", ctl.bridge, check=False)
        ctl.is_set_up = False
    assert res.returncode == 0, res.stdout + res.stderr
    assert not Path(up_file).exists() and not Path(br_file).exists()
    # the bridge's lease is not released just before the uplink asks for it again
    assert f"{ctl.bridge}: DHCPv4 client: RELEASE" not in networkd.logs()
    # networkd configures the uplink again with its own file, same address, renewing there
    wait_for(lambda: networkd.link_state(world.uplink).get("NETWORK_FILE") == str(original)
             and networkd.link_state(world.uplink).get("ADMIN_STATE") == "configured",
             timeout=LEASE, what=f"networkd back on the uplink:\n{networkd.logs()[-3000:]}")
    back = server_acks(world, ip)
    wait_for(lambda: server_acks(world, ip) > back, timeout=LEASE + 10,
             what="a renewal on the uplink after teardown")
    assert [a["local"] for a in addr_info(world.uplink)] == [ip]
    assert world.station.ping(peer.addr, src=ip)
    routes = routes_to(route)
    assert len(routes) == 1 and f"dev {world.uplink}" in routes[0], routes


def test_networkd_failed_handoff_rolls_back(networkd, make_world, tmp_path, monkeypatch):
    """The last step fails after networkd took the new files (reloaded): setup undoes the
    steps -- the runtime files go, networkd reloaded -- puts the address back on the uplink and
    removes the bridge; networkd configures the uplink again with its own file."""
    world, original, ip, _ = networkd_station(networkd, make_world, tmp_path, monkeypatch)
    bridge = f"{world.prefix}-br"
    up_file, br_file = addr_handoff.networkd_files(world.uplink, bridge, str(original))
    real = addr_handoff.HostOps.do_command
    failed = []

    def reload_then_fail(self, argv, undo):
        real(self, argv, undo)
        if argv == ["networkctl", "reload"] and not failed:
            failed.append(networkd.link_state(world.uplink).get("NETWORK_FILE"))
            raise RuntimeError("simulated failure after systemd-networkd reloaded")

    monkeypatch.setattr(addr_handoff.HostOps, "do_command", reload_then_fail)
    try:
        rc, out = _setup_in_process(world, bridge, tmp_path / "state")
        monkeypatch.setattr(addr_handoff.HostOps, "do_command", real)
        assert failed, out
        assert rc == 2, out
        assert "rolled back" in out and "simulated failure" in out, out
        assert "\n" not in out.split("ERROR: ", 1)[1].strip(), out       # one line
        assert not Path(up_file).exists() and not Path(br_file).exists()
        assert bridge not in subprocess.run(["ovs-vsctl", "list-br"], capture_output=True,
                                            text=True, check=True).stdout.split()
        wait_for(lambda: networkd.link_state(world.uplink).get("NETWORK_FILE") == str(original)
                 and networkd.link_state(world.uplink).get("ADMIN_STATE") == "configured"
                 and [a["local"] for a in addr_info(world.uplink)] == [ip], timeout=LEASE,
                 what=f"networkd back on the uplink:\n{networkd.logs()[-3000:]}")
        assert world.station.ping(world.peers[0].addr, src=ip)
    finally:
        monkeypatch.setattr(addr_handoff.HostOps, "do_command", real)
        wlbridge("teardown", "--bridge", bridge, check=False)      # only if the test failed
