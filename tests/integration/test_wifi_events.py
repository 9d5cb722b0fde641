"""Wi-Fi events on the emulated LAN (issue 13 item 4): the uplink losing and regaining its
carrier (reassociation, roaming) and the uplink interface deleted and created again (a
driver reload).  Bindings survive, guests and the host are reachable again, the LAN is told
where the guests are (gratuitous ARP), and the uplink gets back what setup gave it.
Timings are printed (the bench and docs/resilience.md record them), never asserted."""

from __future__ import annotations

import subprocess
import time

import pytest
from harness import ap_foreign, wait_for

pytestmark = pytest.mark.integration


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def _reachable(src, dst: str) -> bool:
    return src.ping(dst, count=1, timeout=0.3)


def _learned(world, wl, guest) -> dict:
    assert guest.ping(ip_of(world.peers[0]), count=2), wl.logs()[-3000:]
    return wl.wait_bound(ip_of(guest), guest.port)


def _tx_checksum_off(ifname: str) -> bool:
    out = subprocess.run(["ethtool", "-k", ifname], capture_output=True, text=True,
                         check=False).stdout
    return "tx-checksumming: off" in out


def _uplink_filtered(ifname: str) -> bool:
    out = subprocess.run(["tc", "filter", "show", "dev", ifname, "ingress"],
                         capture_output=True, text=True, check=False).stdout
    return "wlbridge" in out


def _allmulti(ifname: str) -> bool:
    out = subprocess.run(["ip", "-o", "link", "show", ifname], capture_output=True, text=True,
                         check=False).stdout
    return "ALLMULTI" in out


def test_uplink_carrier_down_and_up_guests_back_and_announced(make_world, wlbridge_on):
    world = make_world(n_guests=2)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    before = {g.name: _learned(world, wl, g) for g in (g1, g2)}
    announced = wl.counters().get("station.announced", 0)

    world.set_station_carrier(False)
    wait_for(lambda: not wl.status()["uplink"]["up"], timeout=5, what="the uplink to go down")
    assert not _reachable(peer, ip_of(g1))
    # the LAN host forgets the guests and accepts what gratuitous ARPs tell it
    peer.run("sysctl", "-qw", "net.ipv4.conf.all.arp_accept=1",
             f"net.ipv4.conf.{peer.ifname}.arp_accept=1", check=True)
    peer.run("ip", "neigh", "flush", "all", check=True)
    back_at = time.monotonic()
    world.set_station_carrier(True)

    def announced_to_peer() -> bool:
        out = peer.run("ip", "neigh", "show", "dev", peer.ifname).stdout
        return all(f"{ip_of(g)} " in out and world.station.mac in out for g in (g1, g2))

    # before any traffic: the peer learned both guests (at the station MAC) from the
    # controller's gratuitous ARPs
    wait_for(announced_to_peer, timeout=5, interval=0.02,
             what="the LAN host to learn the guests from gratuitous ARPs")
    wait_for(lambda: _reachable(peer, ip_of(g1)) and _reachable(peer, ip_of(g2)), timeout=10,
             interval=0.02, what="the guests to be reachable again")
    took = time.monotonic() - back_at

    status = wl.status()
    for g in (g1, g2):     # the bindings survived, not learned again
        assert wl.bound(ip_of(g))["learned_at"] == before[g.name]["learned_at"]
    # a gratuitous ARP for each guest and the host address tells the LAN where they are
    wait_for(lambda: wl.counters().get("station.announced", 0) >= announced + 3, timeout=5,
             what="the announcements")
    assert g1.ping(ip_of(peer), count=2) and world.station.ping(ip_of(peer), src=wl.station_ip)
    assert ap_foreign(world) == 0
    assert "lost its carrier" in wl.logs() and "has carrier again" in wl.logs()
    print(f"carrier back -> both guests reachable in {took:.2f}s; generation "
          f"{status['generation']}")


def test_uplink_recreated_is_replugged_and_prepared_again(make_world, wlbridge_on):
    """A driver reload: the uplink interface disappears and comes back (same name and MAC,
    new interface index, without allmulticast, offload settings or the ingress filter).
    Without the re-plug the userspace datapath never receives on it again."""
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    before = _learned(world, wl, g1)
    assert _uplink_filtered(world.uplink) and _tx_checksum_off(world.uplink)
    ofport = wl.status()["uplink"]["port_no"]
    announced = wl.counters().get("station.announced", 0)

    started = time.monotonic()
    world.recreate_station_link(gap=0.5)
    recreated = time.monotonic()
    wait_for(lambda: _reachable(peer, ip_of(g1)), timeout=15, interval=0.02,
             what=f"the guest to be reachable again\n{wl.logs()[-4000:]}")
    took = time.monotonic() - recreated
    wait_for(lambda: world.station.ping(ip_of(peer), src=wl.station_ip, count=1, timeout=0.5),
             timeout=5, what="the host to reach the LAN again")
    host_took = time.monotonic() - recreated

    assert wl.bound(ip_of(g1))["learned_at"] == before["learned_at"]
    assert wl.status()["uplink"]["port_no"] == ofport        # same OpenFlow port
    assert g1.ping(ip_of(peer), count=2)
    # the new interface got what setup gave the old one
    assert _uplink_filtered(world.uplink), "no ingress filter on the re-created uplink"
    assert _tx_checksum_off(world.uplink) and _allmulti(world.uplink)
    assert wl.counters().get("station.announced", 0) > announced
    assert ap_foreign(world) == 0
    print(f"uplink gone for {recreated - started:.2f}s; guest reachable {took:.2f}s and host "
          f"{host_took:.2f}s after it came back")
