"""Tests of the OpenFlow table simulator itself (tests/ofsim.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ofsim import (
    AmbiguousMatch,
    Rejected,
    SimError,
    Switch,
    arp_reply,
    arp_request,
    assert_serialisable,
    ether,
    from_bytes,
    icmp_echo,
    ipv4,
    to_bytes,
    udp,
)
from wlbridge.compat import ofp
from wlbridge.compat import parser as p

M1, M2, M3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"
STA = "02:aa:00:00:00:01"
LOCAL, CTRL, ANY = ofp.OFPP_LOCAL, ofp.OFPP_CONTROLLER, ofp.OFPP_ANY


def out(port, max_len=0):
    return p.OFPActionOutput(port, max_len)


def sf(**kw):
    return p.OFPActionSetField(**kw)


def apply_(*acts):
    return p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(acts))


def flow(*acts, table=0, prio=100, goto=None, cookie=0, meter=None, insts=None, **match):
    """An ADD flow-mod; `acts` become one apply-actions instruction."""
    i = list(insts or [])
    if meter is not None:
        i.insert(0, p.OFPInstructionMeter(meter))
    if acts:
        i.append(apply_(*acts))
    if goto is not None:
        i.append(p.OFPInstructionGotoTable(goto))
    kw = {k: match.pop(k) for k in ("idle_timeout", "hard_timeout", "flags", "cookie_mask",
                                    "command", "out_port", "out_group") if k in match}
    return p.OFPFlowMod(None, table_id=table, priority=prio, cookie=cookie,
                        match=p.OFPMatch(**match), instructions=i, **kw)


def delete(strict=False, table=ofp.OFPTT_ALL, **kw):
    cmd = ofp.OFPFC_DELETE_STRICT if strict else ofp.OFPFC_DELETE
    kw.setdefault("out_port", ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    return flow(table=table, command=cmd, **kw)


@pytest.fixture
def sw():
    return Switch({1: "wlan0", 2: "vm1", 3: "vm2"})


ARP = arp_request(M1, "10.0.0.5", "10.0.0.1")


# ---------------------------------------------------------------- lookup
def test_highest_priority_wins_and_lower_is_fallback(sw):
    sw.apply([flow(out(1), prio=10), flow(out(3), prio=20, in_port=1)])
    assert sw.process(1, ARP).ports() == {3}
    r = sw.process(2, ARP)
    assert r.ports() == {1} and r.trace == [(0, 10, 0)]


def test_table_miss_drops_and_is_recorded(sw):
    r = sw.process(1, ARP)
    assert r.dropped and r.miss_table == 0 and r.outputs == [] and "DROPPED" in str(r)


def test_ambiguous_same_priority_raises(sw):
    sw.apply([flow(out(2), prio=5, in_port=1), flow(out(3), prio=5, eth_type=0x806)])
    with pytest.raises(AmbiguousMatch):
        sw.process(1, ARP)
    assert sw.process(2, ARP).ports() == {3}  # only one of them matches
    sw.apply(flow(out(3), prio=6, in_port=1))  # a higher flow resolves it
    assert sw.process(1, ARP).ports() == {3}


def test_masks_mac_ipv4_and_normalisation(sw):
    sw.apply([
        flow(out(2), prio=30, eth_dst=("01:00:00:00:00:00", "01:00:00:00:00:00")),
        flow(out(3), prio=20, eth_type=0x800, ipv4_dst=("10.1.0.0", "255.255.0.0")),
        flow(out(LOCAL), prio=10, eth_dst="02:AB:CD:00:00:01"),
    ])
    assert sw.process(1, ipv4(M1, "33:33:00:00:00:01", "1.1.1.1", "10.1.2.3")).ports() == {2}
    assert sw.process(1, ipv4(M1, M2, "1.1.1.1", "10.1.2.3")).ports() == {3}
    assert sw.process(1, ipv4(M1, M2, "1.1.1.1", "10.2.2.3")).dropped
    assert sw.process(1, ether(M1, "02:ab:cd:00:00:01", 0x88B5)).ports() == {LOCAL}
    assert sw.process(1, ether(M1, "02:AB:CD:00:00:01", 0x88B5)).ports() == {LOCAL}


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_ipv4_prefix_match_agrees_with_ipaddress(net, plen, addr):
    sw = Switch([1, 2])
    n = ipaddress.IPv4Network((net, plen), strict=False)
    sw.apply(flow(out(2), eth_type=0x800, ipv4_src=(str(n.network_address), str(n.netmask))))
    r = sw.process(1, ipv4(M1, M2, str(ipaddress.IPv4Address(addr)), "10.0.0.1"))
    assert (r.ports() == {2}) == (ipaddress.IPv4Address(addr) in n)


def test_vlan_match(sw):
    sw.apply([flow(out(2), prio=2, vlan_vid=(ofp.OFPVID_PRESENT | 7)),
              flow(out(3), prio=1, vlan_vid=ofp.OFPVID_NONE)])
    assert sw.process(1, ether(M1, M2, 0x800, vlan_vid=7)).ports() == {2}
    assert sw.process(1, ether(M1, M2, 0x800)).ports() == {3}
    assert sw.process(1, ether(M1, M2, 0x800, vlan_vid=8)).dropped


# ---------------------------------------------------------------- actions
def test_set_field_applies_to_later_outputs_only(sw):
    sw.apply(flow(out(2), sf(eth_src=STA), sf(arp_sha=STA), out(3), in_port=1, eth_type=0x806))
    r = sw.process(1, ARP)
    assert [port for port, _ in r.outputs] == [2, 3]
    assert r.out(2)["eth_src"] == M1 and r.out(3)["eth_src"] == STA and r.out(3)["arp_sha"] == STA
    assert "data" not in r.out(3)


def test_output_to_in_port_skipped_unless_in_port(sw):
    sw.apply([flow(out(1), out(2), in_port=1), flow(out(ofp.OFPP_IN_PORT), in_port=2)])
    r = sw.process(1, ARP)
    assert r.ports() == {2} and "in_port" in r.notes[0]
    assert sw.process(2, ARP).ports() == {2}


def test_all_and_flood_exclude_in_port_include_local(sw):
    sw.apply([flow(out(ofp.OFPP_ALL), in_port=1), flow(out(ofp.OFPP_FLOOD), in_port=2)])
    assert sw.process(1, ARP).ports() == {2, 3, LOCAL}
    assert sw.process(2, ARP).ports() == {1, 3, LOCAL}


def test_missing_port_noted_and_port_changes(sw):
    sw.apply(flow(out(9), in_port=1))
    r = sw.process(1, ARP)
    assert r.dropped and "no such port" in r.notes[0]
    sw.add_port(9, "vm9")
    assert sw.process(1, ARP).ports() == {9}
    sw.remove_port(9)
    assert sw.process(1, ARP).dropped
    with pytest.raises(SimError):
        sw.process(9, ARP)


def test_out_twice_is_an_error(sw):
    sw.apply(flow(out(2), out(2), in_port=1))
    with pytest.raises(AssertionError):
        sw.process(1, ARP).out(2)


def test_goto_table_pipeline(sw):
    sw.apply([flow(sf(eth_src=STA), goto=1, cookie=1, in_port=2),
              flow(out(1), table=1, cookie=2, eth_src=STA),
              flow(out(3), table=1, prio=1, cookie=3)])
    r = sw.process(2, ARP)
    assert r.ports() == {1} and r.trace == [(0, 100, 1), (1, 100, 2)]
    r = sw.process(1, ARP)
    assert r.dropped and r.miss_table == 0


def test_goto_miss_keeps_earlier_outputs(sw):
    sw.apply(flow(out(3), goto=4, in_port=1))
    r = sw.process(1, ARP)
    assert r.ports() == {3} and r.miss_table == 4 and not r.dropped


def test_write_and_clear_actions(sw):
    write = p.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [out(2), sf(eth_dst=M3)])
    clear = p.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, [])
    sw.apply([flow(insts=[write], goto=1, in_port=1), flow(table=1, in_port=1),
              flow(insts=[write], goto=1, in_port=3), flow(table=1, insts=[clear], in_port=3)])
    r = sw.process(1, ARP)
    assert r.ports() == {2} and r.out(2)["eth_dst"] == M3  # set-field before output
    assert sw.process(3, ARP).dropped


def test_controller_packet_in(sw):
    sw.apply([flow(out(CTRL, 0xFFFF), prio=0, cookie=7),
              flow(sf(eth_dst=M3), out(CTRL, 128), table=0, prio=5, cookie=8, in_port=2)])
    pi = sw.process(1, ARP).to_controller[0]
    assert (pi.table_id, pi.cookie, pi.reason, pi.in_port) == (0, 7, ofp.OFPR_NO_MATCH, 1)
    assert pi.data == ARP.get("data", to_bytes(ARP)) and pi.headers["arp_tpa"] == "10.0.0.1"
    pi = sw.process(2, ARP).to_controller[0]
    assert (pi.cookie, pi.reason, pi.max_len) == (8, ofp.OFPR_ACTION, 128)
    assert from_bytes(pi.data)["eth_dst"] == M3  # rebuilt after set-field
    msg = pi.to_msg()
    assert msg.match["in_port"] == 2 and msg.cookie == 8 and msg.total_len == len(msg.data)


def test_meter_recorded_not_dropping_and_must_exist(sw):
    with pytest.raises(Rejected):
        sw.apply(flow(out(2), meter=1))
    sw.apply([p.OFPMeterMod(None, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, 1,
                            [p.OFPMeterBandDrop(rate=10)]), flow(out(2), meter=1, in_port=1)])
    r = sw.process(1, ARP)
    assert r.meters == [1] and r.ports() == {2}
    res = sw.apply(p.OFPMeterMod(None, ofp.OFPMC_DELETE, meter_id=1))
    assert res.deleted == 1 and len(sw) == 0


def test_unsupported_action_and_normal(sw):
    with pytest.raises(NotImplementedError):
        sw.apply(flow(p.OFPActionPopVlan()))
    sw.apply(flow(out(ofp.OFPP_NORMAL)))
    with pytest.raises(NotImplementedError):
        sw.process(1, ARP)


# ---------------------------------------------------------------- flow-mods
def test_add_replaces_identical_key(sw):
    r = sw.apply([flow(out(2), cookie=1, in_port=1), flow(out(2), cookie=1, in_port=1)])
    assert (r.added, r.unchanged, r.replaced) == (1, 1, 0)
    sw.process(1, ARP)
    r = sw.apply(flow(out(3), cookie=2, in_port=1, idle_timeout=5))
    assert r.replaced == 1 and len(sw) == 1
    (f,) = sw.flows()
    assert (f.cookie, f.idle_timeout, f.packets) == (2, 5, 1)  # counters kept
    assert sw.process(1, ARP).ports() == {3}
    r = sw.apply(flow(out(3), prio=99, in_port=1))  # other priority: a new flow
    assert r.added == 1 and len(sw) == 2


def test_snapshot_is_canonical(sw):
    a = [flow(out(2), in_port=1, eth_dst="02:AA:00:00:00:01"),
         flow(out(CTRL, 0xFFFF), prio=0), flow(out(3), table=1, eth_type=0x800,
                                                ipv4_dst=("10.0.0.7", "255.255.255.0"))]
    sw.apply(a)
    other = Switch([1])
    other.apply([a[2], a[1], flow(out(2), in_port=1, eth_dst="02:aa:00:00:00:01")])
    assert sw.snapshot() == other.snapshot() and hash(sw.snapshot())
    spec = sw.snapshot()[-1]
    assert spec.match == (("eth_type", 0x800), ("ipv4_dst", ("10.0.0.0", "255.255.255.0")))
    assert spec.instructions == (("apply", (("output", 3),)),)


def test_delete_non_strict(sw):
    sw.apply([flow(out(2), in_port=1, eth_type=0x806, arp_tpa="10.0.0.1"),
              flow(out(2), in_port=1, eth_type=0x806, arp_tpa=("10.0.0.0", "255.255.255.0")),
              flow(out(2), in_port=1, eth_type=0x806, arp_tpa=("10.0.0.0", "255.0.0.0")),
              flow(out(2), in_port=2),
              flow(out(3), table=1, in_port=1)])
    r = sw.apply(delete(in_port=1, eth_type=0x806, arp_tpa=("10.0.0.0", "255.255.255.0")))
    assert r.deleted == 2  # the /32 and /24; the wider /8 stays
    assert sw.apply(delete(table=1, in_port=1)).deleted == 1
    assert sw.apply(delete(table=0, in_port=3)).deleted == 0
    assert sw.apply(delete()).deleted == 2 and len(sw) == 0


def test_delete_cookie_mask_and_out_port(sw):
    sw.apply([flow(out(2), cookie=0x101, in_port=1), flow(out(3), cookie=0x102, in_port=2),
              flow(out(3), cookie=0x201, in_port=3)])
    assert sw.apply(delete(cookie=0x100, cookie_mask=0xF00)).deleted == 2
    assert [f.cookie for f in sw.flows()] == [0x201]
    sw.apply(flow(out(1), cookie=0x202, in_port=2))
    assert sw.apply(delete(out_port=1)).deleted == 1
    assert [f.cookie for f in sw.flows()] == [0x201]


def test_delete_with_os_ken_default_out_port_is_rejected(sw):
    with pytest.raises(Rejected, match="OFPP_ANY"):
        sw.apply(p.OFPFlowMod(None, command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL))


def test_delete_strict(sw):
    sw.apply([flow(out(2), prio=10, in_port=1), flow(out(2), prio=20, in_port=1),
              flow(out(2), prio=10, in_port=1, eth_type=0x800)])
    assert sw.apply(delete(strict=True, prio=10, in_port=1, cookie=1, cookie_mask=1)).deleted == 0
    assert sw.apply(delete(strict=True, prio=10, in_port=1)).deleted == 1
    assert sorted((f.priority, len(f.match)) for f in sw.flows()) == [(10, 2), (20, 1)]


def test_modify_changes_instructions_only(sw):
    sw.apply([flow(out(2), cookie=1, in_port=1, idle_timeout=9), flow(out(1), cookie=2, in_port=2)])
    r = sw.apply(flow(out(3), command=ofp.OFPFC_MODIFY, cookie=1, cookie_mask=0xFF))
    assert r.modified == 1
    assert sw.process(1, ARP).ports() == {3} and sw.process(2, ARP).ports() == {1}
    f = next(f for f in sw.flows() if f.cookie == 1)
    assert f.idle_timeout == 9
    strict = flow(out(LOCAL), command=ofp.OFPFC_MODIFY_STRICT, prio=100, in_port=2)
    assert sw.apply(strict).modified == 1
    missing = flow(out(LOCAL), command=ofp.OFPFC_MODIFY_STRICT, prio=1, in_port=2)
    assert sw.apply(missing).modified == 0 and len(sw) == 2  # OF1.3: no add


def test_history_churn_detection(sw):
    sw.apply([flow(out(2), in_port=1), flow(out(3), in_port=2)])
    mark = sw.mark()
    sw.apply([flow(out(3), in_port=1)])  # replace in place: no churn
    assert sw.deleted_keys(mark) == set() and sw.readded_keys(mark) == set()
    sw.apply([delete(in_port=2), flow(out(3), in_port=2)])
    key = (0, 100, (("in_port", 2),))
    assert sw.deleted_keys(mark) == {key} == sw.readded_keys(mark)
    assert [c.kind for c in sw.changes(mark)] == ["replace", "delete", "add"]


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("bad", [
    lambda: flow(out(2), eth_type=0x806, goto=0),
    lambda: flow(out(2), table=3, goto=2),
    lambda: flow(out(2), table=255),
    lambda: flow(out(2), arp_tpa="10.0.0.1"),
    lambda: flow(out(2), eth_type=0x800, arp_tpa="10.0.0.1"),
    lambda: flow(out(2), eth_type=0x800, udp_dst=67),
    lambda: flow(out(2), eth_type=0x800, ip_proto=6, udp_dst=67),
    lambda: flow(out(2), ipv4_dst="10.0.0.1"),
    lambda: flow(out(2), eth_type=(0x800, 0xFF00), ipv4_dst="10.0.0.1"),
    lambda: flow(out(2), vlan_pcp=3),
    lambda: flow(sf(arp_tha=M1), out(2), in_port=1),
    lambda: flow(sf(ipv4_dst="10.0.0.1"), out(2), eth_type=0x806),
    lambda: flow(sf(udp_dst=68), out(2), eth_type=0x800),
    lambda: flow(sf(vlan_vid=ofp.OFPVID_PRESENT | 3), out(2)),
    lambda: flow(sf(eth_type=0x800), out(2)),
    lambda: flow(out(0)),
    lambda: flow(out(ofp.OFPP_TABLE)),
    lambda: flow(insts=[apply_(out(2)), apply_(out(3))]),
    lambda: p.OFPFlowMod(None, buffer_id=7, match=p.OFPMatch(), instructions=[]),
])
def test_rejected(sw, bad):
    with pytest.raises(Rejected):
        sw.apply(bad())
    assert len(sw) == 0


def mv(src, dst, n_bits, src_ofs=0, dst_ofs=0):
    return p.NXActionRegMove(src_field=src, dst_field=dst, n_bits=n_bits, src_ofs=src_ofs,
                             dst_ofs=dst_ofs)


@pytest.mark.parametrize("bad", [
    lambda: flow(mv("ipv4_dst", "eth_dst", 23), out(2)),                   # no eth_type
    lambda: flow(mv("ipv4_dst", "eth_dst", 23), out(2), eth_type=0x86DD),
    lambda: flow(mv("ipv4_dst", "eth_dst", 33), out(2), eth_type=0x800),   # past ipv4_dst
    lambda: flow(mv("ipv4_dst", "eth_dst", 23, dst_ofs=26), out(2), eth_type=0x800),
    lambda: flow(mv("eth_src", "eth_type", 16), out(2)),                   # read-only
    lambda: flow(mv("eth_src", "ipv6_dst", 48), out(2), eth_type=0x800),   # dst prerequisite
])
def test_a_move_ovs_would_refuse_is_rejected(sw, bad):
    with pytest.raises(Rejected):
        sw.apply(bad())


def test_a_move_copies_the_bits_it_names():
    sw = Switch([1, 2])
    sw.apply([flow(sf(eth_dst="01:00:5e:00:00:00"), mv("ipv4_dst", "eth_dst", 23), out(2),
                   eth_type=0x800),
              flow(sf(eth_dst="33:33:00:00:00:00"), mv("ipv6_dst", "eth_dst", 32), out(2),
                   eth_type=0x86DD),
              flow(mv("eth_src", "eth_dst", 8, src_ofs=40, dst_ofs=0), out(2), prio=50)])
    r = sw.process(1, udp(M1, STA, "10.0.0.5", "239.129.2.3", 5000, 5000))
    assert r.out(2)["eth_dst"] == "01:00:5e:01:02:03" and r.out(2)["ipv4_dst"] == "239.129.2.3"
    r = sw.process(1, ether(M1, STA, 0x86DD, ipv6_src="fe80::1", ipv6_dst="ff02::1:ff12:3456"))
    assert r.out(2)["eth_dst"] == "33:33:ff:12:34:56"
    # bits land where they are told to: the first byte of eth_src into the last of eth_dst
    r = sw.process(1, ether("0a:00:00:00:00:01", STA, 0x88B5))
    assert r.out(2)["eth_dst"] == "02:aa:00:00:00:0a"
    assert "move:ipv4_dst[0..22]->eth_dst[0..22]" in sw.dump()


def test_prerequisites_satisfied(sw):
    sw.apply([flow(sf(arp_tha=M1), sf(eth_dst=M1), out(2), eth_type=0x806, arp_tpa="10.0.0.9"),
              flow(sf(udp_dst=68), out(2), eth_type=0x800, ip_proto=17, udp_dst=67),
              flow(sf(ipv4_dst="10.0.0.2"), out(2), eth_type=0x800, ipv4_dst="10.0.0.1"),
              flow(sf(vlan_vid=ofp.OFPVID_PRESENT | 4), out(2),
                   vlan_vid=(ofp.OFPVID_PRESENT, ofp.OFPVID_PRESENT))])
    r = sw.process(1, udp(M1, M2, "10.0.0.5", "255.255.255.255", 68, 67))
    assert r.out(2)["udp_dst"] == 68
    assert sw.process(1, ether(M1, M2, 0x88B5, vlan_vid=9)).out(2)["vlan_vid"] == 4


# ---------------------------------------------------------------- timeouts
def test_idle_and_hard_expiry():
    sw = Switch([1, 2])
    rem = ofp.OFPFF_SEND_FLOW_REM
    sw.apply([flow(out(2), cookie=1, in_port=1, idle_timeout=10, flags=rem),
              flow(out(2), cookie=2, in_port=2, hard_timeout=15, flags=rem),
              flow(out(1), cookie=3, prio=1, idle_timeout=10)], now=100)
    sw.process(1, ARP, now=106)
    assert [m.cookie for m in sw.expire(111)] == []  # cookie 3 expired silently
    assert {f.cookie for f in sw.flows()} == {1, 2}
    (m,) = sw.expire(115)
    assert (m.cookie, m.reason, m.match["in_port"]) == (2, ofp.OFPRR_HARD_TIMEOUT, 2)
    (m,) = sw.expire(116)
    assert (m.cookie, m.reason, m.packet_count) == (1, ofp.OFPRR_IDLE_TIMEOUT, 1)
    assert len(sw) == 0 and [c.kind for c in sw.changes(3)] == ["expire"] * 3
    with pytest.raises(SimError):
        sw.process(1, ARP, now=1)


def test_delete_reports_flow_removed(sw):
    sw.apply(flow(out(2), cookie=4, in_port=1, flags=ofp.OFPFF_SEND_FLOW_REM))
    (m,) = sw.apply(delete()).removed
    assert (m.cookie, m.reason) == (4, ofp.OFPRR_DELETE)


# ---------------------------------------------------------------- packet-out, stats, bytes
def test_packet_out_table_and_direct(sw):
    sw.apply([flow(out(2), in_port=CTRL), flow(out(3), in_port=1)])
    po = p.OFPPacketOut(None, ofp.OFP_NO_BUFFER, CTRL, [out(ofp.OFPP_TABLE)], to_bytes(ARP))
    r = sw.packet_out(po)
    assert r.ports() == {2} and r.out(2)["arp_tpa"] == "10.0.0.1" and r.trace
    po = p.OFPPacketOut(None, ofp.OFP_NO_BUFFER, 1, [out(ofp.OFPP_TABLE)], None)
    assert sw.packet_out(po, ARP).ports() == {3}
    po = p.OFPPacketOut(None, ofp.OFP_NO_BUFFER, CTRL, [sf(eth_dst=M2), out(2), out(ofp.OFPP_ALL)],
                        to_bytes(ARP))
    r = sw.packet_out(po)
    assert [x for x, _ in r.outputs] == [2, 1, 2, 3, LOCAL] and r.outputs[0][1]["eth_dst"] == M2
    with pytest.raises(AssertionError, match="delivered 2 times"):
        r.out(2)
    with pytest.raises(Rejected):
        sw.packet_out(p.OFPPacketOut(None, 3, 1, [out(2)], None), ARP)
    with pytest.raises(Rejected):  # prerequisites against the packet itself
        sw.packet_out(p.OFPPacketOut(None, ofp.OFP_NO_BUFFER, CTRL, [sf(udp_dst=1)], None), ARP)


def test_flow_stats_and_ignored_messages(sw):
    sw.apply([flow(out(2), in_port=1, cookie=1), flow(out(3), table=1, cookie=2)])
    r = sw.apply([p.OFPBarrierRequest(None), p.OFPSetConfig(None, 0, 0xFFFF),
                  p.OFPFlowStatsRequest(None, table_id=1), p.OFPPortDescStatsRequest(None)])
    stats, ports = r.replies
    assert [f.cookie for f in stats] == [2] and ports[1] == "wlan0" and LOCAL in ports
    assert "cookie=0x1, table=0" in sw.dump() and "output:3" in sw.dump()


def test_bytes_round_trip():
    for pkt in [ARP, arp_reply(M2, "10.0.0.1", M1, "10.0.0.5"),
                udp(M1, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", 68, 67, b"\1" * 300),
                icmp_echo(M1, M2, "10.0.0.5", "10.0.0.1"),
                ipv4(M1, M2, "10.0.0.5", "10.0.0.1", 6, tcp_src=1234, tcp_dst=80, payload=b"x"),
                ether(M1, M2, 0x806, vlan_vid=5, vlan_pcp=0, arp_op=1, arp_spa="1.2.3.4",
                      arp_tpa="1.2.3.5", arp_sha=M1, arp_tha="00:00:00:00:00:00")]:
        h = from_bytes(to_bytes(pkt))
        assert h.pop("data") and h == pkt


def test_assert_serialisable():
    fm = flow(sf(eth_src=STA), out(1), in_port=2)
    assert_serialisable([fm, delete(), p.OFPBarrierRequest(None)])
    assert fm.datapath is None and fm.xid is None and fm.buf is None  # restored
    with pytest.raises(AssertionError):
        assert_serialisable(p.OFPFlowMod(None, instructions=[apply_(out(1 << 33))]))
