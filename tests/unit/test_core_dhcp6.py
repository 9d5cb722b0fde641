"""DHCPv6 through the whole core and the fake switch (issue 12, items 4 and 5): packet fate,
leases learned from Replies, guests that act as servers, bad frames.

Guests ``G1``/``G2`` learn their MAC from their first DHCPv6 frame, as a fresh VM does.  The
LAN's DHCPv6 server answers to the guest's link-local address at the station MAC (what
Neighbor Discovery through wlbridge gives it).  Frames are built with scapy.
"""

from __future__ import annotations

import pytest
import rig as rig_module
from dhcp6_frames import (
    SERVER_LL,
    SERVER_MAC,
    DHCP6_Advertise,
    DHCP6_Decline,
    DHCP6_InfoRequest,
    DHCP6_Reconf,
    DHCP6_RelayReply,
    DHCP6_Release,
    DHCP6_Renew,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    client_msg,
    duid,
    headers6,
    ia_na,
    ia_ta,
    leased,
    link_local,
    opt,
    raw_dhcp6,
    server_msg,
)
from ofsim import data_of
from rig import LOCAL, STATION, UP, Delivery, Rig, mac
from scapy.layers.dhcp6 import DHCP6OptIA_NA, DHCP6OptIAAddress, DHCP6OptStatusCode
from wlbridge.core import Core, CoreConfig
from wlbridge.model.state import Port, parse_persistent
from wlbridge.proto import dhcp6 as D

G1, G2 = 2, 3
XID1, XID2 = 0x111111, 0x222222
VALID, PREFERRED = 4000, 3000  # longer than the idle timeout (300 s)
ETH_DST, ETH_SRC = set(range(6)), set(range(6, 12))


@pytest.fixture(autouse=True)
def tolerant_switch(monkeypatch):
    """The rig parses packet-outs with os-ken, which may reject odd payloads; the switch
    itself would not care."""
    monkeypatch.setattr(rig_module, "from_bytes", headers6)


def send(rig: Rig, port: int, raw: bytes) -> Delivery:
    d = rig.send(port, headers6(raw))
    assert rig.core.counters["errors.internal"] == 0
    return d


def solicit(port: int, xid: int, **kw) -> bytes:
    kw.setdefault("src", link_local(port))
    return client_msg(DHCP6_Solicit, mac(port), xid, ia_na(), **kw)


def request(port: int, xid: int, *addresses: str) -> bytes:
    return client_msg(DHCP6_Request, mac(port), xid,
                      ia_na(*[(a, 0, 0) for a in addresses]), src=link_local(port))


def reply(port: int, xid: int, *opts, kind=DHCP6_Reply, **kw) -> bytes:
    """The server's answer to the guest on `port`, to its link-local at the station MAC."""
    kw.setdefault("dst", link_local(port))
    kw.setdefault("eth_dst", STATION)
    return server_msg(kind, mac(port), xid, *opts, **kw)


