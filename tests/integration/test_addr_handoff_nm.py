"""Address hand-off with a real NetworkManager on the host's uplink (issue 13, item 2).

The test machines have no systemd as PID 1 and no udev daemon.  NetworkManager (Debian 12:
1.42) runs standalone here the way systemd-networkd does (test_addr_handoff_networkd.py):

* in a mount namespace of its own where /sys is read-only (a per-mount flag: the host's /sys
  is untouched), the container convention for "no udev here";
* on a private system D-Bus (``dbus-daemon`` with a copy of the system configuration that has
  no service directories: nothing is started by bus activation -- no nm-dispatcher running
  /etc/NetworkManager/dispatcher.d, no hostnamed, no polkit), reached through
  DBUS_SYSTEM_BUS_ADDRESS by nmcli and by wlbridge's detection and plan;
* with a configuration of its own (``--config``, empty ``--config-dir`` and
  ``--system-config-dir``, private ``--state-file``/``--intern-config``, keyfile profiles in the
  test's directory) that manages the test's uplink alone (``unmanaged-devices=*,except:...``),
  never writes /etc/resolv.conf (``dns=none``, ``rc-manager=unmanaged``) or the hostname, and
  checks no connectivity.  The uplink's profile never makes a default route
  (``never-default``); the router's route to a test-only prefix stands in for it.

NetworkManager's compiled-in directories /run/NetworkManager and /var/lib/NetworkManager get
files (device state, DHCP lease, timestamps): the ones it did not have before are removed.
NetworkManager and the bus are stopped by PID.

wlbridge's own dhclient on the bridge (what the NetworkManager plan starts) runs with the
test's dhclient script (managers.SCRIPT: the address and the test route only), never
Debian's dhclient-script, which would add a default route and could rewrite
/etc/resolv.conf on this shared machine; the rest of its command line is the plan's.

The LAN's DHCP server is busybox udhcpd with a 24 s lease; its log ("sending ACK to ...")
proves renewals, the script's events say on which interface.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

from harness import Controller, wait_for, wlbridge
from managers import (
    CONF,
    LEASE,
    SCRIPT,
    StandaloneDaemon,
    addr_info,
    assert_back_on_uplink,
    assert_handed_off,
    assert_rolled_back,
    ours,
    renewals,
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

BUS_CONFIG = Path("/usr/share/dbus-1/system.conf")
NM_DIRS = (Path("/run/NetworkManager"), Path("/var/lib/NetworkManager"))


def private_bus_config(text: str) -> str:
    """The system bus configuration without service directories (no bus activation) and
    with its relative include directory made absolute (the copy lives elsewhere)."""
    out = []
    for line in text.splitlines():
        if "<standard_system_servicedirs/>" in line or "<servicedir>" in line:
            continue
        out.append(line.replace("<includedir>system.d</includedir>",
                                f"<includedir>{BUS_CONFIG.parent}/system.d</includedir>"))
    return "\n".join(out) + "\n"


def nm_config(workdir: Path, uplink: str) -> str:
    return (f"# wlbridge integration test (tests/integration/test_addr_handoff_nm.py)\n"
            "[main]\nplugins=keyfile\nno-auto-default=*\ndns=none\nrc-manager=unmanaged\n"
            "hostname-mode=none\nauth-polkit=false\n\n"
            f"[keyfile]\npath={workdir / 'connections'}\n"
            f"unmanaged-devices=*,except:interface-name:{uplink}\n\n"
            "[connectivity]\nenabled=false\n\n[logging]\nlevel=DEBUG\n"
            "domains=PLATFORM:INFO,DHCP4:DEBUG,IP4:DEBUG,DEVICE:DEBUG,CORE:DEBUG\n")


def nm_profile(uplink: str, route: ipaddress.IPv4Network, router: str) -> str:
    """The uplink's profile: DHCPv4, no default route, the router's route to a test prefix."""
    return (f"[connection]\nid=nmh-{uplink}\nuuid={uuid.uuid4()}\ntype=ethernet\n"
            f"interface-name={uplink}\nautoconnect=true\n\n[ethernet]\n\n"
            f"[ipv4]\nmethod=auto\nnever-default=true\nroute1={route},{router}\n\n"
            "[ipv6]\nmethod=ignore\n")


class NetworkManager(StandaloneDaemon):
    """A private system D-Bus and NetworkManager, started and stopped by this test; what it
    wrote in its compiled-in directories (`NM_DIRS`) removed."""

    name = "NetworkManager"
    stop_timeout = 15.0

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "nmh-bus-", NM_DIRS)

    def start(self, uplink: str, profile: str) -> None:
        conf = self.dir / "nmh-bus.conf"
        conf.write_text(private_bus_config(BUS_CONFIG.read_text()))
        self.bus.start(conf, self.name)
        for sub in ("connections", "conf.d", "system-conf.d"):
            (self.dir / sub).mkdir(mode=0o700)
        (self.dir / "NetworkManager.conf").write_text(nm_config(self.dir, uplink))
        keyfile = self.dir / "connections" / f"nmh-{uplink}.nmconnection"
        keyfile.write_text(profile)
        keyfile.chmod(0o600)
        argv = [shutil.which("NetworkManager") or "NetworkManager", "--no-daemon", "--debug",
                f"--config={self.dir / 'NetworkManager.conf'}",
                f"--config-dir={self.dir / 'conf.d'}",
                f"--system-config-dir={self.dir / 'system-conf.d'}",
                f"--intern-config={self.dir / 'NetworkManager-intern.conf'}",
                f"--state-file={self.dir / 'NetworkManager.state'}",
                f"--pid-file={self.dir / 'NetworkManager.pid'}"]
        self.launch(argv, self.dir / "NetworkManager.log",
                    lambda: self.nmcli("-t", "general", "status", check=False).returncode == 0,
                    timeout=20)

    def nmcli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.client("nmcli", *args, check=check)

    def device(self, ifname: str) -> dict[str, str]:
        res = self.nmcli("-t", "-f", "GENERAL.STATE,GENERAL.CONNECTION,IP4.ADDRESS",
                         "device", "show", ifname, check=False)
        return dict(ln.split(":", 1) for ln in res.stdout.splitlines() if ":" in ln)


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def machine_devices() -> list[str]:
    """The devices of the machine's own default routes (other tests come and go)."""
    words = _run("ip", "-4", "route", "show", "default").split()
    return sorted({words[i + 1] for i, w in enumerate(words[:-1]) if w == "dev"})


