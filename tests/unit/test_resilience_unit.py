"""Resilience of the core (fake switch, injected clock): restarts of OVS and of the controller,
station MAC changes, meters, bounded state under floods, hostile packets."""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest
from dhcp_frames import ack, discover, headers_of
from flowsnap import without_generation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate
from ofsim import Rejected, Switch, arp_reply, arp_request, assert_serialisable, data_of, icmp_echo
from rig import HOST_IP, LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge import core as core_mod
from wlbridge.compat import ofp, parser
from wlbridge.core import Core, CoreConfig
from wlbridge.flows import cookies
from wlbridge.flows.pipeline import build_add
from wlbridge.model.state import Port, is_guest_ip
from wlbridge.openflow import fastof
from wlbridge.proto import dhcp as D
from wlbridge.proto.packets import FrameError, gratuitous_arp, parse_frame

G1, G2, G3 = 2, 3, 4
NEW_STATION = "02:5a:00:00:00:99"
MAX_METER = 262144  # what OVS 3.1's userspace datapath reports


def config(**kw) -> CoreConfig:
    return CoreConfig(uplink="wlan0", **{"meters": True, **kw})


def populated(**kw) -> Rig:
    rig = Rig(config=config(**kw))
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    rig.send(G1, arp_request(mac(G1), "10.0.0.40", "10.0.0.40"))
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    rig.send(UP, headers_of(ack(mac(G2), 7, "10.0.0.77")))  # a DHCP lease too
    return rig


def inbound(rig: Rig, addr: str, dst: str = STATION):
    return rig.send(UP, icmp_echo(ROUTER, dst, ROUTER_IP, addr))


def assert_forwarding(rig: Rig, station: str = STATION) -> None:
    """Every binding works both ways with no controller involvement."""
    for addr, port in ((ip(G1), G1), ("10.0.0.40", G1), (ip(G2), G2), ("10.0.0.77", G2)):
        d = inbound(rig, addr, station)
        assert d.ports() == {port} and d.packet_ins == 0, (addr, str(d))
        d = rig.send(port, icmp_echo(mac(port), ROUTER, addr, ROUTER_IP))
        assert d.ports() == {UP} and d.packet_ins == 0, (addr, str(d))
        assert d.out(UP)["eth_src"] == station


def fresh_switch(rig: Rig) -> Switch:
    return Switch({UP: "wlan0", **{p: f"g{p}" for p in rig.guest_ports}})


# ------------------------------------------------------------------ restarts
def test_resync_never_deletes_or_readds_a_live_flow():
    rig = populated()
    before = without_generation(rig.sw.snapshot())
    for _ in range(3):
        mark = rig.sw.mark()
        rig.connect()
        assert rig.sw.deleted_keys(mark) == set()
        assert rig.sw.readded_keys(mark) == set()
        assert without_generation(rig.sw.snapshot()) == before
    assert {cookies.decode(f.cookie).generation for f in rig.sw.flows()} == {rig.core.generation}
    assert_forwarding(rig)


def test_ovs_restart_empty_switch_gets_full_tables_from_state_without_relearning():
    rig = populated()
    before = without_generation(rig.sw.snapshot())
    meters = dict(rig.sw.meters)
    assert set(meters) == {G1, G2}
    learned = rig.packet_ins
    rig.apply(rig.core.switch_disconnected(rig.now))
    rig.sw = fresh_switch(rig)  # ovs-vswitchd restarted: no flows, no meters
    rig.apply(rig.core.meter_info(MAX_METER, [], rig.now))
    rig.connect()
    assert without_generation(rig.sw.snapshot()) == before
    assert set(rig.sw.meters) == set(meters)
    assert rig.packet_ins == learned  # nothing had to be learned again
    assert_forwarding(rig)


def test_controller_restart_with_state_file_gives_the_same_tables_make_before_break():
    rig = populated()
    before = without_generation(rig.sw.snapshot())
    saved = json.loads(json.dumps(rig.core.export_state()))
    rig.core = Core(rig.config)
    rig.core.restore_state(saved)
    mark = rig.sw.mark()
    # the switch kept its meters: the shell reports them, the core reconfigures, not re-adds
    rig.apply(rig.core.meter_info(MAX_METER, list(rig.sw.meters), rig.now))
    rig.connect()
    assert without_generation(rig.sw.snapshot()) == before
    assert rig.sw.deleted_keys(mark) == set() and rig.sw.readded_keys(mark) == set()
    assert rig.core.counters["bindings.restored"] == 4
    assert rig.core.bindings["10.0.0.77"].source == "dhcp"
    assert rig.core.bindings[ip(G1)].source == "arp"
    assert_forwarding(rig)


