"""Address hand-off with a real ISC dhclient on the host's uplink (issue 13, items 1-2).

The LAN's DHCP server here is busybox udhcpd with a 24 s lease (dnsmasq will not go below
120 s).  The station's uplink is configured by a daemonised dhclient (as ifupdown runs it:
its own -pf/-lf/-cf, a script that only sets the address and logs each event with the
interface).  Setup must hand it to the bridge, the host must keep its address through
several lease times with renewals on the bridge, and teardown must give dhclient back to the
uplink.  A second test fails the hand-off on purpose and checks setup rolls everything back.
Only processes whose command line names this test's temporary directory are ever killed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from harness import Controller, wait_for, wlbridge
from managers import (
    CONF,
    LEASE,
    SCRIPT,
    addr_info,
    assert_back_on_uplink,
    assert_handed_off,
    assert_rolled_back,
    bridges,
    ours,
    processes,
    renewals,
    replace_step,
    routes_to,
    setup_in_process,
    stand_in_route,
    udhcpd,
)


def kill_ours(workdir: Path) -> None:
    for pid, _ in ours(workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Uplink:
    """The station's uplink under a daemonised dhclient (ifupdown style)."""

    def __init__(self, world, workdir: Path) -> None:
        self.world = world
        self.dir = workdir
        self.events = workdir / "events"
        script = workdir / "dhclient-script"
        self.route = stand_in_route(world)
        script.write_text(SCRIPT.replace("{events}", str(self.events))
                          .replace("{route}", str(self.route)))
        script.chmod(0o755)
        (workdir / "dhclient.conf").write_text(CONF)
        self.argv = ["dhclient", "-4", "-v", "-pf", str(workdir / "dhclient.pid"),
                     "-lf", str(workdir / "dhclient.leases"), "-cf",
                     str(workdir / "dhclient.conf"), "-sf", str(script), world.uplink]

    def start(self) -> str:
        self.world.station.flush_addr()
        subprocess.run(self.argv, check=True, timeout=30, capture_output=True)
        ip = wait_for(lambda: self.world.station.ip, timeout=10, what="a lease on the uplink")
        return ip

    def clients(self) -> list[list[str]]:
        return [argv for _, argv in ours(self.dir) if argv and argv[0] == "dhclient"]

    def renewals(self, iface: str, since: float = 0) -> list[str]:
        return renewals(self.events, iface, since)


@pytest.fixture
def dhcp_lan(make_world, tmp_path):
    world = make_world(n_guests=0, dhcp=False)
    udhcpd(world, tmp_path)
    uplink = Uplink(world, tmp_path)
    yield world, uplink
    kill_ours(tmp_path)


def test_dhclient_handed_to_bridge_and_back(dhcp_lan, tmp_path):
    world, uplink = dhcp_lan
    ip = uplink.start()
    peer = world.peers[0]
    assert world.station.ping(peer.addr, src=ip)
    original = uplink.clients()
    assert original == [uplink.argv], original
    assert len(routes_to(uplink.route)) == 1 and world.uplink in routes_to(uplink.route)[0]

    ra_before = Path(f"/proc/sys/net/ipv6/conf/{world.uplink}/accept_ra").read_text()
    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    state_dir = tmp_path / "state"
    try:
        res = wlbridge("setup", "--uplink", world.uplink, "--bridge", ctl.bridge,
                       "--datapath", "netdev", "--controller", f"tcp:127.0.0.1:{ctl.of_port}",
                       "--state-dir", str(state_dir))
        ctl.is_set_up = True
        assert "address manager: dhclient on" in res.stdout, res.stdout
        # the uplink's client is stopped, one runs on the bridge with its files in state_dir
        clients = uplink.clients()
        assert uplink.argv not in clients
        assert len(clients) == 1 and clients[0][-1] == ctl.bridge, clients
        assert str(state_dir) in " ".join(clients[0]) and "-nw" in clients[0]
        assert addr_info(world.uplink) == []
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]

        started = time.time()
        ctl.start()
        # renewed on the bridge, again and again, for three lease times
        time.sleep(3 * LEASE + 4)
        renewals = uplink.renewals(ctl.bridge, since=int(started))
        assert len(renewals) >= 4, uplink.events.read_text()
        assert all(r.split()[3] == ip for r in renewals), renewals
        assert_handed_off(world, ctl, ip, uplink.route, f"dhclient on {ctl.bridge}",
                          exact=False)
        accept_ra = [Path(f"/proc/sys/net/ipv6/conf/{dev}/accept_ra").read_text()
                     for dev in (world.uplink, ctl.bridge)]
        # the bridge takes RAs as the uplink did, the uplink none (teardown gives them back)
        assert accept_ra == ["0\n", ra_before], (accept_ra, ra_before)
        shown = wlbridge("status", "--url", f"http://127.0.0.1:{ctl.status_port}").stdout
        assert f"managed by dhclient on {ctl.bridge}" in shown and "lease ends in" in shown
    finally:
        ctl.stop()
        res = wlbridge("teardown", "--bridge", ctl.bridge, check=False)
        ctl.is_set_up = False
    assert res.returncode == 0, res.stdout + res.stderr
    # dhclient manages the uplink again: the same command line, renewing there
    assert wait_for(lambda: uplink.clients() == [uplink.argv], timeout=10,
                    what=f"the original dhclient back: {uplink.clients()}")
    back = time.time()
    assert [a["local"] for a in addr_info(world.uplink)] == [ip]
    assert wait_for(lambda: uplink.renewals(world.uplink, since=int(back)), timeout=LEASE + 10,
                    what="a renewal on the uplink after teardown")
    assert_back_on_uplink(world, ip, uplink.route)
    assert not [argv for _, argv in ours(state_dir)], "the bridge's dhclient still runs"
    assert Path(f"/proc/sys/net/ipv6/conf/{world.uplink}/accept_ra").read_text() == ra_before