def machine_network(devices: list[str]) -> list[str]:
    """What must never change: the machine's routes, its policy rules, /etc/resolv.conf."""
    found = [_run("ip", "rule"), Path("/etc/resolv.conf").read_text()]
    for dev in devices:
        found += [_run("ip", "-4", "route", "show", "dev", dev),
                  _run("ip", "-6", "route", "show", "dev", dev)]
    return found


@pytest.fixture
def nm_lan(make_world, tmp_path, monkeypatch):
    """A LAN whose station uplink NetworkManager configures (DHCPv4 from udhcpd, 24 s
    leases): (NetworkManager, world, the leased address, the router's test route)."""
    NetworkManager.check_can_run("NetworkManager", ("NetworkManager", "nmcli", "dbus-daemon",
                                                    "unshare"), "network-manager, dbus-daemon")
    devices = machine_devices()
    before = machine_network(devices)
    world = make_world(n_guests=0, dhcp=False)
    udhcpd(world, tmp_path)
    route = stand_in_route(world)
    router = str(world.subnet.network_address + 1)
    world.station.flush_addr()
    nm = NetworkManager(tmp_path)
    try:
        nm.start(world.uplink, nm_profile(world.uplink, route, router))
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", nm.bus.address)   # for wlbridge's nmcli
        ip = wait_for(lambda: world.station.ip, timeout=30,
                      what=f"NetworkManager's lease on the uplink:\n{nm.logs()[-3000:]}")
        wait_for(lambda: nm.device(world.uplink).get("GENERAL.STATE", "").startswith("100"),
                 timeout=20, what=f"NetworkManager to activate {world.uplink}")
        wait_for(lambda: routes_to(route), timeout=10, what="the router's route")
        assert len(routes_to(route)) == 1 and world.uplink in routes_to(route)[0]
        assert world.station.ping(world.peers[0].addr, src=ip)
        yield nm, world, ip, route
    finally:
        nm.stop()
        assert machine_network(devices) == before, "the machine's routes or DNS changed"