def test_meters_the_switch_already_has_must_be_reported():
    rig = populated()
    rig.core = Core(rig.config)
    with pytest.raises(Rejected, match="meter .* exists"):
        rig.connect()  # without `meter_info` a new controller would ADD existing meters


def test_port_missing_at_reconnect_is_parked_and_restored_when_it_returns():
    rig = populated()
    rig.apply(rig.core.switch_disconnected(rig.now))
    rig.guest_ports.remove(G1)
    rig.sw = fresh_switch(rig)
    rig.apply(rig.core.meter_info(MAX_METER, [], rig.now))
    rig.connect()
    assert ip(G1) not in rig.core.bindings and inbound(rig, ip(G1)).ports() == {LOCAL}
    assert set(rig.sw.meters) == {G2}
    rig.sw.add_port(G1, f"g{G1}")
    rig.guest_ports.append(G1)
    rig.apply(rig.core.port_added(Port(G1, f"g{G1}", "fe:00:00:00:00:01"), rig.now))
    assert rig.core.guests[G1].mac == mac(G1)
    assert inbound(rig, ip(G1)).ports() == {G1}
    assert set(rig.sw.meters) == {G1, G2}


def test_renamed_port_at_reconnect_forgets_the_old_guest():
    rig = populated()
    rig.sw = fresh_switch(rig)
    rig.apply(rig.core.meter_info(MAX_METER, [], rig.now))
    ports = [p if p.port_no != G1 else Port(G1, "other", p.hw_addr) for p in rig.port_list()]
    rig.apply(rig.core.switch_connected(0xAB, ports, rig.now))
    assert rig.core.guests[G1].name == "other" and rig.core.guests[G1].mac is None
    assert ip(G1) not in rig.core.bindings


# ------------------------------------------------------------------ station changes
def test_station_mac_change_rewrites_every_flow_and_announces_guests():
    rig = populated()
    mark = rig.sw.mark()
    rig.station = NEW_STATION
    d = rig.apply(rig.core.port_modified(Port(UP, "wlan0", NEW_STATION), rig.now))
    dump = rig.sw.dump()
    assert STATION not in dump and NEW_STATION in dump
    assert rig.sw.readded_keys(mark) == set()
    # LAN hosts learn the new MAC for every guest and host address at once
    garps = [h for p, h in d.outputs if p == UP and h.get("eth_type") == 0x0806]
    assert {h["arp_spa"] for h in garps} == {ip(G1), "10.0.0.40", ip(G2), "10.0.0.77", HOST_IP}
    for h in garps:
        assert h["eth_src"] == NEW_STATION and h["arp_sha"] == NEW_STATION
        assert h["eth_dst"] == "ff:ff:ff:ff:ff:ff" and h["arp_tpa"] == h["arp_spa"]
    assert rig.core.counters["station.mac_changes"] == 1
    assert_forwarding(rig, NEW_STATION)


def test_announcements_are_repeated_by_the_tick():
    rig = populated()
    rig.station = NEW_STATION
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", NEW_STATION), rig.now))
    counts = []
    for _ in range(5):
        d = rig.advance(1.0)
        counts.append(len([1 for p, h in d.outputs if p == UP and h.get("arp_op") == 1]))
    assert counts == [5, 0, 5, 0, 0]


def test_station_mac_changed_while_disconnected():
    rig = populated()
    rig.apply(rig.core.switch_disconnected(rig.now))
    rig.station = NEW_STATION
    rig.apply(rig.core.meter_info(MAX_METER, list(rig.sw.meters), rig.now))
    d = rig.connect()
    assert STATION not in rig.sw.dump()
    assert len([1 for p, h in d.outputs if p == UP and h.get("arp_op") == 1]) == 5
    assert_forwarding(rig, NEW_STATION)


def test_uplink_down_and_up_keeps_flows_and_announces_guests():
    rig = populated()
    before = rig.sw.snapshot()
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", STATION, up=False), rig.now))
    d = rig.apply(rig.core.port_modified(Port(UP, "wlan0", STATION, up=True), rig.now))
    assert rig.sw.snapshot() == before
    assert len([1 for p, h in d.outputs if p == UP and h.get("arp_op") == 1]) == 5
    assert_forwarding(rig)