def lease_of(port: int, n: int = 0, valid: int = VALID, preferred: int = PREFERRED):
    return ia_na((leased(port, n), preferred, valid), t1=preferred // 2, t2=preferred)


def changed(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i in range(len(a)) if a[i] != b[i]}


def four_steps(rig: Rig, port: int, xid: int, valid: int = VALID) -> Delivery:
    """Solicit, Advertise, Request, Reply for the guest on `port`; the Reply's delivery."""
    assert send(rig, port, solicit(port, xid)).ports() == {UP}
    assert send(rig, UP, reply(port, xid, lease_of(port, valid=valid),
                               kind=DHCP6_Advertise)).ports() == {port}
    assert send(rig, port, request(port, xid + 1, leased(port))).ports() == {UP}
    return send(rig, UP, reply(port, xid + 1, lease_of(port, valid=valid)))


def inbound(rig: Rig, address: str) -> Delivery:
    """A LAN host's UDP datagram to `address`, sent to the station MAC."""
    return send(rig, UP, raw_dhcp6(SERVER_MAC, STATION, "2001:db8::1", address, b"hi",
                                   sport=4000, dport=5000))


def dhcp6_bindings(rig: Rig) -> dict[str, int]:
    return {a: b.port_no for a, b in rig.core.bindings.items() if b.source == "dhcp6"}


# =================================================================== out
def test_solicit_leaves_only_by_uplink_from_the_station_mac_payload_untouched():
    rig = Rig()
    raw = solicit(G1, XID1)
    d = send(rig, G1, raw)
    assert d.ports() == {UP} and not d.dead_ends
    out = data_of(d.out(UP))
    assert out[6:12] == bytes.fromhex(STATION.replace(":", ""))
    assert changed(raw, out) <= ETH_SRC  # DUID, IA_NA, checksums: nothing else touched
    assert D.parse(out).client_id == duid(mac(G1))  # the DUID-LL(T) keeps the guest MAC
    assert rig.core.counters["dhcp6.solicit.from_guest"] == 1


def test_retransmitted_solicits_keep_going_out_once_each():
    rig = Rig()
    for _ in range(3):
        assert send(rig, G1, solicit(G1, XID1)).ports() == {UP}
    assert rig.core.counters["dhcp6.solicit.from_guest"] == 3


def test_client_message_to_the_host_goes_to_local_unchanged():
    rig = Rig()
    raw = solicit(G1, XID1, eth_dst=STATION, dst="fe80::5a:ff:fe00:1")
    d = send(rig, G1, raw)
    assert d.ports() == {LOCAL} and data_of(d.out(LOCAL)) == raw


# =================================================================== in, and learning
def test_reply_reaches_the_guest_with_its_mac_and_binds_the_ia_na_address():
    rig = Rig(guests=(G1, G2))
    send(rig, G2, solicit(G2, XID2))  # another guest, another transaction
    assert inbound(rig, leased(G1)).ports() == {LOCAL}  # not bound yet: the host's
    raw = reply(G1, XID1 + 1, lease_of(G1))
    send(rig, G1, solicit(G1, XID1))
    send(rig, G1, request(G1, XID1 + 1, leased(G1)))
    d = send(rig, UP, raw)
    assert d.ports() == {G1}
    out = data_of(d.out(G1))
    assert out[:6] == bytes.fromhex(mac(G1).replace(":", ""))
    assert changed(raw, out) <= ETH_DST
    b = rig.core.bindings[leased(G1)]
    assert (b.port_no, b.mac, b.source, b.lease) == (G1, mac(G1), "dhcp6", VALID)
    assert b.expires == rig.now + VALID
    # the address now reaches the guest, with its MAC, without the controller
    d = inbound(rig, leased(G1))
    assert d.ports() == {G1} and d.out(G1)["eth_dst"] == mac(G1) and d.packet_ins == 0
    # and the guest's traffic from it leaves with the station MAC, without the controller
    d = send(rig, G1, raw_dhcp6(mac(G1), SERVER_MAC, leased(G1), "2001:db8::1", b"x",
                                sport=5000, dport=4000))
    assert d.ports() == {UP} and d.out(UP)["eth_src"] == STATION and d.packet_ins == 0
    # visible in status and in the saved state
    ips = {g["port"]: g["ips"] for g in rig.core.status(rig.now)["guests"]}
    assert [(a["ip"], a["source"]) for a in ips[f"g{G1}"]] == [(leased(G1), "dhcp6")]
    saved = [r for r in rig.core.export_state()["bindings6"] if r["ip"] == leased(G1)]
    assert saved and saved[0]["source"] == "dhcp6" and saved[0]["lease"] == VALID


def test_advertise_is_delivered_but_binds_nothing():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    d = send(rig, UP, reply(G1, XID1, lease_of(G1), kind=DHCP6_Advertise))
    assert d.ports() == {G1} and not dhcp6_bindings(rig)


def test_ia_ta_temporary_addresses_are_bound_too():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    send(rig, UP, reply(G1, XID1, lease_of(G1), ia_ta((leased(G1, 1), 60, 120))))
    assert dhcp6_bindings(rig) == {leased(G1): G1, leased(G1, 1): G1}
    assert rig.core.bindings[leased(G1, 1)].lease == 120


def test_replies_of_two_guests_are_told_apart_by_transaction():
    rig = Rig()
    four_steps(rig, G1, XID1)
    four_steps(rig, G2, XID2)
    assert dhcp6_bindings(rig) == {leased(G1): G1, leased(G2): G2}
    assert inbound(rig, leased(G2)).ports() == {G2}


def test_reply_for_no_guest_transaction_is_the_hosts():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))  # the guest's MAC is known, its xid is another
    raw = reply(G1, 0x777777, lease_of(G1), dst="fe80::5a:ff:fe00:1")
    d = send(rig, UP, raw)
    assert d.ports() == {LOCAL} and data_of(d.out(LOCAL)) == raw
    assert not dhcp6_bindings(rig)
    assert rig.core.counters["dhcp6.reply.to_host"] == 1


