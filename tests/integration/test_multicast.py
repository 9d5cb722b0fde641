"""Group traffic for guests through the AP (issue 12 item 7): delivered as it was sent.

Many APs turn group frames into unicast to the station MAC (``group_to_unicast``).  Then
wlbridge must restore each group's own MAC (01:00:5e + low 23 bits of an IPv4 group, 33:33 + low
32 bits of an IPv6 one) and subnet-directed broadcasts, or a guest's socket never sees them.
Guests join with real sockets (`topologies.mcast`: IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP, so their
kernels send IGMP/MLD reports); what arrives is captured inside the guest, MACs included.
Discovery (mDNS, SSDP) must work both ways between a guest and a LAN peer.
"""

from __future__ import annotations

import pytest
from harness import ap_foreign, wait_for

from topologies import capture_lines
from topologies.procs import wait_for as poll

MODES = [False, True]
MODE_IDS = ["ap_multicast", "ap_group_to_unicast"]


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def ip6_of(host) -> str:
    return host.addr6.split("/")[0]


def diag(world, wl) -> str:
    logs = [x[:300] for x in wl.logs().splitlines() if "DEBUG" not in x][-25:]
    return "\n".join([*logs, f"counters {wl.counters()}", f"AP {world.ap_counters()}"])


def start_tool(host, *args, timeout: float = 20):
    """`topologies.mcast` running in host's namespace, once its sockets are ready."""
    proc = host.popen(*host.mcast_argv("--timeout", str(timeout), *args))
    wait_for(lambda: "ready" in proc.output() or not proc.alive, timeout=10,
             what=f"{args[0]} on {host.name}")
    assert proc.alive, proc.output()
    return proc


def guest_capture(guest, bpf: str):
    """tcpdump inside a guest with link-level headers (-e), one line per frame."""
    return capture_lines(guest, "-e", *bpf.split())


def group_lines(cap, group: str) -> list[str]:
    """Captured frames (tcpdump -e lines) addressed to an IP group."""
    return [x for x in cap.output().splitlines() if f"> {group}." in x]


def assert_group_mac(cap, group: str, mac: str) -> None:
    """Every frame the guest got for `group` carried the group's own MAC."""
    wait_for(lambda: group_lines(cap, group), timeout=5, what=f"{group} in the capture")
    lines = group_lines(cap, group)
    assert all(f"> {mac}," in x for x in lines), lines


def send_until(sender, listeners, dst: str, port: int, payload: str, timeout: float = 10):
    """Send a datagram every 0.5 s until every listener printed it (or timeout); True if so."""
    def all_got():
        if all(payload in p.output() for p in listeners):
            return True
        sender.run(*sender.mcast_argv("send", dst, str(port), payload), timeout=10)
        return False

    return poll(all_got, timeout, interval=0.5)


# ---------------------------------------------------------------- groups


@pytest.mark.parametrize("ap_unicast", MODES, ids=MODE_IDS)
def test_ipv4_group_datagram_reaches_joined_guest_with_the_group_mac(make_world, wlbridge_on,
                                                                     ap_unicast):
    world = make_world(n_guests=2, group_to_unicast=ap_unicast)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    assert g1.ping(ip_of(peer)) and g2.ping(ip_of(peer))
    cap = guest_capture(g1, "udp port 5000")
    listener = start_tool(g1, "listen", "239.1.2.3", "5000")
    assert send_until(peer, [listener], "239.1.2.3", 5000, "to-group-v4"), diag(world, wl)
    assert_group_mac(cap, "239.1.2.3", "01:00:5e:01:02:03")
    assert ap_foreign(world) == 0, diag(world, wl)


@pytest.mark.parametrize("ap_unicast", MODES, ids=MODE_IDS)
def test_ipv6_group_datagram_reaches_joined_guest_with_the_group_mac(make_world, wlbridge_on,
                                                                     ap_unicast):
    world = make_world(n_guests=1, group_to_unicast=ap_unicast, ipv6=True, static_guests6=True)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    assert g1.wait_ip6(ip6_of(g1), timeout=10)
    cap = guest_capture(g1, "udp port 5000")
    listener = start_tool(g1, "listen", "ff15::1234", "5000")
    assert send_until(peer, [listener], "ff15::1234", 5000, "to-group-v6"), diag(world, wl)
    assert_group_mac(cap, "ff15::1234", "33:33:00:00:12:34")
    assert ap_foreign(world) == 0, diag(world, wl)