def test_gratuitous_arp_frame():
    frame = parse_frame(gratuitous_arp(STATION, "10.1.2.3"))
    assert frame.eth_dst == "ff:ff:ff:ff:ff:ff" and frame.eth_src == STATION
    assert frame.arp.op == 1 and frame.arp.src_ip == frame.arp.dst_ip == "10.1.2.3"
    assert (frame.arp.src_mac, frame.arp.dst_mac) == (STATION, "00:00:00:00:00:00")
    assert len(gratuitous_arp(STATION, "10.1.2.3")) == 60


# ------------------------------------------------------------------ meters
def test_controller_bound_flows_of_guests_are_metered():
    rig = populated()
    to_controller = [f for f in rig.sw.flows() if "CONTROLLER" in str(f)
                     and dict(f.match).get("in_port") in (G1, G2)]
    assert to_controller
    for f in to_controller:
        assert f.instructions[0] == ("meter", cookies.decode(f.cookie).subject), str(f)
    band = rig.sw.meters[G1].bands[0]
    assert band.rate == band.burst_size == rig.config.meter_pps
    rig.add_port(G3)
    assert G3 in rig.sw.meters
    rig.remove_port(G3)
    assert G3 not in rig.sw.meters


def test_switch_without_meters_gets_unmetered_flows_and_stale_meters_go():
    rig = populated()
    rig.apply(rig.core.meter_info(0, list(rig.sw.meters), rig.now))
    mark = rig.sw.mark()
    rig.connect()
    assert rig.sw.meters == {}
    assert not [f for f in rig.sw.flows() if f.instructions and f.instructions[0][0] == "meter"]
    assert rig.sw.readded_keys(mark) == set()
    assert_forwarding(rig)


def test_ports_beyond_the_switchs_meter_range_go_unmetered():
    rig = Rig(guests=(2, 1000, 1001, 70000), config=config(), connect=False)
    rig.core.meter_info(1000, [], rig.now)
    rig.connect()
    assert set(rig.sw.meters) == {2, 1000}  # up to the switch's largest meter id, included

    def meters_of(port):
        return {f.instructions[0][1] if f.instructions[0][0] == "meter" else None
                for f in rig.sw.flows() if "CONTROLLER" in str(f)
                and dict(f.match).get("in_port") == port}

    assert meters_of(1000) == {1000} and meters_of(1001) == {None}


# ------------------------------------------------------------------ floods and bounds
def _random_mac(rnd: random.Random) -> str:
    return "02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5))


def _random_ip(rnd: random.Random) -> str:
    return f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"


def _flood_frame(rnd: random.Random, own: str) -> bytes:
    kind = rnd.randrange(6)
    src = _random_mac(rnd)
    if kind == 0:  # spoofed source MAC
        return data_of(arp_request(src, _random_ip(rnd), _random_ip(rnd)))
    if kind == 1:  # own MAC, random addresses claimed
        a = _random_ip(rnd)
        return data_of(arp_request(own, a, a))
    if kind == 2:
        return data_of(icmp_echo(own, ROUTER, _random_ip(rnd), ROUTER_IP))
    if kind == 3:  # DHCP for someone else's chaddr
        return discover(own, rnd.getrandbits(32), chaddr=src)
    if kind == 4:  # DHCP from a spoofed MAC
        return discover(src, rnd.getrandbits(32))
    return discover(own, rnd.getrandbits(32))  # a new transaction each time


@pytest.mark.parametrize("mode", ["broadcast", "client-id"])
def test_flood_from_one_port_grows_no_controller_structure(mode):
    rig = Rig(config=config(dhcp_mode=mode))
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    core = rig.core
    rnd = random.Random(6)

    def flood(n: int) -> None:
        for _ in range(n):
            core.packet_in(G1, _flood_frame(rnd, mac(G1)), rig.now)
            rig.now += 0.0005

    tracemalloc.start()  # before the tables fill, so that their turnover is seen as such
    try:
        flood(3000)
        first = tracemalloc.take_snapshot()
        flood(3000)
        second = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in second.compare_to(first, "filename")
                 if "wlbridge" in s.traceback[0].filename)
    assert growth < 64 * 1024, growth

    assert len(core.bindings) <= core.config.max_ips_per_port
    assert {b.port_no for b in core.bindings.values()} == {G1}
    # spoofed MACs are guests behind the port up to its bound, then refused
    assert set(core.guests) == {G1, G2}
    assert len(core.model.by_mac) == len(core.guests[G1].macs) == core.config.max_macs_per_port
    assert len(core.telemetry.logged) <= 20, core.telemetry.logged
    assert len(core.counters) <= 40, sorted(core.counters)
    assert len(core.dhcp.relay) <= core.dhcp.relay.max_per_port
    assert core.counters["refused.mac-limit"] > 1000
    assert core.counters["refused.port-limit"] > 1000
    assert core.counters["errors.internal"] == 0
    # meanwhile the other guest's DHCP still goes out
    d = rig.send(G2, headers_of(discover(mac(G2), 99)))
    assert d.ports() == {UP}
    assert D.parse(data_of(d.out(UP))).xid == 99