def test_failed_handoff_rolls_back(dhcp_lan, tmp_path, monkeypatch):
    world, uplink = dhcp_lan
    ip = uplink.start()
    bridge = f"{world.prefix}-br"

    def broken_start(host, argv, pidfile):
        raise RuntimeError("simulated failure starting the bridge's client")

    replace_step(monkeypatch, "start", broken_start)
    try:
        rc, out = setup_in_process(world, bridge, tmp_path / "state")
        monkeypatch.undo()
        assert_rolled_back(rc, out, bridge)
        # the host keeps its address on the uplink, the bridge is gone, dhclient is back
        assert [a["local"] for a in addr_info(world.uplink)] == [ip]
        assert not addr_info(bridge)
        assert wait_for(lambda: uplink.clients() == [uplink.argv], timeout=10,
                        what=f"the original dhclient back: {uplink.clients()}")
        assert world.station.ping(world.peers[0].addr, src=ip)
    finally:
        monkeypatch.undo()
        wlbridge("teardown", "--bridge", bridge, check=False)      # only if the test failed


DHCPCD_SCRIPT = """#!/bin/sh
# dhcpcd -c script (test tooling): dhcpcd configures the address itself; this only logs.
echo "$(date +%s) $reason $interface ${new_ip_address:-} ${new_dhcp_lease_time:-}" >> {events}
exit 0
"""


def dhcpcd_manager() -> list[int]:
    """PIDs of running dhcpcd managers (process title ``dhcpcd: [manager] ...``)."""
    return [pid for pid, argv in processes() if argv[:1] and argv[0].startswith("dhcpcd: [manager]")]