@pytest.mark.parametrize("what", ["other-duid", "other-destination", "no-client-id"])
def test_reply_that_does_not_match_the_transaction_binds_nothing(what):
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    kw = {"other-duid": {"client_id": duid(mac(G2))},
          "other-destination": {"dst": link_local(G2)},
          "no-client-id": {"with_client_id": False}}[what]
    d = send(rig, UP, reply(G1, XID1, lease_of(G1), **kw))
    assert G1 not in d.ports() and not dhcp6_bindings(rig)


def test_reply_is_delivered_before_its_flows_are_installed():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    msgs = rig.core.packet_in(UP, reply(G1, XID1, lease_of(G1)), rig.now)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds[0] == "OFPPacketOut" and "OFPFlowMod" in kinds[1:]


def test_renewal_refreshes_the_lease_and_zero_valid_lifetime_unbinds():
    rig = Rig()
    four_steps(rig, G1, XID1)
    rig.advance(1000)
    send(rig, G1, client_msg(DHCP6_Renew, mac(G1), 0x333333, ia_na((leased(G1), 0, 0)),
                             src=link_local(G1)))
    send(rig, UP, reply(G1, 0x333333, lease_of(G1)))
    assert rig.core.bindings[leased(G1)].expires == rig.now + VALID
    send(rig, G1, client_msg(DHCP6_Renew, mac(G1), 0x444444, ia_na((leased(G1), 0, 0)),
                             src=link_local(G1)))
    d = send(rig, UP, reply(G1, 0x444444, lease_of(G1, valid=0, preferred=0)))
    assert d.ports() == {G1} and not dhcp6_bindings(rig)
    assert inbound(rig, leased(G1)).ports() == {LOCAL}


def test_lease_ends_at_the_valid_lifetime_not_when_idle():
    rig = Rig()
    four_steps(rig, G1, XID1)
    flows_before = rig.sw.snapshot()
    rig.advance(rig.config.idle_timeout + 60)  # no traffic at all: a DHCPv6 lease stays
    assert rig.sw.snapshot() == flows_before  # no idle-timed flow of the binding expired
    assert inbound(rig, leased(G1)).ports() == {G1}
    rig.advance(VALID)
    assert not dhcp6_bindings(rig) and inbound(rig, leased(G1)).ports() == {LOCAL}
    assert rig.core.counters["bindings.expired.lease"] == 1


@pytest.mark.parametrize("kind", [DHCP6_Release, DHCP6_Decline])
def test_release_and_decline_unbind(kind):
    rig = Rig()
    four_steps(rig, G1, XID1)
    d = send(rig, G1, client_msg(kind, mac(G1), 0x555555, ia_na((leased(G1), 0, 0)),
                                 src=link_local(G1)))
    assert d.ports() == {UP}
    assert not dhcp6_bindings(rig) and inbound(rig, leased(G1)).ports() == {LOCAL}


