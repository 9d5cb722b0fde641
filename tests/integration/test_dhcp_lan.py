"""DHCP through the one-MAC AP with real dnsmasq and real clients (issue #4).

ISC dhclient never sets the BOOTP broadcast flag and busybox udhcpc without ``-B`` neither:
without wlbridge the server's unicast OFFER to the guest's MAC dies at the AP (the control
test at the end).  With wlbridge every guest gets its own lease, renewals work, the host's
own DHCP on the bridge's internal port still works, and so does the ``client-id`` strategy.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time

from harness import ap_foreign, wait_for

LEASE = 300
SHORT_LEASE = 120  # dnsmasq's minimum


# ---------------------------------------------------------------- helpers

def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def diag(world, wl=None, n: int = 40) -> str:
    """What to read when a DHCP test fails: controller and dnsmasq logs, leases, clients."""
    parts = []
    if wl is not None:
        parts.append(f"--- controller log (tail) ---\n{_tail(wl.logs(), n)}")
        try:
            parts.append(f"--- controller counters ---\n{wl.counters()}")
        except OSError as exc:
            parts.append(f"--- controller status unavailable: {exc}")
    parts.append(f"--- dnsmasq log (tail) ---\n{_tail(world.dnsmasq_log(), n)}")
    parts.append(f"--- dnsmasq leases ---\n{world.leases()}")
    for g in world.guests:
        client = getattr(g, "_dhcp", None)
        out = _tail(client.output(), 15) if client is not None else "(no client)"
        parts.append(f"--- {g.name} {g.mac} ips={g.ips()} events={g.dhcp_events()}\n{out}")
    parts.append(f"--- AP counters ---\n{world.ap_counters()}")
    return "\n".join(parts)


def get_lease(world, wl, guest, client: str, **kw) -> str:
    ip = guest.dhcp(client, timeout=kw.pop("timeout", 20), **kw)
    assert ip, f"{guest.name} ({client}) got no address\n{diag(world, wl)}"
    return ip


def bound_by_dhcp(world, wl, guest, ip: str, lease: int) -> dict:
    """The status entry of ip: on the guest's port, learned from DHCP, with a lease end."""
    try:
        b = wl.wait_bound(ip, guest.port, timeout=10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: status {wl.status()['guests']}\n{diag(world, wl)}") from None
    assert b["source"] == "dhcp", (b, diag(world, wl))
    assert b["mac"] == guest.mac, b
    assert b["lease"] == lease, b
    assert b["expires"] is not None and 0 < b["expires_in"] <= lease, b
    return b


def assert_connectivity(world, wl, guests) -> None:
    peer = world.peers[0]
    for g in guests:
        assert g.ping(peer.ip, count=2), f"{g.name} -> peer failed\n{diag(world, wl)}"
        assert peer.ping(g.ip, count=2), f"peer -> {g.name} ({g.ip}) failed\n{diag(world, wl)}"
    for a in guests:
        for b in guests:
            if a is not b:
                assert a.ping(b.ip, count=2), f"{a.name} -> {b.name} failed\n{diag(world, wl)}"


def assert_no_foreign_frames(world, wl=None) -> None:
    assert ap_foreign(world) == 0, f"the AP saw foreign MACs\n{diag(world, wl)}"


# ---------------------------------------------------------------- tests

def test_dhclient_and_udhcpc_get_distinct_leases(make_world, wlbridge_on):
    world = make_world(static_guests=False, lease_time=LEASE)
    g1, g2 = world.guests
    wl = wlbridge_on(world)

    ip1 = get_lease(world, wl, g1, "dhclient")
    ip2 = get_lease(world, wl, g2, "udhcpc", broadcast=False)
    assert ip1 != ip2, diag(world, wl)
    # dnsmasq keyed each lease by the guest's own MAC (chaddr kept in broadcast mode)
    leases = {(lease.mac, lease.ip) for lease in world.leases()}
    assert leases == {(g1.mac, ip1), (g2.mac, ip2)}, diag(world, wl)

    for g, ip in ((g1, ip1), (g2, ip2)):
        bound_by_dhcp(world, wl, g, ip, LEASE)
    assert_connectivity(world, wl, [g1, g2])
    counters = wl.counters()
    assert counters.get("dhcp.ack.to_guest", 0) >= 2, counters
    # neither client asked for it: the controller set the broadcast flag for them
    assert "broadcast response" in world.dnsmasq_log(), _tail(world.dnsmasq_log())
    assert_no_foreign_frames(world, wl)


def test_renewals_move_the_lease_end_forward(make_world, wlbridge_on):
    world = make_world(static_guests=False, lease_time=SHORT_LEASE)
    g1, g2 = world.guests
    wl = wlbridge_on(world)
    ip1 = get_lease(world, wl, g1, "dhclient")
    ip2 = get_lease(world, wl, g2, "udhcpc", broadcast=False)
    first = {g.name: bound_by_dhcp(world, wl, g, ip, SHORT_LEASE)
             for g, ip in ((g1, ip1), (g2, ip2))}
    time.sleep(2)  # so that a renewed lease ends measurably later

    # dhclient restarted with its lease file: INIT-REBOOT, a broadcast REQUEST for ip1
    acks = wl.counters().get("dhcp.ack.to_guest", 0)
    g1.stop_dhcp()
    g1.dhclient()
    wait_for(lambda: any(e.startswith("REBOOT") for e in g1.dhcp_events()), timeout=20,
             what=f"dhclient's INIT-REBOOT on {g1.name}\n{diag(world, wl)}")
    # udhcpc's SIGUSR1: RENEWING, a unicast REQUEST (ciaddr set) to the server
    g2._dhcp.signal(signal.SIGUSR1)
    wait_for(lambda: any(e.startswith("renew") for e in g2.dhcp_events()), timeout=20,
             what=f"udhcpc's renewal on {g2.name}\n{diag(world, wl)}")
    assert wl.counters().get("dhcp.ack.to_guest", 0) >= acks + 2, diag(world, wl)

    for g, ip in ((g1, ip1), (g2, ip2)):
        assert g.ip == ip, f"{g.name} changed address\n{diag(world, wl)}"
        after = bound_by_dhcp(world, wl, g, ip, SHORT_LEASE)
        assert after["expires"] >= first[g.name]["expires"] + 1.5, (first[g.name], after)
    leases = {(lease.mac, lease.ip) for lease in world.leases()}
    assert leases == {(g1.mac, ip1), (g2.mac, ip2)}, diag(world, wl)
    assert_connectivity(world, wl, [g1, g2])
    assert_no_foreign_frames(world, wl)


ROOT_SCRIPT = """#!/bin/sh
# Records the lease only: configures nothing (this runs in the ROOT namespace).
echo "$reason ${new_ip_address:-}" >> %(events)s
exit 0
"""


def _root_net_state() -> dict:
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    return {"routes": out("ip", "-4", "route", "show", "table", "main"),
            "default6": out("ip", "-6", "route", "show", "default"),
            "eth0": out("ip", "-o", "addr", "show", "dev", "eth0"),
            "eth0_link": out("ip", "-o", "link", "show", "dev", "eth0")}


def test_host_dhclient_on_the_internal_port_gets_the_station_lease(make_world, wlbridge_on,
                                                                    tmp_path):
    world = make_world(static_guests=False, lease_time=LEASE)
    wl = wlbridge_on(world)
    station_mac = world.station.mac
    before = _root_net_state()

    files = tmp_path / "hostdhcp"
    files.mkdir()
    events, script = files / "events", files / "script"
    script.write_text(ROOT_SCRIPT % {"events": events})
    script.chmod(0o755)
    (files / "conf").write_text("timeout 20;\nretry 2;\ninitial-interval 1;\n"
                                "request subnet-mask;\n")
    argv = ["dhclient", "-4", "-d", "-v", "-cf", str(files / "conf"),
            "-lf", str(files / "leases"), "-pf", str(files / "pid"), "-sf", str(script),
            wl.bridge]
    client = world.start("host-dhclient", None, argv)  # root namespace; stopped below by PID
    try:
        def leased():
            return [lease for lease in world.leases() if lease.mac == station_mac]

        found = wait_for(leased, timeout=20,
                         what=f"a lease for the station MAC {station_mac}\n"
                              f"{_tail(client.output())}\n{diag(world, wl)}")
        assert len(found) == 1, found
        wait_for(lambda: events.exists() and "BOUND" in events.read_text(), timeout=10,
                 what=f"dhclient's BOUND\n{_tail(client.output())}")
        assert f"BOUND {found[0].ip}" in events.read_text(), events.read_text()
        counters = wl.counters()
        assert counters.get("dhcp.ack.to_host", 0) >= 1, counters
        # the host's lease binds nothing to a guest port
        assert wl.bound(found[0].ip) is None, wl.status()["guests"]
    finally:
        client.stop()
        assert not client.alive
    assert _root_net_state() == before, "the root namespace's routes or eth0 changed!"
    assert_no_foreign_frames(world, wl)


def test_client_id_strategy_gives_distinct_leases(make_world, wlbridge_on):
    world = make_world(static_guests=False, lease_time=LEASE)
    g1, g2 = world.guests
    wl = wlbridge_on(world, dhcp_mode="client-id")
    station_mac = world.station.mac

    ip1 = get_lease(world, wl, g1, "dhclient")
    ip2 = get_lease(world, wl, g2, "udhcpc", broadcast=False)
    assert ip1 != ip2, diag(world, wl)
    # dnsmasq saw only the station MAC as chaddr; the client identifiers tell the guests apart
    by_ip = {lease.ip: lease for lease in world.leases()}
    assert set(by_ip) == {ip1, ip2}, diag(world, wl)
    for g, ip in ((g1, ip1), (g2, ip2)):
        lease = by_ip[ip]
        assert lease.mac == station_mac, (lease, diag(world, wl))
        assert lease.client_id == f"01:{g.mac}", (lease, g.mac)
    seen = set(re.findall(r"DHCP[A-Z]+\(\w+\) (?:[\d.]+ )?([0-9a-f:]{17})", world.dnsmasq_log()))
    assert seen == {station_mac}, (seen, _tail(world.dnsmasq_log()))

    for g, ip in ((g1, ip1), (g2, ip2)):
        bound_by_dhcp(world, wl, g, ip, LEASE)
    assert_connectivity(world, wl, [g1, g2])
    assert_no_foreign_frames(world, wl)


def test_control_without_wlbridge_dhclient_gets_no_lease(make_world, ovs_bridge):
    """A plain NORMAL bridge: the AP drops the guest's frames (its MAC is not the station's)."""
    world = make_world(n_guests=1, static_guests=False)
    br = ovs_bridge()
    br.add_port(world.uplink)
    guest = world.guests[0]
    br.add_port(guest.port)
    br.normal()
    assert guest.dhcp("dhclient", timeout=10) is None, diag(world)
    assert world.leases() == [], diag(world)
    assert ap_foreign(world) > 0, world.ap_counters()
