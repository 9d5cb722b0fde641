"""IGMP (v1/v2/v3) and MLD (v1/v2) membership reports, parsed with the framework's packet
library; and the group addresses' Ethernet MACs.

`parse_report` turns a guest's report into the groups it joins and leaves (RFC 3376 /
RFC 3810 record types reduced to "member" or "not"), or raises `ReportError` with a short
counter label.  Bytes in, plain data out: no model, no OpenFlow.
"""

from __future__ import annotations

import importlib
import ipaddress
import struct
from typing import NamedTuple

from wlbridge.compat import FRAMEWORK, ethernet, ipv4, packet, packet_utils
from wlbridge.model.addresses import canonical_group

_igmp = importlib.import_module(f"{FRAMEWORK}.lib.packet.igmp")
_icmpv6 = importlib.import_module(f"{FRAMEWORK}.lib.packet.icmpv6")
_ipv6 = importlib.import_module(f"{FRAMEWORK}.lib.packet.ipv6")

IPPROTO_IGMP = 2
IGMP_REPORT_V1, IGMP_REPORT_V2, IGMP_LEAVE, IGMP_REPORT_V3 = 0x12, 0x16, 0x17, 0x22
MLD_REPORT, MLD_DONE, MLD_REPORT_V2 = 131, 132, 143
MLD_TYPES = (MLD_REPORT, MLD_DONE, MLD_REPORT_V2)  # what guests send (130 is a query)

# IGMPv3 / MLDv2 record types (the same numbers in both)
MODE_IS_INCLUDE, MODE_IS_EXCLUDE, TO_INCLUDE, TO_EXCLUDE, ALLOW, BLOCK = 1, 2, 3, 4, 5, 6

FRAME_MAX = 1514 + 4



class ReportError(ValueError):
    """A report the controller will not act on; `reason` is a short counter label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Report(NamedTuple):
    """What a membership report says: groups joined (or still held) and groups left."""

    family: int  # 4: IGMP, 6: MLD
    joins: tuple[str, ...]
    leaves: tuple[str, ...]


def group_mac(group: str) -> str:
    """The Ethernet group MAC of an IPv4 (01:00:5e + low 23 bits, RFC 1112) or IPv6
    (33:33 + low 32 bits, RFC 2464) multicast address."""
    addr = ipaddress.ip_address(group)
    if addr.version == 4:
        low = int(addr) & 0x7FFFFF
        return "01:00:5e:" + ":".join(f"{b:02x}" for b in low.to_bytes(3, "big"))
    low = int(addr) & 0xFFFFFFFF
    return "33:33:" + ":".join(f"{b:02x}" for b in low.to_bytes(4, "big"))


def _records(records: list, sources_attr: str = "srcs") -> tuple[list[str], list[str]]:
    joins: list[str] = []
    leaves: list[str] = []
    for rec in records:
        kind = rec.type_
        sources = getattr(rec, sources_attr, None) or []
        if kind in (MODE_IS_EXCLUDE, TO_EXCLUDE):
            joins.append(rec.address)
        elif kind in (MODE_IS_INCLUDE, TO_INCLUDE):
            (joins if sources else leaves).append(rec.address)
        elif kind == ALLOW and sources:
            joins.append(rec.address)
        # BLOCK and unknown record types change nothing here (RFC 3376 4.2.12: ignore)
    return joins, leaves


def _checked(groups: list[str]) -> tuple[str, ...]:
    out = []
    for g in groups:
        c = canonical_group(g) if isinstance(g, str) else None
        if c is None:
            raise ReportError("bad-group")
        if c not in out:
            out.append(c)
    return tuple(out)


def is_report(data: bytes) -> bool:
    """A quick look: is this an IGMP or MLD message (by the headers, not validated)?"""
    try:
        report_kind(data)
    except ReportError:
        return False
    return True


def report_kind(data: bytes) -> int:
    """4 for IGMP, 6 for an IPv6 frame (MLD or not: `parse_report` decides); ReportError."""
    if len(data) < 14 + 20:
        raise ReportError("truncated")
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == 0x0800 and data[14 + 9] == IPPROTO_IGMP:
        return 4
    if ethertype == 0x86DD:
        return 6
    raise ReportError("not-a-report")


def parse_report(data: bytes) -> Report:
    """The groups an IGMP or MLD report joins and leaves; ReportError (truncated, bad
    checksum, not a report, a group that is not a joinable multicast address...)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > FRAME_MAX:
        raise ReportError("oversized")
    data = bytes(data)
    family = report_kind(data)
    try:
        pkt = packet.Packet(data)
    except Exception as exc:  # the library raises many kinds on malformed input
        raise ReportError("unparsable") from exc
    if pkt.get_protocol(ethernet.ethernet) is None:
        raise ReportError("truncated")
    if family == 4:
        joins, leaves = _igmp_groups(pkt, data)
    else:
        joins, leaves = _mld_groups(pkt, data)
    joins_c, leaves_c = _checked(joins), _checked(leaves)
    return Report(family, joins_c, tuple(g for g in leaves_c if g not in joins_c))