def test_release_of_another_guests_address_unbinds_nothing():
    rig = Rig()
    four_steps(rig, G1, XID1)
    send(rig, G2, client_msg(DHCP6_Release, mac(G2), 0x555555, ia_na((leased(G1), 0, 0)),
                             src=link_local(G2)))
    assert dhcp6_bindings(rig) == {leased(G1): G1}


def test_station_mac_change_announces_the_lease_by_na_and_keeps_the_ipv6_steering():
    rig = Rig()
    four_steps(rig, G1, XID1)
    new = "02:5a:00:00:00:99"
    rig.station = new
    d = rig.apply(rig.core.port_modified(Port(UP, "wlan0", new), rig.now))
    out = [h for p, h in d.outputs if p == UP]
    assert all(":" not in h["arp_spa"] for h in out if h["eth_type"] == 0x0806)  # ARP: IPv4
    nas = [h for h in out if h["eth_type"] == 0x86DD and h.get("icmpv6_type") == 136]
    assert [h["ipv6_nd_target"] for h in nas if h["ipv6_nd_target"] == leased(G1)], out
    assert all(h["eth_src"] == new for h in out)
    assert send(rig, UP, raw_dhcp6(SERVER_MAC, new, "2001:db8::1", leased(G1), b"hi",
                                   sport=4000, dport=5000)).ports() == {G1}


def test_stateless_information_request_gets_its_reply_and_binds_nothing():
    rig = Rig()
    raw = client_msg(DHCP6_InfoRequest, mac(G1), XID1, src=link_local(G1))
    assert send(rig, G1, raw).ports() == {UP}
    assert send(rig, UP, reply(G1, XID1)).ports() == {G1}
    assert not dhcp6_bindings(rig)


def test_saved_dhcp6_binding_is_restored_with_its_flows():
    rig = Rig()
    four_steps(rig, G1, XID1)
    saved = rig.core.export_state()
    parse_persistent(saved)  # the state file accepts IPv6 and "dhcp6"
    fresh = Rig(connect=False)
    fresh.core.restore_state(saved)
    fresh.connect()
    assert {a: b.source for a, b in fresh.core.bindings.items()} == {leased(G1): "dhcp6"}
    assert inbound(fresh, leased(G1)).ports() == {G1}


# =================================================================== guests are not servers
SERVER_FRAMES = {
    "advertise": lambda: reply(G2, XID1, lease_of(G2), kind=DHCP6_Advertise,
                               eth_src=mac(G1), src=link_local(G1), eth_dst=mac(G2)),
    "reply": lambda: reply(G2, XID1, lease_of(G2), eth_src=mac(G1), src=link_local(G1),
                           eth_dst=mac(G2)),
    "reconfigure": lambda: reply(G2, XID1, kind=DHCP6_Reconf, eth_src=mac(G1),
                                 src=link_local(G1), eth_dst=mac(G2)),
    "relay-reply": lambda: raw_dhcp6(mac(G1), "33:33:00:01:00:02", link_local(G1),
                                     "ff02::1:2", bytes(DHCP6_RelayReply()), sport=547,
                                     dport=547),
    "reply-from-another-port": lambda: reply(G2, XID1, lease_of(G2), eth_src=mac(G1),
                                             src=link_local(G1), eth_dst=mac(G2),
                                             sport=40000),
    "reply-multicast": lambda: reply(G2, XID1, lease_of(G2), eth_src=mac(G1),
                                     src=link_local(G1), eth_dst="33:33:00:00:00:01",
                                     dst="ff02::1"),
}


@pytest.mark.parametrize("name", sorted(SERVER_FRAMES))
def test_guest_acting_as_dhcp6_server_is_dropped_and_counted(name):
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))  # G1's MAC known
    send(rig, G2, solicit(G2, XID2))  # G2 waits for an answer
    d = send(rig, G1, SERVER_FRAMES[name]())
    assert d.ports() == set()
    assert rig.core.counters["refused.dhcp6-server"] == 1
    assert not dhcp6_bindings(rig)