def test_dhcpcd_manager_is_detected_and_refused(make_world, tmp_path):
    """A real dhcpcd manager (limited to this test's interfaces, hooks replaced by a logging
    script) on the uplink: setup names it, refuses in one line, changes nothing.  Nothing is
    ever sent to the manager: dhcpcd 9.4.1's `dhcpcd -n IFACE` replaces a manager's options
    (a manager limited by allowinterfaces then took every interface of this machine)."""
    if not shutil.which("dhcpcd"):
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            "dhcpcd is not installed (Debian: dhcpcd-base)")
    if dhcpcd_manager():
        pytest.fail("a dhcpcd manager already runs on this machine: not ours to touch")
    resolv = Path("/etc/resolv.conf").read_bytes()     # dhcpcd's hooks must not run here
    world = make_world(n_guests=0, dhcp=False)
    udhcpd(world, tmp_path)
    events = tmp_path / "events"
    script = tmp_path / "dhcpcd-script"
    script.write_text(DHCPCD_SCRIPT.replace("{events}", str(events)))
    script.chmod(0o755)
    conf = tmp_path / "dhcpcd.conf"
    # nodev: no udev here (dhcpcd would wait for it forever); noarp: no 6 s of ARP probing
    conf.write_text(f"allowinterfaces {world.prefix}-*\nnodev\nnoarp\nnoipv4ll\nnoipv6\n"
                    "noipv6rs\n")
    world.station.flush_addr()
    subprocess.run(["dhcpcd", "-4", "-b", "-f", str(conf), "-c", str(script)], check=True,
                   timeout=30, capture_output=True)
    managers = dhcpcd_manager()
    bridge = f"{world.prefix}-br"
    try:
        assert len(managers) == 1, processes()
        ip = wait_for(lambda: world.station.ip, timeout=20, what="a dhcpcd lease on the uplink")
        res = wlbridge("setup", "--uplink", world.uplink, "--bridge", bridge, "--datapath",
                       "netdev", "--controller", "tcp:127.0.0.1:1", "--state-dir",
                       str(tmp_path / "state"), check=False)
        assert res.returncode == 2, res.stdout + res.stderr
        err = res.stderr.strip()
        assert "\n" not in err and f"dhcpcd (PID {managers[0]})" in err, err
        assert "nothing changed" in err and "--address-manager keep" in err, err
        assert [a["local"] for a in addr_info(world.uplink)] == [ip]
        assert bridge not in bridges()
        assert dhcpcd_manager() == managers
    finally:
        wlbridge("teardown", "--bridge", bridge, check=False)
        for pid in managers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for lease in Path("/var/lib/dhcpcd").glob(f"{world.prefix}-*"):
            lease.unlink()
    assert Path("/etc/resolv.conf").read_bytes() == resolv


def test_setup_names_a_packet_socket_reading_eapol_on_the_uplink():
    """A real AF_PACKET socket for ETH_P_PAE bound to the uplink (what wpa_supplicant opens
    without nl80211's control port): setup finds it in /proc/net/packet, names its owner
    (this process), and says what to do for the kernel datapath."""
    import socket

    from setup_station import station

    with station() as lan, socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                         socket.htons(0x888E)) as eapol:
        eapol.bind((lan.uplink, 0x888E))
        try:
            rc, out = lan.run("setup")
            assert rc == 0, out
            line = next(ln for ln in out.splitlines() if "EAPOL:" in ln)
            assert f"PID {os.getpid()} reads EAPOL from a packet socket on {lan.uplink}" in line
            assert f"-b {lan.bridge}" in out          # the advice, for the kernel datapath
        finally:
            lan.run("teardown")


def test_reassociation_renews_the_bridges_dhclient_at_once(dhcp_lan, tmp_path):
    """Issue 13 item 4: the uplink's carrier comes back (a reassociation, a roam) and the
    dhclient setup started on the bridge confirms its lease at once (INIT-REBOOT: its script
    sees REBOOT, not the RENEW due at half the lease), as it would have on the uplink; the
    host keeps its address throughout."""
    world, uplink = dhcp_lan
    ip = uplink.start()
    peer = world.peers[0]
    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    try:
        wlbridge("setup", "--uplink", world.uplink, "--bridge", ctl.bridge, "--datapath",
                 "netdev", "--controller", f"tcp:127.0.0.1:{ctl.of_port}", "--state-dir",
                 str(tmp_path / "state"))
        ctl.is_set_up = True
        ctl.start()
        wait_for(lambda: uplink.renewals(ctl.bridge), timeout=LEASE + 10,
                 what="the bridge's dhclient to get its lease")
        [(pid, argv)] = [(p, a) for p, a in ours(tmp_path) if a[:1] == ["dhclient"]]
        assert argv[-1] == ctl.bridge, argv

        world.set_station_carrier(False)
        wait_for(lambda: "lost its carrier" in ctl.logs(), timeout=15,
                 what=f"the controller to see the carrier go:\n{ctl.logs()[-2000:]}")

        def reboots() -> list[str]:
            return [r for r in uplink.renewals(ctl.bridge) if r.split()[1] == "REBOOT"]

        before = len(reboots())      # setup's start on the bridge
        world.set_station_carrier(True)
        [confirmed] = wait_for(lambda: reboots()[before:], timeout=LEASE,
                               what=f"a REBOOT on the bridge:\n{ctl.logs()[-2000:]}")
        assert confirmed.split()[3] == ip, confirmed
        clients = [(p, a) for p, a in ours(tmp_path) if a[:1] == ["dhclient"]]
        assert [a for _, a in clients] == [argv] and clients[0][0] != pid, clients
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]
        assert world.station.ping(peer.addr, src=ip)
        # logged once the new client's pid file names it (the REBOOT may come first)
        wait_for(lambda: "uplink reassociated: dhclient on" in ctl.logs(), timeout=10,
                 what=f"the renewal logged:\n{ctl.logs()[-2000:]}")
    finally:
        ctl.close()