def test_networkmanager_handed_to_bridge_and_back(nm_lan, tmp_path, monkeypatch):
    nm, world, ip, route = nm_lan
    script, ev = tmp_path / "dhclient-script", tmp_path / "events"
    # the address only: the router's route is the profile's (manual), which setup moves to
    # the bridge and which no DHCP client there knows
    router_route = SCRIPT[SCRIPT.index("    # the router option"):SCRIPT.index(" ;;\n", SCRIPT.index(
        "    # the router option"))]
    script.write_text(SCRIPT.replace(router_route, "   ").replace("{events}", str(ev)))
    script.chmod(0o755)
    real_argv = addr_handoff.bridge_dhclient_argv

    def with_test_script(cmd, uplink, bridge, files, family=4):
        argv = real_argv(cmd, uplink, bridge, files, family)
        return argv[:1] + ["-sf", str(script)] + argv[1:]

    monkeypatch.setattr(addr_handoff.dhclient, "bridge_dhclient_argv", with_test_script)
    # and the test's configuration for the base of its own (managers.CONF: retries
    # after 1-2 s, as the dhclient test's client; ISC's default first retry after ~10 s is
    # most of a 24 s lease's renewal window)
    conf = tmp_path / "dhclient.conf"
    conf.write_text(CONF)
    monkeypatch.setattr(addr_handoff.dhclient, "SYSTEM_DHCLIENT_CONF", str(conf))
    ctl = Controller(world, tmp_path / "ctl")
    (tmp_path / "ctl").mkdir()
    try:
        rc, out = setup_in_process(world, ctl.bridge, tmp_path / "state", ctl.of_port)
        ctl.is_set_up = True        # teardown also after a setup stopped half-way
        assert rc == 0, out + nm.logs()[-3000:]
        assert (f"address manager: dhclient on {ctl.bridge} (started by wlbridge setup; "
                f"NetworkManager keeps Wi-Fi) (was: NetworkManager (connection "
                f"nmh-{world.uplink}))") in out, out
        dev = nm.device(world.uplink)
        assert dev.get("GENERAL.CONNECTION") == f"nmh-{world.uplink}", dev   # still active
        assert addr_info(world.uplink) == [], nm.logs()[-3000:]
        assert [a["local"] for a in addr_info(ctl.bridge)] == [ip]

        started = time.time()
        acks = server_acks(world, ip)
        ctl.start()
        # renewed on the bridge, again and again, for three lease times
        time.sleep(3 * LEASE + 4)
        renewed = renewals(ev, ctl.bridge, since=int(started))
        assert len(renewed) >= 4, (ev.read_text() if ev.exists() else "no events") + \
            world.tmp_path("udhcpd.log").read_text()
        assert all(r.split()[3] == ip for r in renewed), renewed
        assert server_acks(world, ip) - acks >= 4, world.tmp_path("udhcpd.log").read_text()
        # NetworkManager kept off the uplink
        assert_handed_off(world, ctl, ip, route, f"dhclient on {ctl.bridge}", exact=False,
                          why=lambda: nm.logs()[-3000:])
    finally:
        ctl.stop()
        res = wlbridge("teardown", "--bridge", ctl.bridge, check=False)
        ctl.is_set_up = False
        for pid, _ in ours(tmp_path / "state"):     # the bridge's dhclient, if teardown failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    assert res.returncode == 0, res.stdout + res.stderr
    # NetworkManager configures the uplink again: same address, renewing there
    back = server_acks(world, ip)
    wait_for(lambda: [a["local"] for a in addr_info(world.uplink)] == [ip], timeout=LEASE,
             what=f"NetworkManager's address back on the uplink:\n{nm.logs()[-3000:]}")
    wait_acked_after(world, ip, back, "a renewal on the uplink after teardown")
    assert nm.device(world.uplink).get("GENERAL.STATE", "").startswith("100")
    assert 0 < addr_info(world.uplink)[0]["valid_life_time"] <= LEASE
    assert not ours(tmp_path / "state"), "the bridge's dhclient still runs"
    wait_for(lambda: routes_to(route), timeout=10, what="the router's route back")
    assert_back_on_uplink(world, ip, route)



def test_networkmanager_failed_handoff_rolls_back(nm_lan, tmp_path, monkeypatch):
    """The bridge's dhclient does not start, after NetworkManager was told to stop configuring
    the uplink: setup undoes the steps (`nmcli device reapply`), puts the address back on the
    uplink and removes the bridge; NetworkManager configures the uplink again, renewing."""
    nm, world, ip, route = nm_lan
    bridge = f"{world.prefix}-br"
    modified = []
    def record(host, argv, undo, done_if=None):
        real(host, argv, undo, done_if)
        if argv and argv[:3] == ["nmcli", "device", "modify"]:
            modified.append(nm.device(world.uplink))

    def broken_start(host, argv, pidfile):
        raise RuntimeError("simulated failure starting the bridge's client")

    real = replace_step(monkeypatch, "command", record)
    real_start = replace_step(monkeypatch, "start", broken_start)
    try:
        rc, out = setup_in_process(world, bridge, tmp_path / "state")
        assert modified, out                        # NetworkManager had been told
        assert_rolled_back(rc, out, bridge)
        back = server_acks(world, ip)
        wait_for(lambda: [a["local"] for a in addr_info(world.uplink)] == [ip], timeout=LEASE,
                 what=f"the address back on the uplink:\n{nm.logs()[-3000:]}")
        wait_acked_after(world, ip, back, "NetworkManager renewing on the uplink again")
        assert nm.device(world.uplink).get("GENERAL.STATE", "").startswith("100")
        assert 0 < addr_info(world.uplink)[0]["valid_life_time"] <= LEASE
        assert_back_on_uplink(world, ip, route)
    finally:
        restore_step(monkeypatch, "command", real)
        restore_step(monkeypatch, "start", real_start)
        wlbridge("teardown", "--bridge", bridge, check=False)      # only if the test failed