def test_flood_of_lan_claims_to_guest_addresses_is_bounded():
    rig = populated()
    rnd = random.Random(7)
    for _ in range(3000):
        rig.core.packet_in(UP, data_of(arp_reply(_random_mac(rnd), ip(G1), STATION, HOST_IP)),
                           rig.now)
    assert rig.core.counters["conflicts.uplink"] == 3000
    assert len(rig.core.telemetry.logged) <= 5
    assert rig.core.bindings[ip(G1)].port_no == G1


def test_warning_log_keys_are_bounded():
    core = Core(config())
    for i in range(5 * core_mod.LOGGED_MAX):
        core.telemetry.log_once(f"k{i}", "test %s", i)
    assert len(core.telemetry.logged) <= core_mod.LOGGED_MAX


def test_parked_records_are_bounded():
    rig = Rig(guests=(), config=config(max_bindings=8))
    for ports in (range(2, 12), range(12, 22)):  # two sets of guests, each gone in turn
        rig.guest_ports = list(ports)
        rig.sw = fresh_switch(rig)
        rig.apply(rig.core.meter_info(MAX_METER, [], rig.now))
        rig.connect()
        for p in rig.guest_ports:
            rig.send(p, arp_request(mac(p), ip(p), ip(p)))
        assert len(rig.core.bindings) == 8 and len(rig.core.guests) == 10
        rig.guest_ports = []
        rig.sw = fresh_switch(rig)
        rig.apply(rig.core.meter_info(MAX_METER, [], rig.now))
        rig.connect()
    saved = rig.core.export_state()  # no guest port now: all of it parked, 20 guests known
    assert len(saved["bindings"]) == 8 and len(saved["guests"]) == 8
    assert {b["port"] for b in saved["bindings"]} <= {f"g{p}" for p in range(12, 22)}


# ------------------------------------------------------------------ fast OpenFlow encoding
def _slow_flow_mod(fm):
    """The same flow-mod built the plain os-ken way (no fastof class anywhere in it)."""
    insts = []
    for inst in fm.instructions:
        if isinstance(inst, parser.OFPInstructionActions):
            acts = [parser.OFPActionSetField(**{a.key: a.value})
                    if isinstance(a, parser.OFPActionSetField) else a for a in inst.actions]
            inst = parser.OFPInstructionActions(inst.type, acts)
        elif isinstance(inst, parser.OFPInstructionGotoTable):
            inst = parser.OFPInstructionGotoTable(inst.table_id)
        elif isinstance(inst, parser.OFPInstructionMeter):
            inst = parser.OFPInstructionMeter(inst.meter_id, inst.type)
        assert type(inst).__module__ == parser.__name__, inst
        insts.append(inst)
    return parser.OFPFlowMod(
        datapath=None, cookie=fm.cookie, cookie_mask=fm.cookie_mask, table_id=fm.table_id,
        command=fm.command, idle_timeout=fm.idle_timeout, hard_timeout=fm.hard_timeout,
        priority=fm.priority, buffer_id=fm.buffer_id, out_port=fm.out_port,
        out_group=fm.out_group, flags=fm.flags, match=parser.OFPMatch(**dict(fm.match.items())),
        instructions=insts)


def _wire(msg) -> bytes:
    import importlib

    from wlbridge.compat import FRAMEWORK

    proto = importlib.import_module(f"{FRAMEWORK}.ofproto.ofproto_protocol")
    msg.datapath = proto.ProtocolDesc(version=ofp.OFP_VERSION)
    msg.set_xid(42)
    msg.serialize()
    return bytes(msg.buf)


def test_fast_flow_mods_equal_os_kens_byte_for_byte():
    rig = populated()
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", NEW_STATION), rig.now))
    specs = rig.core.flow_specs()
    assert len(specs) > 40
    assert any(isinstance(i, parser.OFPInstructionMeter)
               for s in specs for i in build_add(s, 5).instructions)
    for spec in specs:
        fm = build_add(spec, 5)
        assert type(fm) is fastof.OFPFlowMod
        slow = _slow_flow_mod(fm)
        assert type(slow) is parser.OFPFlowMod
        assert list(fm.match.items()) == list(slow.match.items()), spec
        # the second flow-mod shares the first's instructions, packed once
        assert _wire(fm) == _wire(build_add(spec, 5)) == _wire(slow), spec


