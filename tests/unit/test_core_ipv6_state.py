"""IPv6 bindings across restarts, resyncs and station MAC changes, and in `status`."""

from __future__ import annotations

import json

from ofsim import arp_request
from rig import STATION, UP, Rig, ip, mac
from v6frames import ROUTER6_LL, dad, gua, ll, options, udp6
from wlbridge.core import Core, CoreConfig
from wlbridge.model.state import Port, parse_persistent

G1, G2 = 2, 3
LAN6 = "2001:db8:9::1"
ROUTER = "02:10:00:00:00:01"


def bound_rig() -> Rig:
    rig = Rig()
    rig.send(G1, dad(mac(G1), ll(G1)))
    rig.send(G1, udp6(mac(G1), ROUTER, gua(G1), LAN6))
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    assert {ll(G1), gua(G1), ip(G2)} <= set(rig.core.bindings)
    return rig


def both_ways_in_the_switch(rig: Rig) -> None:
    before = rig.packet_ins
    d = rig.send(UP, udp6(ROUTER, STATION, LAN6, gua(G1)))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1)
    d = rig.send(G1, udp6(mac(G1), ROUTER, gua(G1), LAN6))
    assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION
    assert rig.packet_ins == before


def test_state_file_keeps_ipv6_bindings_apart_and_a_restart_restores_them():
    rig = bound_rig()
    saved = json.loads(json.dumps(rig.core.export_state()))
    assert {b["ip"] for b in saved["bindings"]} == {ip(G2)}  # what an IPv4-only reader sees
    assert {b["ip"]: b["source"] for b in saved["bindings6"]} == {ll(G1): "nd",
                                                                  gua(G1): "ipv6"}
    # a new controller, the same switch: no outage, nothing to learn again
    core = Core(CoreConfig(uplink="wlan0"))
    core.restore_state(saved)
    rig.core = core
    rig.connect()
    assert core.bindings[gua(G1)].port_no == G1 and core.bindings[ll(G1)].source == "nd"
    both_ways_in_the_switch(rig)


def test_a_state_file_without_ipv6_is_read_as_before():
    saved = {"version": 1, "generation": 3,
             "guests": [{"name": "g2", "mac": mac(G1), "mac_source": "learned"}],
             "bindings": [{"ip": ip(G1), "port": "g2", "mac": mac(G1), "source": "arp",
                           "learned_at": 1.0, "expires": None, "lease": None}]}
    generation, _guests, bindings = parse_persistent(saved)
    assert generation == 3 and [b["ip"] for b in bindings] == [ip(G1)]


def test_a_switch_reconnect_keeps_ipv6_flows_without_a_gap():
    rig = bound_rig()
    mark = rig.sw.mark()
    rig.connect()
    assert not rig.sw.readded_keys(mark)  # replaced in place, never deleted first
    both_ways_in_the_switch(rig)


def test_status_lists_ipv6_addresses_with_the_guest():
    rig = bound_rig()
    status = rig.core.status(rig.now)
    g1 = next(g for g in status["guests"] if g["port_no"] == G1)
    assert {a["ip"]: a["source"] for a in g1["ips"]} == {ll(G1): "nd", gua(G1): "ipv6"}
    assert status["counters"]["bindings.learned.nd"] == 1


def test_a_station_mac_change_announces_guest_ipv6_addresses_with_unsolicited_nas():
    rig = bound_rig()
    new = "02:5a:00:00:00:99"
    rig.station = new
    d = rig.apply(rig.core.port_modified(Port(UP, "wlan0", new), rig.now))
    nas = [h for p, h in d.outputs if p == UP and h.get("icmpv6_type") == 136]
    assert sorted(h["ipv6_nd_target"] for h in nas) == sorted([ll(G1), gua(G1)])
    for h in nas:
        assert h["eth_src"] == new and options(h) == {"tll": new}
    garps = [h for p, h in d.outputs if p == UP and h.get("arp_op") == 1]
    assert [h["arp_spa"] for h in garps] == [ip(G2), "10.0.0.2"]
    # and the flows use the new MAC
    d = rig.send(G1, udp6(mac(G1), ROUTER, gua(G1), ROUTER6_LL))
    assert d.out(UP)["eth_src"] == new


def test_status_text_fits_ipv6_addresses_in_the_ip_column():
    from wlbridge.cli.status_client import render

    rig = bound_rig()
    long = "2001:db8:1:0:5054:ff:fe6b:3c11"
    rig.send(G1, udp6(mac(G1), ROUTER, long, LAN6))
    text = render(rig.core.status(rig.now), now=rig.now)
    rows = [line for line in text.splitlines() if "after 300s unused" in line]
    assert any(long in r for r in rows)
    assert len({r.index("after") for r in rows}) == 1  # one column for every address
