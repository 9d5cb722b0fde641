"""Several guests behind one guest port over a real station (issue 22, item 3): a Linux
bridge with three namespaces behind one OVS port (`topologies.SharedPort`, as the emulated
LAN's test_shared_port does), each a busybox udhcpc guest with its own lease from the LAN's
dnsmasq, each reaching the LAN peer and reached from it over IPv4 and IPv6 (SLAAC), the port's
status listing the three MACs; none of them ever known to the AP."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import BRIDGE

from topologies import SharedPort
from topologies.dhcp import parse_leases
from topologies.procs import wait_for
from topologies.wifibed.bed import PEER_IP, PREFIX, sh

NAMES = ("sh1", "sh2", "sh3")


@pytest.fixture(scope="module")
def shared(bed, wlbridge):
    made = [bed.add_guest(n, None) for n in NAMES]
    port = SharedPort(SimpleNamespace(prefix=PREFIX), made).create()
    sh("ovs-vsctl", "--timeout=30", "add-port", BRIDGE, port.port)
    for g in made:
        g.dhcp("udhcpc", timeout=90)
    return port, made


def test_each_guest_behind_the_port_gets_its_own_lease_and_is_listed_on_it(bed, wlbridge,
                                                                          shared):
    port, made = shared
    ips = [g.ip() for g in made]
    assert all(ips), dict(zip(NAMES, ips))
    leases = parse_leases((bed.logs / "dnsmasq" / "leases").read_text())
    assert {(g.mac, ip) for g, ip in zip(made, ips)} <= {(le.mac, le.ip) for le in leases}
    entry = wait_for(lambda: next((e for e in wlbridge.status()["guests"]
                                   if e["port"] == port.port and len(e["macs"]) == 3), None),
                     20, what="the shared port's three guests in status")
    assert sorted(entry["macs"]) == sorted(g.mac for g in made), entry
    mine = {a["ip"]: a["mac"] for a in entry["ips"]}
    assert all(mine.get(ip) == g.mac for g, ip in zip(made, ips)), entry


@pytest.mark.parametrize("n", range(len(NAMES)))
def test_each_guest_behind_the_port_and_the_lan_peer_reach_each_other(bed, shared, n):
    g = shared[1][n]
    ip = g.ip()
    assert wait_for(lambda: g.ping(PEER_IP), 30), f"{g.name} cannot reach the LAN peer"
    assert wait_for(lambda: bed.peer_ping(ip), 30), f"the LAN peer cannot reach {g.name}"
    ip6 = wait_for(g.ip6, 40)
    assert ip6, f"{g.name} has no SLAAC address"
    assert wait_for(lambda: bed.peer_ping(ip6), 30), f"the LAN peer cannot reach {ip6}"


def test_siblings_reach_each_other_and_the_ap_never_sees_them(bed, shared):
    first, *others = shared[1]
    for g in others:
        assert wait_for(lambda g=g: first.ping(g.ip()), 20), f"{first.name} -> {g.name}"
    log = bed.hostapd_log().lower()
    assert not [g.name for g in shared[1] if g.mac in log], "hostapd logged a guest MAC"