def test_fast_match_falls_back_for_unknown_fields_and_odd_values():
    m = fastof.match((("eth_dst", "02:AA:00:00:00:01"),))
    assert type(m) is parser.OFPMatch and m["eth_dst"] == "02:aa:00:00:00:01"
    masked = fastof.match((("ipv4_dst", ("224.0.0.0", "240.0.0.0")), ("eth_type", 0x800)))
    assert isinstance(masked, fastof.OFPMatch)
    assert _tlvs(masked) == _tlvs(parser.OFPMatch(eth_type=0x800,
                                                  ipv4_dst=("224.0.0.0", "240.0.0.0")))
    assert fastof.oxm_tlv("vlan_vid", 0x1005) == fastof.os_ken_tlv("vlan_vid", 0x1005)


def _tlvs(match) -> bytes:
    buf = bytearray()
    match.serialize(buf, 0)
    return bytes(buf)


# ------------------------------------------------------------------ hostile packets
def _seed_frames() -> list[tuple[str, bytes]]:
    vlan = bytearray(data_of(arp_request(mac(G1), ip(G1), ROUTER_IP)))
    vlan[12:14] = b"\x81\x00"
    vlan[14:14] = b"\x00\x0a\x08\x06"
    return [
        ("guest", data_of(arp_request(mac(G1), "10.0.0.50", ROUTER_IP))),
        ("guest", data_of(arp_reply(mac(G1), "10.0.0.51", ROUTER, ROUTER_IP))),
        ("guest", data_of(arp_request(mac(G1), "0.0.0.0", "10.0.0.52"))),
        ("guest", data_of(icmp_echo(mac(G1), ROUTER, "10.0.0.53", ROUTER_IP))),
        ("guest", discover(mac(G1), 0x1234)),
        ("guest", bytes(vlan)),
        ("uplink", ack(mac(G1), 0x1234, "10.0.0.54")),
        ("uplink", ack(mac(G2), 0x1235, "10.0.0.55", eth_dst=STATION)),
        ("uplink", data_of(arp_request(ROUTER, ip(G1), "10.0.0.1"))),
        ("uplink", data_of(icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G1)))),
    ]


SEEDS = _seed_frames()


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    where, seed = draw(st.sampled_from(SEEDS))
    return where, mutate(draw, seed, (0, 5),
                         ("flip", "set", "truncate", "insert", "delete", "zero"), chunk=8)


def _allowed_bindings(where: str, data: bytes, guest_macs: set, macs: dict) -> set:
    """Addresses a frame may legitimately bind, judged from its parsed headers: from a
    guest port, only a frame from one of the guest MACs (`guest_macs`) the port carried
    before it (a new MAC's first frame teaches the MAC only)."""
    try:
        frame = parse_frame(data)
    except FrameError:
        return set()
    if where == "uplink":
        if not frame.is_dhcp_server:
            return set()
        try:
            msg = D.parse(data)
            event = D.lease_event(msg)
        except D.DhcpError:
            return set()
        ok = event is not None and event.kind == "bind" and msg.chaddr in macs
        return {event.ip} if ok and event.ip and is_guest_ip(event.ip) else set()
    if frame.eth_src not in guest_macs or frame.is_dhcp_client:
        return set()
    if frame.arp is not None and frame.arp.src_mac == frame.eth_src:
        return {frame.arp.src_ip} if is_guest_ip(frame.arp.src_ip) else set()
    if frame.ipv4 is not None:
        return {frame.ipv4.src} if is_guest_ip(frame.ipv4.src) else set()
    return set()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_mutated_frames_never_raise_and_never_bind_from_invalid_packets(frames):
    rig = Rig(config=config())
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    core = rig.core
    for where, data in frames:
        macs = {m: g.port_no for g in core.guests.values() for m in g.macs}
        before = dict(core.bindings)
        port = UP if where == "uplink" else G1
        carried = set(core.guests[G1].macs)
        msgs = core.packet_in(port, data, rig.now)
        assert_serialisable(msgs)
        assert core.counters["errors.internal"] == 0
        new = {a for a, b in core.bindings.items() if before.get(a) != b}
        assert new <= _allowed_bindings(where, data, carried, macs), (where, data.hex())
        # a MAC new to a port: its first frame teaches the MAC at most, no address
        before = set(core.bindings)
        known = set(core.guests[G2].macs)
        core.packet_in(G2, data, rig.now)
        macs = {m: g.port_no for g in core.guests.values() for m in g.macs}
        assert set(core.bindings) <= before | _allowed_bindings("guest", data, known, macs)