def test_recreated_uplink_renews_the_bridges_dhclient(dhcp_lan, tmp_path):
    """Issue 13 item 4: the uplink interface deleted and created again (a Wi-Fi driver
    reload) is a reassociation too: once the controller has re-plugged the new interface,
    the dhclient setup started on the bridge confirms its lease at once (its script sees
    REBOOT, not the RENEW due at half the lease) and gets the same address, through the new
    interface."""
    world, uplink = dhcp_lan
    ip = uplink.start()
    peer = world.peers[0]
    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    try:
        wlbridge("setup", "--uplink", world.uplink, "--bridge", ctl.bridge, "--datapath",
                 "netdev", "--controller", f"tcp:127.0.0.1:{ctl.of_port}", "--state-dir",
                 str(tmp_path / "state"))
        ctl.is_set_up = True
        ctl.start()
        wait_for(lambda: uplink.renewals(ctl.bridge), timeout=LEASE + 10,
                 what="the bridge's dhclient to get its lease")
        [(pid, argv)] = [(p, a) for p, a in ours(tmp_path) if a[:1] == ["dhclient"]]

        def reboots() -> list[str]:
            return [r for r in uplink.renewals(ctl.bridge) if r.split()[1] == "REBOOT"]

        before = len(reboots())      # setup's start on the bridge
        world.recreate_station_link(gap=0.5)
        # well before the RENEW due at half the lease (12 s): the re-plug takes < 2 s
        [confirmed] = wait_for(lambda: reboots()[before:], timeout=LEASE / 2 - 2,
                               what=f"a REBOOT on the bridge:\n{ctl.logs()[-3000:]}")
        assert confirmed.split()[3] == ip, confirmed
        def restarted() -> list:
            """Our dhclients, once exactly one runs and it is not the one before the
            re-plug (the re-creation and the carrier's return may each restart it: the
            second stop can come just after the first REBOOT -- seen once under load)."""
            found = [(p, a) for p, a in ours(tmp_path) if a[:1] == ["dhclient"]]
            return found if len(found) == 1 and found[0][0] != pid else []

        clients = wait_for(restarted, timeout=10, what="one new dhclient on the bridge")
        assert [a for _, a in clients] == [argv], clients
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]
        assert addr_info(world.uplink) == []
        assert world.station.ping(peer.addr, src=ip)
        # logged once the new client's pid file names it (the REBOOT may come first)
        wait_for(lambda: "uplink re-created: dhclient on" in ctl.logs(), timeout=10,
                 what=f"the renewal logged:\n{ctl.logs()[-3000:]}")
        logs = ctl.logs()
        assert "re-plugged" in logs or "is back" in logs, logs[-3000:]
    finally:
        ctl.close()


# ---- dhcpcd, one instance for the uplink (Debian 12's dhcpcd-base 9.4.1) ----------------
DHCPCD_HOOKS = """#!/bin/sh
# dhcpcd `script` (test tooling): every event logged with the interface, then dhcpcd's own
# hooks (resolv.conf, hostname, ...) as Debian runs them.
echo "$(date +%s) $reason $interface ${new_ip_address:-} ${new_dhcp_lease_time:-}" >> {events}
. /lib/dhcpcd/dhcpcd-run-hooks
"""

DHCPCD_CONTAINED = """
# added by the test: this test's interfaces only, its hooks script; no udev in these
# containers (dhcpcd would wait for it), no ARP probing, IPv4 only
allowinterfaces {prefix}-*
script {script}
nodev
noarp
noipv4ll
noipv6
noipv6rs
"""


def hle_prefix() -> str:
    """A free world prefix ``hle`` + 2 hex digits (dhcpcd's allowinterfaces names it)."""
    import secrets

    from topologies.cleanup import link_exists, root_ipv4_addresses
    from topologies.graph import subnet_for

    used = [ipaddress.ip_address(a) for a in root_ipv4_addresses()]
    for _ in range(100):
        prefix = "hle" + secrets.token_hex(1)
        if not any(ip in subnet_for(prefix) for ip in used) and not any(
                link_exists(f"{prefix}-{s}") for s in ("wl0", "br", "rtr", "ap")):
            return prefix
    raise RuntimeError("no free hle prefix")


