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

import fnmatch
import ipaddress
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from harness import Controller, wait_for, wlbridge
from managers import (
    LEASE,
    StandaloneDaemon,
    addr_info,
    assert_back_on_uplink,
    assert_handed_off,
    assert_rolled_back,
    cannot,
    replace_step,
    restore_step,
    routes_to,
    server_acks,
    setup_in_process,
    stand_in_route,
    udhcpd,
    wait_acked_after,
)
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


class Networkd(StandaloneDaemon):
    """A private system D-Bus and systemd-networkd, started and stopped by this test; its
    state files (/run/systemd/netif) and the test's runtime files removed."""

    name = "systemd-networkd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "nwd-bus-", (NETIF,))

    def env(self) -> dict[str, str]:
        return {**super().env(), "SYSTEMD_LOG_LEVEL": "debug", "SYSTEMD_LOG_TARGET": "console",
                "SYSTEMD_LOG_TIME": "1"}

    def start(self) -> None:
        self.bus.start(BUS_CONFIG, self.name)
        for path in (RUNTIME_DIR, DROPIN.parent):    # removed last, if empty
            if not path.exists():
                path.mkdir(parents=True)
                self.created.append(path)
        if not DROPIN.exists():
            DROPIN.write_text(SAFETY)
            self.created.append(DROPIN)
        self.launch([NETWORKD], self.dir / "networkd.log",
                    lambda: self.ctl("list", check=False).returncode == 0, timeout=15)

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.client("networkctl", *args, check=check)

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


@pytest.fixture
def networkd(tmp_path):
    Networkd.check_can_run("systemd-network", (NETWORKD, "networkctl", "dbus-daemon", "unshare"),
                           "systemd, dbus-daemon")
    nd = Networkd(tmp_path)
    try:
        nd.start()
        yield nd
    finally:
        nd.stop()


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
        cannot(Networkd.name, "networkd would manage interfaces not ours: "
               + "; ".join(problems))
    udhcpd(world, tmp_path)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", networkd.bus.address)  # wlbridge's networkctl
    route = stand_in_route(world)
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
        assert_handed_off(world, ctl, ip, route, f"systemd-networkd on {ctl.bridge}")
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
    wait_acked_after(world, ip, server_acks(world, ip), "a renewal on the uplink after teardown")
    assert_back_on_uplink(world, ip, route)


def test_networkd_failed_handoff_rolls_back(networkd, make_world, tmp_path, monkeypatch):
    """The last step fails after networkd took the new files (reloaded): setup undoes the
    steps -- the runtime files go, networkd reloaded -- puts the address back on the uplink and
    removes the bridge; networkd configures the uplink again with its own file."""
    world, original, ip, _ = networkd_station(networkd, make_world, tmp_path, monkeypatch)
    bridge = f"{world.prefix}-br"
    up_file, br_file = addr_handoff.networkd_files(world.uplink, bridge, str(original))
    failed = []

    def reload_then_fail(host, argv, undo, done_if=None):
        real(host, argv, undo, done_if)
        if argv == ["networkctl", "reload"] and not failed:
            failed.append(networkd.link_state(world.uplink).get("NETWORK_FILE"))
            raise RuntimeError("simulated failure after systemd-networkd reloaded")

    real = replace_step(monkeypatch, "command", reload_then_fail)
    try:
        rc, out = setup_in_process(world, bridge, tmp_path / "state")
        restore_step(monkeypatch, "command", real)
        assert failed, out
        assert_rolled_back(rc, out, bridge)
        assert not Path(up_file).exists() and not Path(br_file).exists()
        wait_for(lambda: networkd.link_state(world.uplink).get("NETWORK_FILE") == str(original)
                 and networkd.link_state(world.uplink).get("ADMIN_STATE") == "configured"
                 and [a["local"] for a in addr_info(world.uplink)] == [ip], timeout=LEASE,
                 what=f"networkd back on the uplink:\n{networkd.logs()[-3000:]}")
        assert world.station.ping(world.peers[0].addr, src=ip)
    finally:
        restore_step(monkeypatch, "command", real)
        wlbridge("teardown", "--bridge", bridge, check=False)      # only if the test failed
