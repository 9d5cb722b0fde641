"""Helpers shared by the whole-core DHCP tests (test_core_dhcp*.py): guests, the tolerant
switch fixture, sending frames and whole DORA exchanges."""

from __future__ import annotations

import pytest
import rig as rig_module
from dhcp_frames import (
    BOOTP_AT,
    UDP_AT,
    ack,
    discover,
    headers_of,
    lease_ip,
    offer,
    request,
)
from ofsim import icmp_echo
from rig import ROUTER, ROUTER_IP, STATION, UP, Delivery, Rig, mac
from wlbridge.core import CoreConfig

G1, G2 = 2, 3
XID1, XID2 = 0x11110001, 0x22220002
FLAGS = (BOOTP_AT + 10, BOOTP_AT + 11)
CSUM = (UDP_AT + 6, UDP_AT + 7)
ETH_SRC = tuple(range(6, 12))
CLIENT_ID = CoreConfig(uplink="wlan0", dhcp_mode="client-id")


@pytest.fixture(autouse=True)
def tolerant_switch(monkeypatch):
    """The rig parses packet-outs with os-ken, which rejects e.g. a DHCP reply whose sname
    is not ASCII; the switch itself would not care."""
    monkeypatch.setattr(rig_module, "from_bytes", headers_of)


def send(rig: Rig, port: int, raw: bytes) -> Delivery:
    """``raw`` enters the switch on ``port``; the controller must never fail on it."""
    d = rig.send(port, headers_of(raw))
    assert rig.core.counters["errors.internal"] == 0
    return d


def dora(rig: Rig, port: int, xid: int, addr: str | None = None, lease: int = 3600) -> None:
    """A whole broadcast-strategy DISCOVER/OFFER/REQUEST/ACK for the guest on ``port``."""
    addr = addr or lease_ip(port)
    assert send(rig, port, discover(mac(port), xid)).ports() == {UP}
    assert send(rig, UP, offer(mac(port), xid, addr, lease)).ports() == {port}
    assert send(rig, port, request(mac(port), xid, addr)).ports() == {UP}
    assert send(rig, UP, ack(mac(port), xid, addr, lease)).ports() == {port}


def reaches(rig: Rig, addr: str) -> set[int]:
    """Where a ping from the LAN to ``addr`` ends up."""
    return rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr)).ports()


def dhcp_bindings(rig: Rig) -> dict[str, int]:
    return {a: b.port_no for a, b in rig.core.bindings.items() if b.source == "dhcp"}


def changed(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i in range(len(a)) if a[i] != b[i]}


def learned_guests(config: CoreConfig | None = None, guests=(G1, G2)) -> Rig:
    """A rig whose guests have each sent a DISCOVER (so their MACs are known)."""
    r = Rig(guests=guests, config=config)
    for p in guests:
        send(r, p, discover(mac(p), 0x5000 + p))
    return r


def cid_reply(kind, xid: int, addr: str, **kw) -> bytes:
    """A server's reply in the client-id strategy: to chaddr = the station MAC."""
    return kind(STATION, xid, addr, eth_dst=STATION, ip_dst=addr, **kw)
