"""Guests on the bridge over a real station: static and DHCP (ISC dhclient, busybox udhcpc
without -B), to and from the LAN, each other and the host."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from conftest import STATIC_GUEST_IP, STATION_IP

from topologies.dhcp import parse_leases
from topologies.procs import wait_for
from topologies.wifibed.bed import DHCP_RANGE, PEER_IP, ping

GUESTS = ("static", "dhclient", "udhcpc")


@pytest.mark.parametrize("name", ["dhclient", "udhcpc"])
def test_dhcp_guest_gets_its_own_lease_from_the_lan(bed, guests, name):
    ip = guests[name].ip()
    assert ip, f"{name} got no address"
    lo, hi = (ipaddress.ip_address(a) for a in DHCP_RANGE)
    assert lo <= ipaddress.ip_address(ip) <= hi
    leases = parse_leases((bed.logs / "dnsmasq" / "leases").read_text())
    assert (guests[name].mac, ip) in {(le.mac, le.ip) for le in leases}


@pytest.mark.parametrize("name", GUESTS)
def test_guest_reaches_the_lan_peer_and_is_reached_from_it(bed, guests, name):
    g = guests[name]
    ip = g.ip()
    assert ip == STATIC_GUEST_IP or name != "static"
    assert wait_for(lambda: g.ping(PEER_IP), 30), f"{name} cannot reach the LAN peer"
    assert wait_for(lambda: bed.peer_ping(ip), 30), f"the LAN peer cannot reach {name}"


def test_guests_reach_each_other(guests):
    for a, b in itertools.permutations(GUESTS, 2):
        src, dst = guests[a], guests[b].ip()
        assert wait_for(lambda s=src, d=dst: s.ping(d), 20), f"{a} cannot reach {b} ({dst})"


@pytest.mark.parametrize("name", GUESTS)
def test_guest_and_host_reach_each_other(guests, name):
    g = guests[name]
    assert wait_for(lambda: g.ping(STATION_IP), 20), f"{name} cannot reach the host"
    assert wait_for(lambda: ping(g.ip()), 20), f"the host cannot reach {name}"
