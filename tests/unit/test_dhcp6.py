"""`wlbridge.proto.dhcp6` against scapy's DHCP6 layers: what the controller reads of a DHCPv6
frame (message type, transaction id, DUIDs, IA_NA/IA_TA addresses with their lifetimes,
status codes) is what an independent implementation reads, and bad frames raise only
`Dhcp6Error` with the expected reason."""

from __future__ import annotations

import pytest
from dhcp6_frames import (
    DHCP6_Reply,
    DHCP6_Solicit,
    client_msg,
    duid,
    ia_na,
    ia_ta,
    opt,
    raw_dhcp6,
    server_msg,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp6 import (
    DHCP6,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
    DHCP6OptIA_TA,
    DHCP6OptIAAddress,
    DHCP6OptServerId,
    DHCP6OptStatusCode,
)
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from wlbridge.proto import dhcp6 as D

GUEST = "02:00:00:00:00:02"
STATION = "02:5a:00:00:00:01"


def scapy_view(raw: bytes) -> dict:
    """What scapy reads of the same frame, in `Dhcp6Message`'s terms."""
    p = Ether(raw)
    msg = p[IPv6].payload.payload
    assert isinstance(msg, DHCP6)
    ias = []
    layer = msg.payload
    client = server = None
    while layer is not None and layer.name != "NoPayload" and not isinstance(layer, bytes):
        if isinstance(layer, DHCP6OptServerId):  # (a subclass of DHCP6OptClientId)
            server = bytes(layer)[4:4 + layer.optlen]
        elif isinstance(layer, DHCP6OptClientId):
            client = bytes(layer)[4:4 + layer.optlen]
        elif isinstance(layer, (DHCP6OptIA_NA, DHCP6OptIA_TA)):
            subs = layer.ianaopts if isinstance(layer, DHCP6OptIA_NA) else layer.iataopts
            addrs = tuple((s.addr, s.preflft, s.validlft) for s in subs
                          if isinstance(s, DHCP6OptIAAddress))
            ias.append((layer.iaid, getattr(layer, "T1", 0), getattr(layer, "T2", 0), addrs,
                        isinstance(layer, DHCP6OptIA_TA)))
        layer = layer.payload
    return {"msg_type": msg.msgtype, "xid": msg.trid, "client_id": client,
            "server_id": server, "ias": ias}


def our_view(raw: bytes) -> dict:
    m = D.parse(raw)
    return {"msg_type": m.msg_type, "xid": m.xid, "client_id": m.client_id,
            "server_id": m.server_id,
            "ias": [(ia.iaid, ia.t1, ia.t2,
                     tuple((a.address, a.preferred, a.valid) for a in ia.addresses),
                     ia.temporary) for ia in m.ias]}


addresses = st.ip_addresses(v=6).map(str)
lifetimes = st.integers(0, 0xFFFFFFFF)


@settings(max_examples=150, deadline=None)
@given(xid=st.integers(0, 0xFFFFFF), iaid=st.integers(0, 0xFFFFFFFF),
       t1=lifetimes, t2=lifetimes,
       addrs=st.lists(st.tuples(addresses, lifetimes, lifetimes), max_size=4),
       temp=st.lists(st.tuples(addresses, lifetimes, lifetimes), max_size=2))
def test_reply_reads_as_scapy_reads_it(xid, iaid, t1, t2, addrs, temp):
    opts = [ia_na(*addrs, iaid=iaid, t1=t1, t2=t2)] + ([ia_ta(*temp)] if temp else [])
    raw = server_msg(DHCP6_Reply, GUEST, xid, *opts, dst="fe80::2", eth_dst=STATION)
    theirs, ours = scapy_view(raw), our_view(raw)
    theirs["ias"] = [(i, a, b, tuple((str(D.ipaddress.IPv6Address(x)), p, v)
                                     for x, p, v in ad), tmp)
                     for i, a, b, ad, tmp in theirs["ias"]]
    assert ours == theirs


def test_solicit_fields():
    raw = client_msg(DHCP6_Solicit, GUEST, 0xABCDEF, ia_na(), src="fe80::2")
    m = D.parse(raw)
    assert (m.msg_type, m.xid, m.sport, m.dport) == (D.SOLICIT, 0xABCDEF, 546, 547)
    assert m.is_client_message and not m.is_server_reply
    assert (m.eth_src, m.ip_src, m.ip_dst) == (GUEST, "fe80::2", "ff02::1:2")
    assert m.client_id == duid(GUEST) and D.duid_mac(m.client_id) == GUEST
    assert our_view(raw) == scapy_view(raw)


def test_status_codes_are_read_at_every_level():
    ia = DHCP6OptIA_NA(iaid=1, ianaopts=[
        DHCP6OptIAAddress(addr="2001:db8::1", preflft=1, validlft=2,
                          iaaddropts=[DHCP6OptStatusCode(statuscode=5)]),
        DHCP6OptStatusCode(statuscode=4)])
    raw = server_msg(DHCP6_Reply, GUEST, 1, ia, DHCP6OptStatusCode(statuscode=3),
                     dst="fe80::2", eth_dst=STATION)
    m = D.parse(raw)
    assert m.status == 3 and m.ias[0].status == 4 and m.ias[0].addresses[0].status == 5
    assert D.leases(m) == ([], ["status-3"])


def test_infinite_lifetime_is_a_lease_without_end():
    raw = server_msg(DHCP6_Reply, GUEST, 1, ia_na(("2001:db8::7", D.INFINITY, D.INFINITY)),
                     dst="fe80::2", eth_dst=STATION)
    (lease,), _ = D.leases(D.parse(raw))
    assert lease.expiry(100.0) is None and lease.lease is None


def test_link_local_of_is_the_eui64_address():
    assert D.link_local_of("02:5a:00:00:00:01") == "fe80::5a:ff:fe00:1"
    assert D.link_local_of("52:54:00:12:34:56") == "fe80::5054:ff:fe12:3456"


HEAD = bytes([7, 0, 0, 1])
BAD = {
    "truncated": b"\7\0\0",
    "bad-message-type": bytes([99, 0, 0, 1]),
    "bad-option": HEAD + b"\0\1\0\x10" + bytes(4),
    "bad-duid": HEAD + opt(1, b"\0"),
    "duplicate-option": HEAD + opt(2, duid(GUEST)) + opt(2, duid(GUEST)),
    "bad-ia": HEAD + opt(3, bytes(11)),
    "bad-iaaddr": HEAD + opt(3, bytes(12) + opt(5, bytes(23))),
    "bad-status": HEAD + opt(13, b"\1"),
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_malformed_payloads_raise_their_reason(reason):
    raw = raw_dhcp6("02:10:00:00:00:01", STATION, "fe80::1", "fe80::2", BAD[reason])
    with pytest.raises(D.Dhcp6Error) as err:
        D.parse(raw)
    assert err.value.reason == reason


def test_bad_headers_raise_their_reason():
    good = raw_dhcp6("02:10:00:00:00:01", STATION, "fe80::1", "fe80::2", HEAD)
    cases = {
        "truncated": good[:60],
        "not-ipv6": good[:12] + b"\x08\x00" + good[14:],
        "bad-ip-version": good[:14] + b"\x40" + good[15:],
        "ipv6-ext-header": good[:20] + b"\x00" + good[21:],
        "not-udp": good[:20] + b"\x06" + good[21:],
        "bad-ip-length": good[:18] + b"\x0f\xff" + good[20:],
        "bad-udp-length": good[:58] + b"\x0f\xff" + good[60:],
        "not-dhcp6": good[:54] + b"\x00\x35" + good[56:],
        "oversized": good + bytes(1600),
    }
    for reason, raw in cases.items():
        with pytest.raises(D.Dhcp6Error) as err:
            D.parse(raw)
        assert err.value.reason == reason, reason


def test_a_library_whose_message_parser_gives_up_is_enough(monkeypatch):
    """Ryu 4.34's `dhcp6.dhcp6.parser` returns (None, None, buf) on Python 3 (it prefixes a
    str to the bytes and swallows the error); only its option parser is needed."""
    raw = server_msg(DHCP6_Reply, GUEST, 0x42, ia_na(("2001:db8::9", 10, 20)), dst="fe80::2",
                     eth_dst=STATION)
    monkeypatch.setattr(D.dhcp6.dhcp6, "parser", classmethod(lambda cls, buf: (None, None, buf)))
    m = D.parse(raw)
    assert m.xid == 0x42 and D.leases(m)[0][0].address == "2001:db8::9"