class DhcpcdHost:
    """dhcpcd instances (``dhcpcd -4 -b IFACE``, as ifupdown runs it) in a mount and UTS
    namespace of their own: there /etc/dhcpcd.conf is Debian's with this test's limits
    (`DHCPCD_CONTAINED`) and /etc/resolv.conf a scratch copy, so dhcpcd's hooks never touch
    the machine's resolv.conf or hostname.  `wlbridge setup`/`teardown` run in it too (the
    instances they start are dhcpcd's with that configuration).  Run-time and lease files
    (/run/dhcpcd, /var/lib/dhcpcd) are the machine's: only this world's names are touched."""

    def __init__(self, world, workdir: Path) -> None:
        self.world, self.dir = world, workdir
        self.events = workdir / "dhcpcd-events"
        script = workdir / "dhcpcd-hooks"
        script.write_text(DHCPCD_HOOKS.replace("{events}", str(self.events)))
        script.chmod(0o755)
        self.conf = workdir / "dhcpcd.conf"
        self.conf.write_text(Path("/etc/dhcpcd.conf").read_text() + DHCPCD_CONTAINED.replace(
            "{prefix}", world.prefix).replace("{script}", str(script)))
        self.resolv = workdir / "resolv.conf"
        self.resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c",
             (f"mount --bind {self.conf} /etc/dhcpcd.conf && "
             f"mount --bind {self.resolv} /etc/resolv.conf && exec sleep 100000")])
        wait_for(lambda: Path(f"/proc/{self.holder.pid}/cmdline").read_bytes()
                 .startswith(b"sleep"), timeout=5, what="the namespace holder")
        self.ns = ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "--"]
        # dhcpcd creates its DUID (Debian's `duid` option) if the machine has none: ours then
        self.duid = Path("/var/lib/dhcpcd/duid")
        self.had_duid = self.duid.exists()

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(self.ns + list(argv), capture_output=True, text=True, timeout=60,
                             check=False)
        if check and res.returncode:
            raise AssertionError(f"{' '.join(argv)}: {res.returncode}\n{res.stdout}{res.stderr}")
        return res

    def wlbridge(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        from harness import CLI

        return self.run(*CLI, *args, check=check)

    def instances(self) -> dict[str, int]:
        """Running dhcpcd instances of this world: {interface: PID}."""
        found = {}
        for pid, argv in processes():
            words = " ".join(argv).split()
            if words[:1] == ["dhcpcd:"] and len(words) > 1 and \
                    words[1].startswith(f"{self.world.prefix}-"):
                found[words[1]] = pid
        return found

    def renewals(self, iface: str, since: float = 0) -> list[str]:
        return renewals(self.events, iface, since)

    def close(self) -> None:
        for iface in list(self.instances()):
            subprocess.run(["dhcpcd", "-4", "-x", iface], capture_output=True, timeout=30,
                           check=False)
        wait_for(lambda: not self.instances(), timeout=10, what="our dhcpcd instances to end")
        self.holder.kill()
        self.holder.wait()
        for path in [*Path("/var/lib/dhcpcd").glob(f"{self.world.prefix}-*"),
                     *Path("/run/dhcpcd").glob(f"{self.world.prefix}-*"),
                     *Path("/run/dhcpcd/hook-state").glob(f"*/{self.world.prefix}-*")]:
            path.unlink()
        if not self.had_duid:
            self.duid.unlink(missing_ok=True)


def test_dhcpcd_instance_handed_to_bridge_and_back(make_world, tmp_path):
    """Issue 13 item 2 with Debian 12's dhcpcd: the uplink configured by a per-interface
    dhcpcd (``dhcpcd -4 -b IFACE``, Debian's configuration, its hooks on a scratch
    resolv.conf), a 24 s lease with DNS and a classless static route (so no default route
    through the test LAN).  Setup stops the uplink's instance before the addresses move and
    starts one on the bridge asking for the address; for three lease times the host keeps
    the address, renewed on the bridge, its route and DNS; teardown gives dhcpcd back to the
    uplink.  A reassociation (carrier down, up) makes the bridge's instance rebind at once.
    The machine's /etc/resolv.conf and hostname never change."""
    if not shutil.which("dhcpcd"):
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            "dhcpcd is not installed (Debian: dhcpcd-base)")
    if dhcpcd_manager():
        pytest.fail("a dhcpcd manager already runs on this machine: not ours to touch")
    import socket

    resolv, hostname = Path("/etc/resolv.conf").read_bytes(), socket.gethostname()
    world = make_world(n_guests=0, dhcp=False, prefix=hle_prefix())
    router = world.subnet.network_address + 1
    route = stand_in_route(world)
    udhcpd(world, tmp_path, extra=f"option dns {router}\noption staticroutes {route} {router}\n")
    host = DhcpcdHost(world, tmp_path)
    peer = world.peers[0]
    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    try:
        world.station.flush_addr()
        host.run("dhcpcd", "-4", "-b", world.uplink)
        ip = wait_for(lambda: world.station.ip, timeout=20, what="a dhcpcd lease on the uplink")
        assert list(host.instances()) == [world.uplink]
        assert world.station.ping(peer.addr, src=ip)
        assert len(routes_to(route)) == 1 and world.uplink in routes_to(route)[0]
        assert f"nameserver {router}" in host.resolv.read_text()      # its hooks ran

        res = host.wlbridge("setup", "--uplink", world.uplink, "--bridge", ctl.bridge,
                            "--datapath", "netdev", "--controller",
                            f"tcp:127.0.0.1:{ctl.of_port}", "--state-dir",
                            str(tmp_path / "state"))
        ctl.is_set_up = True
        assert "address manager: dhcpcd on" in res.stdout, res.stdout
        assert list(host.instances()) == [ctl.bridge], (host.instances(), res.stdout)
        assert addr_info(world.uplink) == []
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]

        started = time.time()
        ctl.start()
        time.sleep(3 * LEASE + 4)
        renewals = host.renewals(ctl.bridge, since=int(started))
        assert len(renewals) >= 4, host.events.read_text()
        assert all(r.split()[3] == ip for r in renewals), renewals
        assert_handed_off(world, ctl, ip, route, f"dhcpcd on {ctl.bridge}", lease=False)
        assert f"nameserver {router}" in host.resolv.read_text()      # DNS kept

        # a reassociation: the bridge's instance rebinds at once (issue 13 item 4);
        # RECONFIGURE comes only from that (its RENEWs come every 12 s anyway)
        def reconfigured() -> list[str]:
            lines = host.events.read_text().splitlines()
            return [ln for ln in lines if ln.split()[1:3] == ["RECONFIGURE", ctl.bridge]]

        world.set_station_carrier(False)
        wait_for(lambda: "lost its carrier" in ctl.logs(), timeout=15,
                 what=f"the controller to see the carrier go:\n{ctl.logs()[-2000:]}")
        assert not reconfigured()
        world.set_station_carrier(True)
        [line] = wait_for(reconfigured, timeout=10,
                          what=f"dhcpcd on the bridge to rebind:\n{ctl.logs()[-2000:]}")
        assert line.split()[3] == ip, line
        wait_for(lambda: "uplink reassociated: dhcpcd on" in ctl.logs(), timeout=10,
                 what=f"the rebind logged:\n{ctl.logs()[-2000:]}")
        assert wait_for(lambda: world.station.ping(peer.addr, src=ip, count=1, timeout=0.5),
                        timeout=10, what="the host on the LAN again")
    finally:
        ctl.stop()
        res = host.wlbridge("teardown", "--bridge", ctl.bridge, check=False)
        ctl.is_set_up = False
        try:
            assert res.returncode == 0, res.stdout + res.stderr
            assert wait_for(lambda: list(host.instances()) == [world.uplink], timeout=10,
                            what=f"dhcpcd back on the uplink: {host.instances()}")
            back = time.time()
            assert wait_for(lambda: [a["local"] for a in addr_info(world.uplink)] == [ip],
                            timeout=10, what="the address back on the uplink")
            assert wait_for(lambda: host.renewals(world.uplink, since=int(back)),
                            timeout=LEASE + 10, what="a renewal on the uplink after teardown")
            assert_back_on_uplink(world, ip, route)
        finally:
            host.close()
    assert Path("/etc/resolv.conf").read_bytes() == resolv
    assert socket.gethostname() == hostname
