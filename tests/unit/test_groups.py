"""Group traffic the AP turned into unicast to the station, restored (issue 12 item 7):
packet fate through the simulated switch and the real core, with IGMP/MLD snooping."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate
from ofsim import from_bytes
from rig import BCAST, HOST_IP, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, mac
from scapy.all import UDP, Ether, IPv6, IPv6ExtHdrHopByHop, RouterAlert
from scapy.layers.igmp import IGMP, IGMPv3_MR, IGMPv3_MR_Group
from scapy.layers.inet import IP
from scapy.layers.inet6 import (
    ICMPv6MLDMultAddrRec,
    ICMPv6MLDone,
    ICMPv6MLReport,
    ICMPv6MLReport2,
)
from wlbridge.cli.status_client import render
from wlbridge.core import Core, CoreConfig
from wlbridge.flows.pipeline import BY_NAME
from wlbridge.model.state import Port
from wlbridge.proto.groupmsg import is_report

G1, G2 = 2, 3
SNOOP = BY_NAME["guest_snoop"].table_id  # packet-ins of the snooping table
FROM_GUEST = BY_NAME["from_guest"].table_id
ROUTER6 = "fe80::10:ff:fe00:1"
INTERVAL = 260


def lla(port: int) -> str:
    return f"fe80::{port}"


def gip(port: int) -> str:
    return f"10.0.0.{10 + port}"


def igmpv2(port: int, group: str, kind: int = 0x16) -> dict:
    dst = "224.0.0.2" if kind == 0x17 else group
    return from_bytes(bytes(Ether(src=mac(port), dst="01:00:5e:00:00:16")
                            / IP(src=gip(port), dst=dst, ttl=1) / IGMP(type=kind, gaddr=group)))


def igmpv3(port: int, records: list[tuple[int, str]], src: str | None = None) -> dict:
    recs = [IGMPv3_MR_Group(rtype=t, maddr=g) for t, g in records]
    return from_bytes(bytes(Ether(src=mac(port), dst="01:00:5e:00:00:16")
                            / IP(src=src or gip(port), dst="224.0.0.22", ttl=1)
                            / IGMPv3_MR(records=recs)))


def mld(port: int, msg) -> dict:
    return from_bytes(bytes(Ether(src=mac(port), dst="33:33:00:00:00:16")
                            / IPv6(src=lla(port), dst="ff02::16", hlim=1)
                            / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / msg))


def mldv2(port: int, records: list[tuple[int, str]]) -> dict:
    recs = [ICMPv6MLDMultAddrRec(rtype=t, dst=g) for t, g in records]
    return mld(port, ICMPv6MLReport2(records=recs))


def unicast_udp(group: str, dport: int = 5000) -> dict:
    """A datagram to `group` that the AP turned into unicast to the station."""
    if ":" in group:
        return from_bytes(bytes(Ether(src=ROUTER, dst=STATION) / IPv6(src=ROUTER6, dst=group)
                                / UDP(sport=dport, dport=dport) / b"hello"))
    return from_bytes(bytes(Ether(src=ROUTER, dst=STATION) / IP(src=ROUTER_IP, dst=group)
                            / UDP(sport=dport, dport=dport) / b"hello"))


def rig_with_macs(**kw) -> Rig:
    rig = Rig(config=CoreConfig(uplink="wlan0", **kw))
    for port in (G1, G2):  # the guests' MACs are known (first frame)
        rig.send(port, unicast_from(port))
    return rig


def unicast_from(port: int) -> dict:
    return from_bytes(bytes(Ether(src=mac(port), dst=ROUTER) / IP(src=gip(port), dst=ROUTER_IP)
                            / UDP(sport=1, dport=1)))


# ------------------------------------------------------------------ restored to members
def test_ipv4_group_joined_by_a_guest_reaches_it_with_the_groups_own_mac():
    rig = rig_with_macs()
    d = rig.send(G1, igmpv2(G1, "239.1.2.3"))
    assert d.packet_ins == 1
    # the report still goes on: to the LAN (as the station) and the host
    assert d.out(UP)["eth_src"] == STATION and d.out(UP)["ipv4_dst"] == "239.1.2.3"
    assert d.out(LOCAL) is not None
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    assert d.ports() == {LOCAL, G1}, str(d)  # the member and the host; not guest 2
    assert d.out(G1)["eth_dst"] == "01:00:5e:01:02:03"
    assert d.out(LOCAL)["eth_dst"] == "01:00:5e:01:02:03"
    assert d.packet_ins == 0


def test_igmpv3_join_and_the_low_23_bits_of_the_group_make_its_mac():
    rig = rig_with_macs()
    rig.send(G2, igmpv3(G2, [(4, "239.129.2.3"), (2, "232.1.1.1")]))
    d = rig.send(UP, unicast_udp("239.129.2.3"))
    assert d.ports() == {LOCAL, G2} and d.out(G2)["eth_dst"] == "01:00:5e:01:02:03"
    d = rig.send(UP, unicast_udp("232.1.1.1"))
    assert d.out(G2)["eth_dst"] == "01:00:5e:01:01:01"


def test_ipv6_group_joined_by_mld_reaches_the_member_with_33_33_and_the_low_32_bits():
    rig = rig_with_macs()
    d = rig.send(G1, mldv2(G1, [(4, "ff15::1234"), (4, "ff02::1:ff00:12")]))
    # the report's link-local source was not bound yet: learned from it (the source check's
    # trigger), the report re-injected and on to the LAN as the station
    assert d.out(UP)["eth_src"] == STATION and lla(G1) in rig.core.bindings
    d = rig.send(UP, unicast_udp("ff15::1234"))
    assert d.ports() == {LOCAL, G1}, str(d)
    assert d.out(G1)["eth_dst"] == "33:33:00:00:12:34"
    # a solicited-node group (an NS the AP made unicast reaches the guest it is for)
    d = rig.send(UP, unicast_udp("ff02::1:ff00:12"))
    assert d.ports() == {LOCAL, G1} and d.out(G1)["eth_dst"] == "33:33:ff:00:00:12"


def test_mldv1_report_joins_and_done_leaves():
    rig = rig_with_macs()
    rig.send(G2, mld(G2, ICMPv6MLReport(mladdr="ff05::42")))
    assert rig.send(UP, unicast_udp("ff05::42")).out(G2)["eth_dst"] == "33:33:00:00:00:42"
    rig.send(G2, mld(G2, ICMPv6MLDone(mladdr="ff05::42")))
    d = rig.send(UP, unicast_udp("ff05::42"))
    # the catch-all again: to every port, still with the group's own MAC
    assert d.ports() == {LOCAL, G1, G2} and d.out(G2)["eth_dst"] == "33:33:00:00:00:42"


@pytest.mark.parametrize("group,group_mac", [
    ("224.0.0.251", "01:00:5e:00:00:fb"), ("239.255.255.250", "01:00:5e:7f:ff:fa"),
    ("224.0.0.1", "01:00:5e:00:00:01"), ("ff02::fb", "33:33:00:00:00:fb"),
    ("ff02::c", "33:33:00:00:00:0c"), ("ff02::1", "33:33:00:00:00:01")])
def test_mdns_ssdp_and_all_nodes_reach_every_guest_without_any_report(group, group_mac):
    rig = rig_with_macs()
    d = rig.send(UP, unicast_udp(group, 5353))
    assert d.ports() == {LOCAL, G1, G2}, str(d)
    assert {h["eth_dst"] for _, h in d.outputs} == {group_mac}
    assert d.packet_ins == 0


def test_subnet_directed_broadcast_of_the_hosts_network_is_restored_to_broadcast():
    rig = rig_with_macs()
    d = rig.send(UP, unicast_udp("10.0.0.255", 137))
    assert d.ports() == {LOCAL}  # the host's prefix is not known yet: the host's only
    rig.apply(rig.core.host_addresses([f"{HOST_IP}/24"], rig.now))
    assert rig.core.host_ips == {HOST_IP}
    d = rig.send(UP, unicast_udp("10.0.0.255", 137))
    assert d.ports() == {LOCAL, G1, G2}, str(d)
    assert {h["eth_dst"] for _, h in d.outputs} == {BCAST}
    rig.apply(rig.core.host_addresses([f"{HOST_IP}/16"], rig.now))  # renumbered: 10.0.255.255
    assert rig.send(UP, unicast_udp("10.0.0.255", 137)).ports() == {LOCAL}
    assert rig.send(UP, unicast_udp("10.0.255.255", 137)).ports() == {LOCAL, G1, G2}


@pytest.mark.parametrize("group,group_mac", [
    ("239.7.7.7", "01:00:5e:07:07:07"), ("239.129.2.3", "01:00:5e:01:02:03"),
    ("225.255.255.255", "01:00:5e:7f:ff:ff"), ("ff15::1:2345:6789", "33:33:23:45:67:89"),
    ("ff02::1:ff12:3456", "33:33:ff:12:34:56"), ("ff0e::ffff:ffff", "33:33:ff:ff:ff:ff")])
def test_a_group_never_snooped_reaches_every_port_with_its_own_mac(group, group_mac):
    # the catch-all computes the MAC from the address (01:00:5e + low 23 bits, 33:33 + low
    # 32 bits) in the fast path: no packet-in, no per-group flow
    rig = rig_with_macs()
    d = rig.send(UP, unicast_udp(group))
    assert d.ports() == {LOCAL, G1, G2}, str(d)
    assert {h["eth_dst"] for _, h in d.outputs} == {group_mac}
    assert {h.get("ipv4_dst") or h.get("ipv6_dst") for _, h in d.outputs} == {group}
    assert d.packet_ins == 0


# ------------------------------------------------------------------ membership ends
def test_a_group_expires_after_the_membership_interval_and_a_report_refreshes_it():
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    rig.advance(INTERVAL - 60)
    rig.send(G1, igmpv2(G1, "239.1.2.3"))   # the answer to a query: refreshed
    rig.advance(INTERVAL - 1)
    assert rig.send(UP, unicast_udp("239.1.2.3")).ports() == {LOCAL, G1}
    assert rig.core.next_due() == pytest.approx(rig.now + 1)
    rig.advance(2)
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    # back to the catch-all: every port, the group's MAC all the same (a LAN without a
    # querier, where guests report only when they join, loses nothing but the narrowing)
    assert d.ports() == {LOCAL, G1, G2} and d.out(G1)["eth_dst"] == "01:00:5e:01:02:03"
    assert rig.core.counters["groups.left.timeout"] == 1
    assert rig.core.status(rig.now)["groups"] == [g for g in rig.core.status(rig.now)["groups"]
                                                  if g["always"]]


def test_membership_interval_is_configurable():
    rig = rig_with_macs(group_membership_interval=30)
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    rig.advance(31)
    assert rig.send(UP, unicast_udp("239.1.2.3")).ports() == {LOCAL, G1, G2}


@pytest.mark.parametrize("leave", [
    lambda: igmpv2(G1, "239.1.2.3", kind=0x17),
    lambda: igmpv3(G1, [(3, "239.1.2.3")]),            # change to include {}: leave
])
def test_a_leave_removes_the_member_at_once_and_keeps_the_others(leave):
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    rig.send(G2, igmpv2(G2, "239.1.2.3"))
    assert rig.send(UP, unicast_udp("239.1.2.3")).ports() == {LOCAL, G1, G2}
    rig.send(G1, leave())
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    assert d.ports() == {LOCAL, G2} and d.out(G2)["eth_dst"] == "01:00:5e:01:02:03"
    assert rig.core.counters["groups.left.leave"] == 1


def test_a_removed_port_leaves_its_groups():
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    rig.sw.remove_port(G1)
    rig.apply(rig.core.port_deleted(G1, rig.now))
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    assert d.out(LOCAL)["eth_dst"] == "01:00:5e:01:02:03" and not d.dead_ends
    assert d.ports() == {LOCAL, G2}
    assert all(g["always"] for g in rig.core.status(rig.now)["groups"])
    # another guest gets the port number: it is no member of its predecessor's groups
    rig.sw.add_port(G1, "g-new")
    rig.apply(rig.core.port_added(Port(G1, "g-new", "fe:00:00:00:00:99"), rig.now))
    rig.send(G1, unicast_from(G1))
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    assert d.ports() == {LOCAL, G1, G2} and d.out(G1)["eth_dst"] == "01:00:5e:01:02:03"


# ------------------------------------------------------------------ source check
def test_a_report_from_a_bound_source_goes_on_with_one_packet_in():
    rig = rig_with_macs()
    d = rig.send(G1, igmpv2(G1, "239.1.2.3"))
    assert d.packet_ins == 1 and d.out(UP)["ipv4_src"] == gip(G1) and d.out(LOCAL)
    assert d.out(G2) is not None  # a group frame: the other guests get it too


def test_a_report_from_another_guests_address_is_refused_and_stays_on_the_bridge():
    # before, the snooping flow sent every report on without a source check: a guest could
    # send IGMP (and with it any payload under IP protocol 2) from any address to the LAN
    rig = rig_with_macs()
    spoofed = from_bytes(bytes(Ether(src=mac(G1), dst="01:00:5e:00:00:16")
                               / IP(src=gip(G2), dst="239.1.2.3", ttl=1)
                               / IGMP(type=0x16, gaddr="239.1.2.3")))
    d = rig.send(G1, spoofed)
    assert not d.outputs, str(d)
    assert rig.core.counters["refused.ip-in-use"] == 1, dict(rig.core.counters)
    # the membership is the guest's own business (the copy was snooped): not a leak
    assert G1 in rig.core.model.groups.get("239.1.2.3", {})


def test_a_report_from_0_0_0_0_is_snooped_but_not_forwarded():
    rig = rig_with_macs()
    unspecified = from_bytes(bytes(Ether(src=mac(G1), dst="01:00:5e:00:00:16")
                                   / IP(src="0.0.0.0", dst="239.1.2.3", ttl=1)
                                   / IGMP(type=0x16, gaddr="239.1.2.3")))
    d = rig.send(G1, unspecified)
    assert not d.outputs and rig.core.counters["packet_in.igmp_unspecified"] == 1
    assert "0.0.0.0" not in rig.core.bindings
    assert G1 in rig.core.model.groups.get("239.1.2.3", {})


# ------------------------------------------------------------------ bad input
def test_a_flood_of_reports_is_bounded_per_guest_and_in_all_and_counted():
    rig = rig_with_macs(max_groups_per_port=50, max_groups=80)
    for i in range(40):   # 40 reports x 100 records: 4,000 groups asked for by one guest
        rig.send(G1, igmpv3(G1, [(4, f"239.{i}.{j}.1") for j in range(100)]))
    assert len(rig.core.model.groups) == 50
    assert rig.core.counters["refused.group-limit-port"] == 4000 - 50
    for i in range(3):
        rig.send(G2, mldv2(G2, [(4, f"ff15::{i}:{j}") for j in range(60)]))
    assert len(rig.core.model.groups) == 80   # the bridge's limit
    assert rig.core.counters["refused.group-limit-total"] > 0
    group_flows = [f for f in rig.sw.flows(10) if f.priority == 250]
    assert len(group_flows) == 80 + 6 + 0   # joined + well-known (no subnet known here)
    # what was joined works, and nothing bound an address
    assert rig.send(UP, unicast_udp("239.0.0.1")).ports() == {LOCAL, G1}
    assert set(rig.core.bindings) <= {gip(G1), gip(G2), lla(G2)}  # (the MLD's own source)


def test_reports_reach_the_controller_through_the_ports_meter():
    rig = Rig(config=CoreConfig(uplink="wlan0", meters=True), connect=False)
    rig.apply(rig.core.meter_info(262144, [], rig.now))
    rig.connect()
    rig.send(G1, unicast_from(G1))
    res = rig.sw.process(G1, igmpv2(G1, "239.1.2.3"), now=rig.now)
    assert res.to_controller and res.meters == [G1]
    res = rig.sw.process(G1, mldv2(G1, [(4, "ff15::1")]), now=rig.now)
    # the snooping copy, and (its source not bound yet) the learning trigger: both metered
    assert res.to_controller and set(res.meters) == {G1}


def test_malformed_reports_are_counted_never_learned():
    rig = rig_with_macs()
    good = igmpv2(G1, "239.1.2.3")["data"]
    bad_sum = bytearray(good)
    bad_sum[-1] ^= 0xFF
    not_group = igmpv2(G1, "10.1.2.3")["data"]
    short = good[:14 + 20 + 4]
    for data in (bytes(bad_sum), not_group, short):
        rig.core.packet_in(G1, data, rig.now, SNOOP)
    assert rig.core.model.groups == {}
    counters = rig.core.counters
    assert counters["malformed.group-report.bad-checksum"] == 1
    assert counters["malformed.group-report.bad-group"] == 1
    assert sum(v for k, v in counters.items() if k.startswith("malformed.")) == 3
    assert counters["errors.internal"] == 0


SEEDS = None


def seeds() -> list[bytes]:
    global SEEDS
    if SEEDS is None:
        SEEDS = [igmpv2(G1, "239.1.2.3")["data"],
                 igmpv3(G1, [(4, "239.1.2.3"), (3, "239.4.5.6"), (5, "232.1.1.1")])["data"],
                 mldv2(G1, [(4, "ff15::1234"), (2, "ff02::1:ff00:12")])["data"],
                 mld(G1, ICMPv6MLReport(mladdr="ff05::42"))["data"]]
    return SEEDS


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_reports_never_raise_and_never_bind(data):
    core = FUZZ_CORE
    seed = data.draw(st.sampled_from(seeds()))
    frame = mutate(data.draw, seed, (1, 4))
    core.bindings.clear()
    # as the snooping table's copy, or as the source check's learning trigger
    core.packet_in(G1, frame, 1000.0, data.draw(st.sampled_from([SNOOP, FROM_GUEST])))
    assert core.counters["errors.internal"] == 0
    if is_report(frame):   # still IGMP (or IPv6) by its headers: never binds an address
        # other than the frame's own source, to the port that sent it
        source = _ip_source(frame)
        assert all(ip == source and b.port_no == G1 for ip, b in core.bindings.items()), (
            core.bindings)
    for group, members in core.model.groups.items():
        assert set(members) == {G1} and (":" in group or 224 <= int(group.split(".")[0]) < 240)
    assert len(core.model.groups) <= core.config.max_groups_per_port


def _ip_source(frame: bytes) -> str | None:
    """The IPv4 or IPv6 source address of an Ethernet frame, canonical (None: neither)."""
    if len(frame) >= 30 and frame[12:14] == b"\x08\x00":
        return str(ipaddress.IPv4Address(frame[26:30]))
    if len(frame) < 38 or frame[12:14] != b"\x86\xdd":
        return None
    return str(ipaddress.IPv6Address(frame[22:38]))


def _fuzz_core() -> Core:
    rig = Rig()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))   # learns the MAC (first frame)
    rig.core.model.groups.clear()
    rig.core.bindings.clear()
    return rig.core


FUZZ_CORE = _fuzz_core()


# ------------------------------------------------------------------ status and state
def test_status_shows_groups_with_members_and_the_always_restored_ones():
    rig = rig_with_macs()
    rig.apply(rig.core.host_addresses([f"{HOST_IP}/24"], rig.now))
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    snap = rig.core.status(rig.now + 10)
    joined = [g for g in snap["groups"] if not g["always"]]
    assert joined == [{"group": "239.1.2.3", "mac": "01:00:5e:01:02:03", "always": False,
                       "members": [{"port": f"g{G1}", "port_no": G1,
                                    "expires": rig.now + INTERVAL,
                                    "expires_in": INTERVAL - 10}]}]
    always = {g["group"] for g in snap["groups"] if g["always"]}
    assert {"224.0.0.251", "ff02::fb", "239.255.255.250", "ff02::c", "10.0.0.255"} <= always
    text = render(snap, now=rig.now + 10)
    assert "239.1.2.3" in text and f"g{G1} (in {INTERVAL - 10}s)" in text
    from prometheus_client import CollectorRegistry, generate_latest
    from wlbridge.app.status_server import MetricsCollector

    registry = CollectorRegistry()
    registry.register(MetricsCollector(lambda: rig.core.status(rig.now)))
    assert "wlbridge_group_memberships 1.0" in generate_latest(registry).decode()


def test_groups_survive_a_controller_restart_through_the_state_file():
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    rig.send(G2, mldv2(G2, [(4, "ff15::1234")]))
    saved = rig.core.export_state()
    # a new controller, the same switch: the groups are kept through the restart
    rig.core = Core(rig.config)
    rig.core.restore_state(saved)
    mark = rig.sw.mark()
    rig.connect()
    rig.apply(rig.core.host_addresses([HOST_IP], rig.now))
    assert rig.sw.deleted_keys(mark) == set()
    d = rig.send(UP, unicast_udp("239.1.2.3"))
    assert d.ports() == {LOCAL, G1} and d.out(G1)["eth_dst"] == "01:00:5e:01:02:03"
    assert rig.send(UP, unicast_udp("ff15::1234")).ports() == {LOCAL, G2}
    assert rig.core.counters["groups.restored"] == 2
    # and they still end on time
    rig.advance(INTERVAL + 1)
    assert rig.core.model.groups == {}


def test_a_state_file_without_groups_still_loads_and_expired_ones_are_not_restored():
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    saved = rig.core.export_state()
    old = {k: v for k, v in saved.items() if k != "groups"}
    core = Core(rig.config)
    core.restore_state(old)
    assert core.export_state().get("groups") is None
    later = Core(rig.config)
    later.restore_state(saved)
    later.switch_connected(0xAB, rig.port_list(), rig.now + INTERVAL + 1)
    assert later.model.groups == {}
    # a saved membership whose port never comes back is dropped when it would have ended
    waiting = Core(rig.config)
    waiting.restore_state(saved)
    assert waiting.export_state()["groups"][0]["group"] == "239.1.2.3"
    waiting.tick(rig.now + INTERVAL + 1)
    assert waiting.export_state().get("groups") is None


def test_resync_keeps_group_flows_in_place():
    rig = rig_with_macs()
    rig.send(G1, igmpv2(G1, "239.1.2.3"))
    mark = rig.sw.mark()
    rig.connect()
    assert rig.sw.deleted_keys(mark) == set()
    assert rig.send(UP, unicast_udp("239.1.2.3")).ports() == {LOCAL, G1}