@pytest.mark.parametrize("ap_unicast", MODES, ids=MODE_IDS)
def test_subnet_directed_broadcast_reaches_every_guest(make_world, wlbridge_on, ap_unicast):
    world = make_world(n_guests=2, group_to_unicast=ap_unicast)
    peer = world.peers[0]
    wl = wlbridge_on(world)
    bcast = str(world.subnet.broadcast_address)
    caps = [guest_capture(g, "udp port 5001") for g in world.guests]
    listeners = [start_tool(g, "listen", "0.0.0.0", "5001") for g in world.guests]
    assert send_until(peer, listeners, bcast, 5001, "to-subnet"), \
        ([p.output() for p in listeners], diag(world, wl))
    for g, cap in zip(world.guests, caps):
        wait_for(lambda c=cap: f"{bcast}.5001" in c.output(), timeout=5, what="the capture")
        lines = [x for x in cap.output().splitlines() if f"{bcast}.5001" in x]
        assert all("> ff:ff:ff:ff:ff:ff," in x for x in lines), (g.name, lines)
    assert ap_foreign(world) == 0, diag(world, wl)


# ---------------------------------------------------------------- discovery


def discovery_world(make_world, family: int):
    """One guest behind a converting AP; IPv6 on only for the IPv6 case (so that the IPv4
    case's AP check is about IPv4 discovery alone)."""
    world = make_world(n_guests=1, group_to_unicast=True, ipv6=family == 6,
                       static_guests6=family == 6)
    if family == 6:
        assert world.guests[0].wait_ip6(ip6_of(world.guests[0]), timeout=10)
    return world


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_mdns_discovery_both_ways_through_a_converting_ap(make_world, wlbridge_on, family):
    world = discovery_world(make_world, family)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    addr = {4: ip_of, 6: ip6_of}[family]
    fam = f"-{family}"
    cap = guest_capture(g1, "udp port 5353")
    # the peer finds the guest ...
    start_tool(g1, fam, "mdns-respond", "guest1.local", addr(g1))
    res = peer.run(*peer.mcast_argv(fam, "--timeout", "8", "mdns-query", "guest1.local"),
                   timeout=20)
    assert f"answer {addr(g1)}" in res.stdout, (res.stdout, diag(world, wl))
    # ... and the guest finds the peer
    start_tool(peer, fam, "mdns-respond", "peer1.local", addr(peer))
    res = g1.run(*g1.mcast_argv(fam, "--timeout", "8", "mdns-query", "peer1.local"), timeout=20)
    assert f"answer {addr(peer)}" in res.stdout, (res.stdout, diag(world, wl))
    # queries and answers reached the guest with the mDNS group's MAC
    group, mac = {4: ("224.0.0.251", "01:00:5e:00:00:fb"), 6: ("ff02::fb", "33:33:00:00:00:fb")}[
        family]
    assert_group_mac(cap, group, mac)
    assert ap_foreign(world) == 0, diag(world, wl)


@pytest.mark.parametrize("family", [4, 6], ids=["ipv4", "ipv6"])
def test_ssdp_discovery_both_ways_through_a_converting_ap(make_world, wlbridge_on, family):
    world = discovery_world(make_world, family)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    fam = f"-{family}"
    st = "urn:schemas-upnp-org:device:MediaRenderer:1"
    cap = guest_capture(g1, "udp port 1900")
    start_tool(g1, fam, "ssdp-respond", st, "http://guest1/desc.xml")
    res = peer.run(*peer.mcast_argv(fam, "--timeout", "8", "ssdp-search", st), timeout=20)
    assert "answer http://guest1/desc.xml" in res.stdout, (res.stdout, diag(world, wl))
    start_tool(peer, fam, "ssdp-respond", st, "http://peer1/desc.xml")
    res = g1.run(*g1.mcast_argv(fam, "--timeout", "8", "ssdp-search", st), timeout=20)
    assert "answer http://peer1/desc.xml" in res.stdout, (res.stdout, diag(world, wl))
    # the peer's M-SEARCH reached the guest with the SSDP group's MAC
    group, mac = {4: ("239.255.255.250", "01:00:5e:7f:ff:fa"),
                  6: ("ff02::c", "33:33:00:00:00:0c")}[family]
    assert_group_mac(cap, group, mac)
    assert ap_foreign(world) == 0, diag(world, wl)
