"""A guest MAC announced by the host before the guest's first frame (issue 22, item 1):
libvirt writes ``external_ids:attached-mac`` on a VM's OVS interface and the controller hands
it to the core (`Core.guest_announced`), so the VM is a guest, with its flows (source check,
delivery to it, the LAN's ND naming it dropped), from its first frame.  It is learned, not
configured: a VM's nested guests behind the same port are still learned.  Packet fate through
the simulated switch and the real core."""

from __future__ import annotations

from core_dhcp_rig import send, tolerant_switch  # noqa: F401  (autouse fixture)
from dhcp_frames import discover
from ofsim import arp_request, icmp_echo
from rig import LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from v6frames import ns

G1, G2 = 2, 3
VM = "52:54:00:12:34:56"   # libvirt's MAC prefix
NESTED = "02:00:00:00:0c:01"
VM_IP = "10.0.0.71"


def announced_rig(**kw) -> Rig:
    rig = Rig(**kw)
    rig.apply(rig.core.guest_announced(f"g{G1}", VM.upper(), "libvirt", rig.now))
    return rig


def test_an_announced_vm_is_a_guest_before_its_first_frame_and_shown_so():
    rig = announced_rig()
    guest = rig.core.guests[G1]
    assert (guest.mac, guest.mac_source, list(guest.macs)) == (VM, "libvirt", [VM])
    g1 = next(g for g in rig.core.status(rig.now)["guests"] if g["port_no"] == G1)
    assert (g1["mac"], g1["mac_source"]) == (VM, "libvirt")
    assert rig.core.counters["guests.mac_announced.libvirt"] == 1


def test_frames_to_the_vm_reach_its_port_before_it_said_anything():
    """A guest on another port and the host reach the VM by its MAC at once (its delivery
    flow is there); without the announcement nothing knows where that MAC is."""
    rig = announced_rig()
    d = rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))   # G2 becomes a guest
    d = rig.send(G2, icmp_echo(mac(G2), VM, ip(G2), VM_IP))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == VM


def test_the_vms_first_dhcp_discover_is_handled_without_a_learning_round():
    """Its MAC's flows are in place: the first frame goes to the DHCP handling directly
    (one packet-in), not through the unknown-MAC trigger and a re-injection (two)."""
    rig = announced_rig()
    d = send(rig, G1, discover(VM, 0x51))
    assert d.ports() == {UP} and d.packet_ins == 1
    assert rig.core.counters.get("guests.mac_learned", 0) == 0


def test_the_lans_neighbour_solicitation_naming_the_vms_mac_is_dropped_from_the_start():
    """ND from the LAN carrying the VM's MAC in its option (a leak reflected or a spoof
    pointing caches at the VM) is dropped by the VM's conflict flows before it spoke."""
    rig = announced_rig()
    d = rig.send(UP, ns(VM, "fe80::5054:ff:fe12:3456", "fe80::1"))
    assert d.outputs == []


def test_a_vms_nested_guest_is_still_learned_behind_its_port():
    """Announced is not configured: the port still carries more guests (a VM's own
    containers or VMs), each guarded and bound on its own."""
    rig = announced_rig()
    assert rig.send(G1, arp_request(VM, VM_IP, VM_IP)).ports() == {LOCAL, G2, UP}
    d = rig.send(G1, arp_request(NESTED, "10.0.0.72", "10.0.0.72"))
    assert d.ports() == {LOCAL, G2, UP}
    assert list(rig.core.guests[G1].macs) == [VM, NESTED]
    back = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, "10.0.0.72"))
    assert back.ports() == {G1} and back.out(G1)["eth_dst"] == NESTED
    assert not [k for k in rig.core.counters if k.startswith("refused.")]


def test_announcing_again_changes_nothing():
    rig = announced_rig()
    mark = rig.sw.mark()
    msgs = rig.core.guest_announced(f"g{G1}", VM, "libvirt", rig.now)
    rig.apply(msgs)
    assert msgs == [] and rig.sw.changes(mark) == []


def test_announcements_the_guard_refuses_are_counted_and_change_nothing():
    rig = Rig()
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    for bad, cause in ((STATION, "station-mac"), (mac(G2), "duplicate-mac"),
                       ("01:00:5e:00:00:01", "bad-mac")):
        mark = rig.sw.mark()
        assert rig.core.guest_announced(f"g{G1}", bad, "libvirt", rig.now) == []
        assert rig.sw.changes(mark) == [] and rig.core.counters[f"refused.{cause}"] == 1
    assert list(rig.core.guests[G1].macs) == []
    assert rig.core.guest_announced("vnet9", VM, "libvirt", rig.now) == []
    assert rig.core.counters["announced.unknown_port"] == 1


def test_an_announcement_respects_the_ports_bound():
    rig = Rig(config=None)
    rig.core.config.max_macs_per_port = 1
    rig.send(G1, arp_request(NESTED, "10.0.0.72", "10.0.0.72"))
    assert rig.core.guest_announced(f"g{G1}", VM, "libvirt", rig.now) == []
    assert rig.core.counters["refused.mac-limit"] == 1
    assert list(rig.core.guests[G1].macs) == [NESTED]


def test_the_vms_port_deleted_takes_its_guest_and_bindings():
    rig = announced_rig()
    rig.send(G1, arp_request(VM, VM_IP, VM_IP))
    assert VM_IP in rig.core.bindings
    rig.sw.remove_port(G1)
    rig.apply(rig.core.port_deleted(G1, rig.now))
    assert G1 not in rig.core.guests and VM_IP not in rig.core.bindings
    assert rig.core.guest_by_mac(VM) is None