def test_guest_may_not_speak_from_the_hosts_link_local_or_with_its_duid():
    rig = Rig()
    host_ll = D.link_local_of(STATION)
    assert send(rig, G1, solicit(G1, XID1, src=host_ll)).ports() == set()
    assert send(rig, G1, solicit(G1, XID2, client_id=duid(STATION))).ports() == set()
    c = rig.core.counters
    assert c["refused.dhcp6-host-address"] == 1 and c["refused.dhcp6-station-duid"] == 1


def test_an_xid_live_for_one_guest_is_refused_to_another():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    assert send(rig, G2, solicit(G2, XID1)).ports() == set()
    assert rig.core.counters["refused.dhcp6-xid-collision"] == 1
    assert send(rig, UP, reply(G1, XID1, lease_of(G1))).ports() == {G1}


def test_a_transaction_lives_ttl_seconds_after_the_last_message():
    rig = Rig()
    ttl = rig.core.dhcp6.transactions.ttl
    send(rig, G1, solicit(G1, XID1))
    assert rig.core.next_due() == rig.now + ttl
    rig.advance(ttl - 1)
    send(rig, G1, solicit(G1, XID1))  # a retransmission keeps it alive
    rig.advance(ttl - 1)
    assert send(rig, UP, reply(G1, XID1, lease_of(G1))).ports() == {G1}
    rig.advance(ttl)
    assert len(rig.core.dhcp6.transactions) == 0 and rig.core.next_due() is not None
    assert send(rig, UP, reply(G1, XID1, lease_of(G1, 1))).ports() == {LOCAL}


def test_the_transaction_table_is_bounded_per_guest():
    rig = Rig()
    limit = rig.core.dhcp6.transactions.max_per_port
    for i in range(limit + 5):
        send(rig, G1, solicit(G1, 0x100 + i))
    send(rig, G2, solicit(G2, XID2))
    assert len(rig.core.dhcp6.transactions) == limit + 1
    assert send(rig, UP, reply(G1, 0x100, lease_of(G1))).ports() == {LOCAL}  # evicted
    assert send(rig, UP, reply(G1, 0x100 + limit + 4, lease_of(G1))).ports() == {G1}
    assert send(rig, UP, reply(G2, XID2, lease_of(G2))).ports() == {G2}


def test_removed_port_forgets_its_transactions():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    rig.remove_port(G1)
    assert len(rig.core.dhcp6.transactions) == 0


def test_address_bound_to_another_source_is_refused_and_the_reply_withheld():
    rig = Rig(config=CoreConfig(uplink="wlan0", max_ips_per_port=0))
    send(rig, G1, solicit(G1, XID1))
    assert send(rig, UP, reply(G1, XID1, lease_of(G1), lease_of(G1, 1))).ports() == set()
    assert not dhcp6_bindings(rig)
    assert rig.core.counters["refused.dhcp6-port-limit"] == 1


# =================================================================== bad frames
def _ia_na_raw(inner: bytes, iaid: int = 1) -> bytes:
    return opt(3, iaid.to_bytes(4, "big") + bytes(8) + inner)


def _iaaddr_raw(address: str, preferred: int, valid: int, extra: bytes = b"") -> bytes:
    import ipaddress
    return opt(5, ipaddress.IPv6Address(address).packed + preferred.to_bytes(4, "big")
               + valid.to_bytes(4, "big") + extra)


def _bad_reply(port: int, xid: int, options: bytes) -> bytes:
    head = bytes([7]) + xid.to_bytes(3, "big")
    ids = opt(2, b"\x00\x03\x00\x01" + bytes(6)) + opt(1, duid(mac(port)))
    return raw_dhcp6(SERVER_MAC, STATION, SERVER_LL, link_local(port), head + ids + options)


