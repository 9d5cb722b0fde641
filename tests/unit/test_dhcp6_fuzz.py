"""Property-based tests: random mutations of valid DHCPv6 frames never raise anything but
Dhcp6Error, and the DHCPv6 service never binds an address that is not a leasable address
carried by a Reply answering the guest's own transaction."""

from __future__ import annotations

import ipaddress
import logging
import struct
from collections import Counter
from types import SimpleNamespace

from dhcp6_frames import (
    DHCP6_Advertise,
    DHCP6_InfoRequest,
    DHCP6_Release,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    client_msg,
    ia_na,
    ia_ta,
    raw_dhcp6,
    server_msg,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutate
from scapy.layers.dhcp6 import DHCP6_RelayReply, DHCP6OptStatusCode
from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.dhcp6_service import Dhcp6Service
from wlbridge.policy.effects import Bind, Deliver, Unbind
from wlbridge.proto import dhcp6 as D
from wlbridge.proto.packets import FrameError, parse_frame
from wlbridge.ratelog import RateLimitedLog
from wlbridge.telemetry import Telemetry

GUEST = "02:00:00:00:00:02"
STATION = "02:5a:00:00:00:01"
UPLINK, PORT = 1, 3
A1, A2, A3 = "2001:db8::1:10", "2001:db8::1:11", "fd00::5"

SEEDS = [
    client_msg(DHCP6_Solicit, GUEST, 0x010203, ia_na(), src="fe80::2"),
    client_msg(DHCP6_Request, GUEST, 0x010204, ia_na((A1, 0, 0)), src="fe80::2"),
    client_msg(DHCP6_Release, GUEST, 0x010205, ia_na((A1, 0, 0)), src="fe80::2"),
    client_msg(DHCP6_InfoRequest, GUEST, 0x010206, src="fe80::2"),
    server_msg(DHCP6_Reply, GUEST, 0x010204, ia_na((A1, 300, 600), (A2, 0, 0), t1=150, t2=240),
               ia_ta((A3, 30, 60)), dst="fe80::2", eth_dst=STATION),
    server_msg(DHCP6_Advertise, GUEST, 0x010203, ia_na((A1, 300, 600)), dst="fe80::2",
               eth_dst=STATION),
    server_msg(DHCP6_Reply, GUEST, 0x010207, ia_na(status=2),
               DHCP6OptStatusCode(statuscode=0), dst="fe80::2", eth_dst=STATION),
    raw_dhcp6(GUEST, "33:33:00:01:00:02", "fe80::2", "ff02::1:2", bytes(DHCP6_RelayReply()),
              sport=547, dport=547),
]


@st.composite
def mutated(draw) -> bytes:
    return mutate(draw, draw(st.sampled_from(SEEDS)), (1, 6),
                  ("flip", "set", "truncate", "insert", "delete", "splice"), chunk=16)


@st.composite
def mutated_payload(draw) -> bytes:
    """Mutations inside the DHCPv6 message only, the IPv6/UDP lengths made consistent again,
    so that the option parsing runs."""
    seed = draw(st.sampled_from(SEEDS))
    body = bytearray(seed[62:])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["set", "insert", "delete", "length", "code"]))
        pos = draw(st.integers(0, max(0, len(body) - 1)))
        if kind == "set" and body:
            body[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            body[pos:pos] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "delete":
            del body[pos:pos + draw(st.integers(1, 12))]
        elif kind == "length" and len(body) >= pos + 2:  # an option length, off by a little
            old = struct.unpack_from("!H", body, pos)[0]
            struct.pack_into("!H", body, pos, max(0, min(0xFFFF, old + draw(
                st.integers(-6, 6)))))
        elif kind == "code" and len(body) >= pos + 2:
            struct.pack_into("!H", body, pos, draw(st.sampled_from([1, 2, 3, 4, 5, 13])))
    head = bytearray(seed[:62])
    struct.pack_into("!H", head, 18, 8 + len(body))  # IPv6 payload length
    struct.pack_into("!H", head, 58, 8 + len(body))  # UDP length
    return bytes(head) + bytes(body)


def service() -> tuple[Dhcp6Service, Model, Counter]:
    model = Model(uplink=UPLINK, station_mac=STATION)
    guest = GuestPort(PORT, "g3", GUEST)
    model.guests[PORT] = guest
    model.by_mac[GUEST] = guest
    counters: Counter = Counter()
    log = logging.getLogger("test.dhcp6")
    tel = Telemetry(counters, log, RateLimitedLog(log, "bindings"))
    config = SimpleNamespace(max_ips_per_port=16, max_bindings=4096)
    return Dhcp6Service(model, config, tel), model, counters


def exercise(raw: bytes) -> None:
    try:
        m = D.parse(raw)
    except D.Dhcp6Error as e:
        # "parse-error" would mean the library raised on input our own checks let through
        assert e.reason in D.REASONS and e.reason != "parse-error", e
        m = None
    if m is not None:
        leased, _ = D.leases(m)
        for lease in leased:
            assert D.is_leasable(lease.address) and lease.preferred <= lease.valid
            assert ipaddress.IPv6Address(lease.address).packed in raw
        for a in D.given_back(m):
            assert ipaddress.IPv6Address(a).packed in raw
    try:
        frame = parse_frame(raw)
    except FrameError:
        return
    svc, model, _ = service()
    guest = model.guests[PORT]
    if frame.is_dhcp6_client:
        effects = svc.from_guest(guest, frame, 0.0)
        assert all(isinstance(e, (Deliver, Unbind)) for e in effects)
        if m is None:
            assert effects == []
    if frame.is_dhcp6_server:
        if m is not None and m.xid is not None:  # as if the guest had asked
            svc.transactions.record(m.xid, PORT, GUEST, m.client_id, m.ip_dst, 0.0)
        effects = svc.from_uplink(frame, 1.0)
        binds = [e for e in effects if isinstance(e, Bind)]
        if m is None:
            assert effects == []
        for b in binds:
            assert b.port_no == PORT and b.source == "dhcp6"
            assert m is not None and m.msg_type == D.REPLY
            assert b.ip in {lease.address for lease in D.leases(m)[0]}
        if binds:
            assert isinstance(effects[0], Deliver) and effects[0].out_port == PORT


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutations_only_raise_dhcp6_error(raw):
    exercise(raw)


@FUZZ
@given(mutated_payload())
def test_payload_mutations_never_bind_falsely(raw):
    exercise(raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_dhcp6_payload(payload):
    exercise(raw_dhcp6("02:10:00:00:00:01", STATION, "fe80::1", "fe80::2", payload))


def test_seeds_are_valid_and_the_reply_binds():
    for s in SEEDS:
        D.parse(s)
    svc, _, _ = service()
    reply = SEEDS[4]
    m = D.parse(reply)
    svc.transactions.record(m.xid, PORT, GUEST, m.client_id, m.ip_dst, 0.0)
    effects = svc.from_uplink(parse_frame(reply), 1.0)
    assert {e.ip for e in effects if isinstance(e, Bind)} == {A1, A3}
