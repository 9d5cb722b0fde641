"""The fleet store's view in the core (issue 26, items 3 and 4): packet fate through the
simulated switch and the real core, with the store's rows given as `Core.fleet_view` gets
them (no store: the host layer is not involved).

* the fleet-wide guard: an address another live host's guest holds is refused here for
  another MAC (counted, recorded for status and the store); a claim that lost a race
  is dropped where it was made second;
* guests that move: the same MAC here binds at once (its ARP, or any first frame of the
  MAC, e.g. QEMU's RARP) and is announced from this host's station MAC; the host it left
  drops the address when it sees the later claim;
* a host gone for `fleet_gone_after` s holds nothing."""

from __future__ import annotations

import struct

from ofsim import arp_request, icmp_echo
from rig import BCAST, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge.core import CoreConfig
from wlbridge.model.fleet import Claim, HostSeen

G1, G2 = 2, 3
X = "02:00:00:00:77:01"  # the guest that lives on another host, or moves
ADDR = "10.0.0.50"


def rig_on(host: str = "b", **config) -> Rig:
    return Rig(config=CoreConfig(uplink="wlan0", fleet_host=host, fleet_gone_after=60,
                                 **config))


def view(rig: Rig, *claims: Claim, hosts: tuple[str, ...] = ("a",), seen_ago: float = 1.0):
    return rig.apply(rig.core.fleet_view(
        [HostSeen(h, rig.now - seen_ago, f"02:5a:00:00:00:{i + 10:02x}")
         for i, h in enumerate(hosts)], list(claims), rig.now))


def delivered(rig: Rig, addr: str = ADDR) -> set[int]:
    """The guest ports a LAN host's ping of `addr` reaches (unbound: the host's, none)."""
    return rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr)).ports() & {G1, G2}


