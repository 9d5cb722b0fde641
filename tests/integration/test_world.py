"""The emulated Wi-Fi LAN reproduces the real problem, and cleans up after itself."""

from __future__ import annotations

import os

import pytest

from topologies import TopologyError, World, basic_lan, cleanup, dhcp, ovs
from topologies.procs import wait_for


def test_station_reaches_peer_from_its_uplink_address(lan):
    peer = lan.peers[0]
    assert lan.station.ip == lan.graph.nodes["station"]["addr"].split("/")[0]
    before = lan.ap_counters()
    assert lan.station.ping(peer.ip, src=lan.station.ip, count=2)
    after = lan.ap_counters()
    # The station's own frames pass the one-MAC rule, both ways.
    assert after["from_station"].packets > before["from_station"].packets
    assert after["to_station"].packets > before["to_station"].packets
    assert after["foreign_src"] == before["foreign_src"]


def test_peer_reaches_router(lan):
    assert lan.peers[0].ping(lan.router.ip)


def test_plain_normal_bridge_guest_is_dropped_by_the_ap(lan, ovs_bridge):
    br = ovs_bridge()
    br.add_port(lan.uplink)
    guest = lan.guests[0]
    br.add_port(guest.port)
    br.normal()
    peer = lan.peers[0]
    before = lan.ap_counters()["foreign_src"].packets
    assert not guest.ping(peer.ip, count=2, timeout=1)
    assert lan.ap_counters()["foreign_src"].packets > before
    # The host itself still works through the same AP.
    assert lan.station.ping(peer.ip)


def test_without_the_ap_filter_the_same_guest_gets_through(make_world, ovs_bridge):
    """Control experiment: it is the one-MAC rule, not the plumbing, that stops the guest."""
    world = make_world(filter=False)
    br = ovs_bridge()
    br.add_port(world.uplink)
    guest = world.guests[0]
    br.add_port(guest.port)
    br.normal()
    assert guest.ping(world.peers[0].ip, count=2)
    assert world.ap_counters()["foreign_src"].packets > 0


def test_dhcp_clients_get_leases_without_router_option(make_world, ovs_bridge):
    world = make_world(filter=False, static_guests=False)
    br = ovs_bridge()
    br.add_port(world.uplink)
    g1, g2 = world.guests
    br.add_port(g1.port)
    br.add_port(g2.port)
    br.normal()
    ip1 = g1.dhcp("dhclient")
    ip2 = g2.dhcp("udhcpc")
    assert ip1 and ip2 and ip1 != ip2
    assert {(lease.mac, lease.ip) for lease in world.leases()} == {(g1.mac, ip1), (g2.mac, ip2)}
    assert any(e.startswith("BOUND") for e in g1.dhcp_events())
    for g in (g1, g2):  # no router option: no default route anywhere
        assert "default" not in g.run("ip", "route").stdout


def test_station_mac_change_moves_the_ap_rule(lan):
    peer = lan.peers[0]
    lan.station.set_mac("02:57:4c:00:02:77")  # the AP still expects the old MAC
    lan.station.run("ip", "neigh", "flush", "dev", lan.uplink)
    peer.run("ip", "neigh", "flush", "dev", peer.ifname)
    assert not lan.station.ping(peer.ip, timeout=1)
    lan.set_station_mac("02:57:4c:00:02:77")
    assert lan.ap_station_mac == "02:57:4c:00:02:77"
    assert lan.station.ping(peer.ip)


def test_group_to_unicast_rewrites_broadcast_towards_the_station(make_world):
    world = make_world(group_to_unicast=True)
    peer = world.peers[0]
    world.station.run("ip", "neigh", "flush", "dev", world.uplink)
    peer.run("ip", "neigh", "flush", "dev", peer.ifname)
    assert peer.ping(world.station.ip)  # the peer's broadcast ARP request reaches the station
    assert world.ap_counters()["group_to_unicast"].packets > 0


def _leftovers(prefix: str) -> dict:
    bridges = [b for b in ovs.list_bridges() if b.startswith(prefix + "-")]
    return {"namespaces": cleanup.list_namespaces(prefix),
            "links": cleanup.list_root_links(prefix), "bridges": bridges}


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def test_teardown_leaves_nothing(wl_prefix, ovs_bridge):
    world = World(basic_lan(prefix=wl_prefix, static_guests=False, filter=False)).build()
    br = ovs_bridge()
    br.add_port(world.uplink)
    br.add_port(world.guests[0].port)
    br.normal()
    client = world.guests[0].dhclient()
    stray = world.guests[1].popen("sleep", "600")  # a process the test forgot to stop
    pids = [p.pid for p in world.procs]
    assert len(pids) >= 3 and all(_alive(p) for p in pids)  # dnsmasq, dhclient, sleep
    workdir = world.workdir
    br.delete()
    world.teardown()
    world.teardown()  # idempotent
    assert _leftovers(wl_prefix) == {"namespaces": [], "links": [], "bridges": []}
    assert wait_for(lambda: not any(_alive(p) for p in pids), 5)
    assert not client.alive and not stray.alive
    assert not workdir.exists()


def test_failed_build_cleans_up(wl_prefix, monkeypatch):
    def broken(*args, **kwargs) -> list[str]:   # a DHCP server that dies at once
        return ["sh", "-c", "echo dnsmasq exploded; exit 1"]

    monkeypatch.setattr(dhcp, "dnsmasq_argv", broken)
    with pytest.raises(TopologyError, match="exploded"):
        World(basic_lan(prefix=wl_prefix)).build()
    assert _leftovers(wl_prefix) == {"namespaces": [], "links": [], "bridges": []}


def test_cleanup_leftovers_removes_an_abandoned_world(wl_prefix):
    world = World(basic_lan(prefix=wl_prefix, uplink=f"wlx{wl_prefix}")).build()
    world.guests[0].popen("sleep", "600")
    # Simulate a crashed run: the World object is lost, nothing was torn down.
    removed = cleanup.cleanup_leftovers(wl_prefix)
    assert f"wlx{wl_prefix}" in removed["links"]  # found by its ifalias, not by its name
    assert removed["processes"]
    assert _leftovers(wl_prefix) == {"namespaces": [], "links": [], "bridges": []}
    world.teardown()  # still harmless