def _igmp_groups(pkt: packet.Packet, data: bytes) -> tuple[list[str], list[str]]:
    ip = pkt.get_protocol(ipv4.ipv4)
    if ip is None or ip.version != 4 or ip.header_length < 5:
        raise ReportError("bad-ipv4")
    start = 14 + ip.header_length * 4
    end = 14 + ip.total_length
    if end > len(data) or end - start < 8:
        raise ReportError("truncated")
    if packet_utils.checksum(data[start:end]) != 0:
        raise ReportError("bad-checksum")
    msg = pkt.get_protocol(_igmp.igmp) or pkt.get_protocol(_igmp.igmpv3_report)
    if msg is None:
        if data[start] == 0x11:
            raise ReportError("query")
        raise ReportError("unparsable")
    if isinstance(msg, _igmp.igmpv3_report):
        if msg.record_num != len(msg.records or []):
            raise ReportError("truncated")
        return _records(msg.records or [])
    if msg.msgtype in (IGMP_REPORT_V1, IGMP_REPORT_V2):
        return [msg.address], []
    if msg.msgtype == IGMP_LEAVE:
        return [], [msg.address]
    raise ReportError("query" if msg.msgtype == 0x11 else "unknown-type")


def _mld_groups(pkt: packet.Packet, data: bytes) -> tuple[list[str], list[str]]:
    ip6 = pkt.get_protocol(_ipv6.ipv6)
    icmp = pkt.get_protocol(_icmpv6.icmpv6)
    if ip6 is None:
        raise ReportError("unparsable")
    if icmp is None:  # IPv6, but no ICMPv6 message: not a report at all
        raise ReportError("not-a-report")
    if icmp.type_ not in MLD_TYPES:
        raise ReportError("not-a-report")
    end = 14 + 40 + ip6.payload_length
    if end > len(data):
        raise ReportError("truncated")
    icmp_len = sum(len(h) for h in ip6.ext_hdrs or [])
    start = 14 + 40 + icmp_len
    if end - start < 8:
        raise ReportError("truncated")
    body = data[start:end]
    pseudo = (ipaddress.IPv6Address(ip6.src).packed + ipaddress.IPv6Address(ip6.dst).packed
              + struct.pack("!I3xB", len(body), 58))
    if packet_utils.checksum(pseudo + body) != 0:
        raise ReportError("bad-checksum")
    msg = icmp.data
    if icmp.type_ == MLD_REPORT_V2:
        if not isinstance(msg, _icmpv6.mldv2_report) or msg.record_num != len(msg.records or []):
            raise ReportError("truncated")
        return _records(msg.records or [])
    if not isinstance(msg, _icmpv6.mld):
        raise ReportError("truncated")
    if icmp.type_ == MLD_REPORT:
        return [msg.address], []
    return [], [msg.address]


# Groups whose AP-unicast copies are always restored, to every port, without any report:
# all-hosts / all-nodes (IPv6 router advertisements), mDNS, SSDP (discovery).  Not DHCPv6's
# ff02::1:2 (All_DHCP_Relay_Agents_and_Servers): guests are DHCPv6 clients, that group is
# for servers; what guests send to it leaves through switch_local's group flow.
WELL_KNOWN = ("224.0.0.1", "224.0.0.251", "239.255.255.250", "ff02::1", "ff02::fb", "ff02::c")