def rarp(src: str) -> dict:
    """QEMU's announcement after a migration: a RARP request from the guest's MAC."""
    raw = bytes.fromhex(BCAST.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + \
        struct.pack("!HHHBBH", 0x8035, 1, 0x0800, 6, 4, 3) + \
        bytes.fromhex(src.replace(":", "")) + bytes(4) + bytes.fromhex(src.replace(":", "")) + \
        bytes(4) + bytes(18)
    return {"eth_src": src, "eth_dst": BCAST, "eth_type": 0x8035, "data": raw}


def announced(delivery) -> list[str]:
    """The addresses announced from the station MAC out of the uplink (gratuitous ARP)."""
    return [h.get("arp_spa") for p, h in delivery.outputs
            if p == UP and h.get("eth_src") == STATION and h.get("arp_op") in (1, 2)
            and h.get("arp_spa") == h.get("arp_tpa")]


def test_an_address_another_host_holds_is_refused_for_another_mac_counted_and_recorded():
    rig = rig_on()
    view(rig, Claim("a", ADDR, X, rig.now - 30, "vm1"))
    d = rig.send(G1, arp_request(mac(G1), ADDR, ADDR))
    assert d.outputs == [] and ADDR not in rig.core.bindings
    assert delivered(rig) == set()
    assert rig.core.counters["refused.fleet-ip-in-use"] == 1
    snap = rig.core.status(rig.now)["fleet"]
    assert [(c["ip"], c["mac"], c["holder"]) for c in snap["refused_here"]] == [
        (ADDR, mac(G1), "a")]
    assert ADDR in rig.core.fleet_record()["conflicts"]
    # other addresses are not affected
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    assert delivered(rig, ip(G1)) == {G1}


def test_the_holder_shows_the_refusal_another_host_reported():
    rig = rig_on("a")
    rig.send(G1, arp_request(X, ADDR, ADDR))
    rig.apply(rig.core.fleet_view(
        [HostSeen("b", rig.now, "02:5a:00:00:00:0b", ((ADDR, f"{mac(G2)} (held by {X} on a)"),))],
        [], rig.now))
    snap = rig.core.status(rig.now)["fleet"]
    assert snap["refused_elsewhere"] == [
        {"ip": ADDR, "host": "b", "says": f"{mac(G2)} (held by {X} on a)"}]
    assert delivered(rig) == {G1}   # the holder keeps it


def test_a_guest_that_moved_here_binds_on_its_gratuitous_arp_and_is_announced_from_here():
    rig = rig_on()
    view(rig, Claim("a", ADDR, X, rig.now - 30, "vm1"))
    d = rig.send(G1, arp_request(X, ADDR, ADDR))
    assert rig.core.bindings[ADDR].mac == X
    assert ADDR in announced(d)
    assert delivered(rig) == {G1}
    assert rig.core.counters["refused.fleet-ip-in-use"] == 0


def test_a_guest_that_moved_here_binds_on_its_rarp_before_any_address_is_seen():
    rig = rig_on()
    view(rig, Claim("a", ADDR, X, rig.now - 30, "vm1"), Claim("a", "10.0.0.51", X, rig.now - 30))
    d = rig.send(G1, rarp(X))
    assert {a: b.mac for a, b in rig.core.bindings.items()} == {ADDR: X, "10.0.0.51": X}
    assert rig.core.bindings[ADDR].source == "fleet"
    assert sorted(announced(d)) == [ADDR, "10.0.0.51"]
    assert delivered(rig) == {G1}


def test_the_host_a_guest_left_drops_its_address_when_it_sees_the_later_claim():
    rig = rig_on("a")
    rig.send(G1, arp_request(X, ADDR, ADDR))
    assert delivered(rig) == {G1}
    learned = rig.core.bindings[ADDR].learned_at
    view(rig, Claim("b", ADDR, X, learned - 5), hosts=("b",))   # an older claim: stays here
    assert delivered(rig) == {G1}
    rig.now += 2
    view(rig, Claim("b", ADDR, X, rig.now - 1), hosts=("b",))   # it moved to b
    assert ADDR not in rig.core.bindings and delivered(rig) == set()
    assert rig.core.counters["bindings.removed.fleet-moved"] == 1


def test_two_hosts_that_bound_an_address_at_once_keep_it_where_it_was_claimed_first():
    rig = rig_on("b")
    rig.send(G1, arp_request(mac(G1), ADDR, ADDR))
    mine = rig.core.bindings[ADDR].learned_at
    view(rig, Claim("a", ADDR, X, mine + 1))   # a claimed it after us: we keep it
    assert delivered(rig) == {G1}
    view(rig, Claim("a", ADDR, X, mine - 1))   # a claimed it first: dropped here
    assert ADDR not in rig.core.bindings and delivered(rig) == set()
    assert rig.core.counters["refused.fleet-ip-in-use"] == 1
    assert ADDR in rig.core.fleet_record()["conflicts"]


def test_a_host_gone_from_the_store_holds_nothing():
    rig = rig_on()
    view(rig, Claim("a", ADDR, X, rig.now - 300), seen_ago=61)
    rig.send(G1, arp_request(mac(G1), ADDR, ADDR))
    assert delivered(rig) == {G1}
    assert rig.core.status(rig.now)["fleet"]["hosts"] == []


def test_this_hosts_own_rows_in_the_store_are_not_someone_else_s_claims():
    rig = rig_on("b")
    view(rig, Claim("b", ADDR, X, rig.now - 30), hosts=("b",))
    rig.send(G1, arp_request(mac(G1), ADDR, ADDR))
    assert delivered(rig) == {G1}


def test_the_record_for_the_store_lists_the_bindings_and_the_station_mac():
    rig = rig_on()
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    rec = rig.core.fleet_record()
    assert rec["station_mac"] == STATION
    assert [(b["ip"], b["mac"], b["guest"], b["source"]) for b in rec["bindings"]] == [
        (ip(G1), mac(G1), f"g{G1}", "arp")]
    assert rig.core.fleet_changed is False
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    assert rig.core.fleet_changed is True


def test_a_binding_whose_port_left_stays_claimed_in_the_store_until_taken_over_or_ended():
    """A migrated VM's port leaves its first host about when the VM's RARP reaches the next
    one, which learns its addresses from the store only: the first host keeps claiming them
    (``departed``) until another host takes them over, or for fleet_gone_after s."""
    rig = rig_on("a")
    rig.send(G1, arp_request(X, ADDR, ADDR))
    rig.remove_port(G1)
    assert ADDR not in rig.core.bindings
    rec = rig.core.fleet_record()["bindings"]
    assert [(b["ip"], b["mac"], b["guest"], b["source"]) for b in rec] == [
        (ADDR, X, f"g{G1}", "departed")]
    # b takes it over (the same MAC, claimed later): no longer claimed here
    rig.now += 1
    view(rig, Claim("b", ADDR, X, rig.now), hosts=("b",))
    assert rig.core.fleet_changed and rig.core.fleet_record()["bindings"] == []


def test_a_departed_claim_ends_after_fleet_gone_after():
    rig = rig_on("a")
    rig.send(G1, arp_request(X, ADDR, ADDR))
    rig.remove_port(G1)
    rig.core.fleet_record()
    assert rig.core.next_due() <= rig.now + 60
    rig.advance(59)
    assert [b["ip"] for b in rig.core.fleet_record()["bindings"]] == [ADDR]
    rig.advance(2)
    assert rig.core.fleet_changed and rig.core.fleet_record()["bindings"] == []


def test_ipv6_an_address_another_host_holds_is_refused_by_nd_and_recorded():
    from v6frames import dad

    rig = rig_on()
    addr6 = "2001:db8:1::50"
    view(rig, Claim("a", addr6, X, rig.now - 30))
    rig.send(G1, dad(mac(G1), addr6))
    assert addr6 not in rig.core.bindings
    assert rig.core.counters["refused.fleet-ip-in-use"] == 1
    assert addr6 in rig.core.fleet_record()["conflicts"]


def test_ipv6_a_guest_that_moved_here_gets_its_addresses_announced_by_unsolicited_na():
    rig = rig_on()
    addr6 = "2001:db8:1::50"
    view(rig, Claim("a", addr6, X, rig.now - 30), Claim("a", ADDR, X, rig.now - 30))
    d = rig.send(G1, rarp(X))
    assert {a: b.source for a, b in rig.core.bindings.items()} == {ADDR: "fleet", addr6: "fleet"}
    nas = [h for p, h in d.outputs if p == UP and h.get("eth_src") == STATION
           and h.get("icmpv6_type") == 136]
    assert [h.get("ipv6_nd_target") for h in nas] == [addr6]


def test_a_port_whose_guest_mac_is_known_from_the_start_takes_over_its_addresses_at_once():
    """A port added with its guest's MAC configured (static_macs; libvirt's attached-mac
    feeds the same path): the store's addresses of that MAC are bound before any frame."""
    rig = rig_on(static_macs={"g9": X})
    view(rig, Claim("a", ADDR, X, rig.now - 30))
    d = rig.add_port(9)
    assert rig.core.bindings[ADDR].source == "fleet" and rig.core.bindings[ADDR].port_no == 9
    assert ADDR in announced(d)
    assert rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ADDR)).ports() == {9}


def test_a_vm_libvirt_announces_on_its_new_port_takes_over_its_addresses_before_any_frame():
    """Live migration: the destination's libvirt writes the VM's `attached-mac` on the new
    port (`Core.guest_announced`); the store's addresses of that MAC are bound and
    announced from this host at once, before QEMU's RARP."""
    rig = rig_on()
    view(rig, Claim("a", ADDR, X, rig.now - 30, "vm1"))
    d = rig.apply(rig.core.guest_announced(f"g{G1}", X, "libvirt", rig.now))
    assert rig.core.bindings[ADDR].source == "fleet" and rig.core.bindings[ADDR].mac == X
    assert ADDR in announced(d)
    assert delivered(rig) == {G1}