GOOD_ADDR = _iaaddr_raw(leased(G1), 100, 200)
MALFORMED = {  # -> the counter reason; none is delivered, none binds
    "ia-na-short": (_bad_reply(G1, XID1, opt(3, b"\0\0\0\1\0\0")), "bad-ia"),
    "iaaddr-short": (_bad_reply(G1, XID1, _ia_na_raw(opt(5, bytes(20)))), "bad-iaaddr"),
    "iaaddr-past-ia-na": (_bad_reply(G1, XID1, _ia_na_raw(GOOD_ADDR[:-4])), "bad-ia"),
    "option-past-payload": (_bad_reply(G1, XID1, _ia_na_raw(GOOD_ADDR) + b"\0\3\1\0"),
                            "bad-option"),
    "option-truncated": (_bad_reply(G1, XID1, _ia_na_raw(GOOD_ADDR) + b"\0\3\0"),
                         "bad-option"),
    "status-short": (_bad_reply(G1, XID1, _ia_na_raw(GOOD_ADDR + opt(13, b"\0"))),
                     "bad-status"),
    "two-client-ids": (_bad_reply(G1, XID1, opt(1, duid(mac(G1))) + _ia_na_raw(GOOD_ADDR)),
                       "duplicate-option"),
    "no-header": (raw_dhcp6(SERVER_MAC, STATION, SERVER_LL, link_local(G1), b"\7\1"),
                  "truncated"),
}
UNLEARNABLE = {  # delivered (the client decides), but nothing is bound
    "no-addrs-avail": (lambda: reply(G1, XID1, ia_na((leased(G1), 100, 200), status=2)),
                       "status-2"),
    "preferred-over-valid": (lambda: reply(G1, XID1, ia_na((leased(G1), 300, 200))),
                             "lifetimes"),
    "address-status": (lambda: reply(G1, XID1, DHCP6OptIA_NA(iaid=1, ianaopts=[
        DHCP6OptIAAddress(addr=leased(G1), preflft=100, validlft=200,
                          iaaddropts=[DHCP6OptStatusCode(statuscode=2)])])), "status-2"),
    "top-level-status": (lambda: reply(G1, XID1, lease_of(G1), DHCP6OptStatusCode(statuscode=1)),
                         "status-1"),
    "link-local-address": (lambda: reply(G1, XID1, ia_na(("fe80::99", 100, 200))), "address"),
    "multicast-address": (lambda: reply(G1, XID1, ia_na(("ff02::99", 100, 200))), "address"),
    "t1-over-t2": (lambda: reply(G1, XID1, ia_na((leased(G1), 100, 200), t1=90, t2=50)),
                   "ia-times"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_reply_is_dropped_counted_and_binds_nothing(name):
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    raw, reason = MALFORMED[name]
    assert send(rig, UP, raw).ports() == set()
    assert rig.core.counters[f"dhcp6.malformed.{reason}"] == 1
    assert not dhcp6_bindings(rig)


@pytest.mark.parametrize("name", sorted(UNLEARNABLE))
def test_reply_with_nothing_learnable_is_delivered_and_binds_nothing(name):
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    build, reason = UNLEARNABLE[name]
    assert send(rig, UP, build()).ports() == {G1}
    assert rig.core.counters[f"dhcp6.unlearnable.{reason}"] == 1
    assert not dhcp6_bindings(rig)


def test_malformed_guest_message_is_dropped_and_counted():
    rig = Rig()
    send(rig, G1, solicit(G1, XID1))
    raw = raw_dhcp6(mac(G1), "33:33:00:01:00:02", link_local(G1), "ff02::1:2",
                    b"\1\0\0\1" + b"\0\1\0\x40", sport=546, dport=547)
    assert send(rig, G1, raw).ports() == set()
    assert rig.core.counters["dhcp6.malformed.bad-option"] == 1


def test_core_without_an_uplink_drops_guest_dhcp6():
    core = Core(CoreConfig(uplink="wlan0"))
    assert core.packet_in(G1, solicit(G1, XID1), 0.0) == []
    assert core.counters["errors.internal"] == 0
