"""The flows wlbridge wants on the bridge, computed from state, section by section.

A *section* is the set of flows that depends on one piece of state:

* ``static``      — the uplink, the station MAC and the list of guest ports;
* ``port:<P>``    — one guest port and the guest MACs behind it (source check, learning
  triggers);
* ``ip:<A>``      — one IPv4 or IPv6 binding (ingress steering, egress source check; an
  IPv6 address also gets its Neighbor Discovery flows, see `binding6_flows`);
* ``group:<G>``   — one multicast group (or subnet-directed broadcast address) whose
  AP-unicast copies are restored to its own MAC and delivered (see `group_flows`).

A section's flows are a pure function of a few plain values, its *arguments*
(`static_args`, `port_args`, `binding_args`).  `core.Core` recomputes only the
sections whose arguments changed and diffs them against what it installed (see
`sections`).  See docs/pipeline.md for the pipeline as a picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Union

from wlbridge.flows.cookies import MAX_SUBJECT, Purpose
from wlbridge.flows.pipeline import (
    BROADCAST,
    ETH_ARP,
    ETH_EAPOL,
    ETH_IPV4,
    ETH_IPV6,
    GROUP_BIT,
    ICMPV6_NEIGHBOR_ADVERT,
    ICMPV6_NEIGHBOR_SOLICIT,
    ICMPV6_REDIRECT,
    ICMPV6_ROUTER_ADVERT,
    ICMPV6_ROUTER_SOLICIT,
    IPPROTO_ICMPV6,
    IPPROTO_IGMP,
    IPPROTO_UDP,
    PORT_ALL,
    PORT_LOCAL,
    FlowSpec,
    Move,
    Output,
    SetField,
    ToController,
    flow,
)
from wlbridge.model.state import Binding, GuestPort, Model
from wlbridge.proto.groupmsg import MLD_TYPES, WELL_KNOWN, group_mac

EAPOL_GROUP = "01:80:c2:00:00:03"
DHCP6_CLIENT, DHCP6_SERVER = 546, 547  # UDP ports
LEASED = ("dhcp", "dhcp6")  # binding sources that live as long as their lease, not idle-timed
IPV4_MULTICAST = ("224.0.0.0", "240.0.0.0")
IPV6_MULTICAST = ("ff00::", "ff00::")
# A group's own MAC, computed per packet from its address (RFC 1112 6.4, RFC 2464 7):
# the prefix, then the address's low 23 (IPv4) or 32 (IPv6) bits moved in.
IPV4_GROUP_MAC = ("01:00:5e:00:00:00", Move("ipv4_dst", "eth_dst", 23))
IPV6_GROUP_MAC = ("33:33:00:00:00:00", Move("ipv6_dst", "eth_dst", 32))

# priorities, highest first, per table
P_TOP = 500
P_HIGH = 450
P_BINDING = 400
P_PROBE = 350
P_PORT = 300
P_GROUP_EXACT = 250  # a known group's own restore flow, above the catch-all restores
P_TRIGGER = 200
P_GROUP = 150
P_LOW = 100
P_CATCHALL = 10


@dataclass(frozen=True)
class View:
    """What flow computation needs to know about the switch."""

    uplink: int
    station_mac: str
    guest_ports: tuple[int, ...]
    idle_timeout: int = 300
    meter: bool = False  # per-port meters on controller-bound flows
    meter_max: int = 0xFFFF0000  # ports above the switch's largest meter id go unmetered


def subject(port_no: int) -> int:
    """Cookie subject for a guest port (0 if the number does not fit)."""
    return port_no if 0 < port_no <= MAX_SUBJECT else 0


def static_flows(view: View | None) -> list[FlowSpec]:
    """Table plumbing, reflection drop, EAPOL, DHCP and group delivery, uplink rewrite."""
    from wlbridge.flows.pipeline import miss_flows

    specs = miss_flows()
    if view is None:  # no uplink yet: everything is dropped by the table misses
        return specs
    u, s = view.uplink, view.station_mac
    local_and_guests = [Output(PORT_LOCAL)] + [Output(p) for p in view.guest_ports]
    specs += [
        # classify
        flow("classify", P_TOP, {"in_port": u, "eth_src": s}, purpose=Purpose.REFLECT),
        flow("classify", P_PORT, {"in_port": u}, goto="from_uplink"),
        flow("classify", P_PORT, {"in_port": PORT_LOCAL}, goto="switch_local"),
        # from the Wi-Fi LAN
        flow("from_uplink", P_TOP, {"eth_type": ETH_EAPOL}, [Output(PORT_LOCAL)],
             purpose=Purpose.EAPOL),
        flow("from_uplink", P_HIGH,
             {"eth_type": ETH_IPV4, "ip_proto": IPPROTO_UDP, "udp_src": 67, "udp_dst": 68},
             [ToController()], purpose=Purpose.DHCP),
        flow("from_uplink", P_HIGH,
             {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_UDP, "udp_src": DHCP6_SERVER,
              "udp_dst": DHCP6_CLIENT},
             [ToController()], purpose=Purpose.DHCP),
        # APs that turn group traffic into unicast to the station: restore and flood; a
        # multicast group's MAC is computed from its address (a snooped group's own flow,
        # `group_flows`, narrows delivery to its members)
        flow("from_uplink", P_TRIGGER, {"eth_dst": s, "eth_type": ETH_ARP, "arp_op": 1},
             [SetField("eth_dst", BROADCAST), Output(PORT_ALL)], purpose=Purpose.GROUP),
        flow("from_uplink", P_TRIGGER,
             {"eth_dst": s, "eth_type": ETH_IPV4, "ipv4_dst": "255.255.255.255"},
             [SetField("eth_dst", BROADCAST), Output(PORT_ALL)], purpose=Purpose.GROUP),
        flow("from_uplink", P_TRIGGER,
             {"eth_dst": s, "eth_type": ETH_IPV4, "ipv4_dst": IPV4_MULTICAST},
             [SetField("eth_dst", IPV4_GROUP_MAC[0]), IPV4_GROUP_MAC[1], Output(PORT_ALL)],
             purpose=Purpose.GROUP),
        flow("from_uplink", P_TRIGGER,
             {"eth_dst": s, "eth_type": ETH_IPV6, "ipv6_dst": IPV6_MULTICAST},
             [SetField("eth_dst", IPV6_GROUP_MAC[0]), IPV6_GROUP_MAC[1], Output(PORT_ALL)],
             purpose=Purpose.GROUP),
        flow("from_uplink", P_GROUP, {"eth_dst": GROUP_BIT}, [Output(PORT_ALL)],
             purpose=Purpose.GROUP),
        # local switching among host and guests
        flow("switch_local", P_PORT, {"eth_dst": s}, [Output(PORT_LOCAL)]),
        flow("switch_local", P_HIGH, {"eth_dst": EAPOL_GROUP}, goto="to_uplink",
             purpose=Purpose.EAPOL),
        flow("switch_local", P_GROUP, {"eth_dst": GROUP_BIT}, local_and_guests,
             goto="to_uplink", purpose=Purpose.GROUP),
        # out to the Wi-Fi LAN with the station's identity
        flow("to_uplink", P_LOW, {"eth_type": ETH_ARP},
             [SetField("eth_src", s), SetField("arp_sha", s), Output(u)],
             purpose=Purpose.UPLINK_OUT),
        flow("to_uplink", P_CATCHALL, {}, [SetField("eth_src", s), Output(u)],
             purpose=Purpose.UPLINK_OUT),
    ]
    return specs + static6_flows(u, s)


def static_args(view: View | None) -> tuple:
    """What `static_flows` is computed from."""
    return (view,)


def port_args(guest: GuestPort, view: View | None) -> tuple | None:
    """What `port_flows` is computed from (None: no flows)."""
    if view is None:
        return None
    p = guest.port_no
    meter = p if view.meter and p <= view.meter_max else None
    others = tuple(mac for mac in guest.macs if mac != guest.mac)
    return (p, guest.mac, meter, others) if others else (p, guest.mac, meter)


def port_flows(p: int, m: str | None, meter: int | None, others: tuple[str, ...] = ()
               ) -> list[FlowSpec]:
    """Source-MAC check and learning triggers of guest port `p` with first MAC `m` (None:
    not known yet) and the `others` behind it (`mac_flows` each), its controller-bound
    flows under `meter`."""
    sub = subject(p)
    trigger = [ToController()]
    specs = [
        # unknown MAC (first frame, or a spoof once the MAC is known): ask the controller
        flow("classify", P_TRIGGER, {"in_port": p}, trigger, purpose=Purpose.GUEST_PORT,
             subject=sub, meter=meter),
    ]
    if m is None:
        return specs
    specs += [
        flow("from_guest", P_TOP, {"in_port": p, "eth_type": ETH_EAPOL}, trigger,
             purpose=Purpose.EAPOL, subject=sub, meter=meter),
        flow("from_guest", P_HIGH,
             {"in_port": p, "eth_type": ETH_IPV4, "ip_proto": IPPROTO_UDP,
              "udp_src": 68, "udp_dst": 67},
             trigger, purpose=Purpose.DHCP, subject=sub, meter=meter),
        flow("from_guest", P_HIGH,
             {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_UDP,
              "udp_src": DHCP6_CLIENT, "udp_dst": DHCP6_SERVER},
             trigger, purpose=Purpose.DHCP, subject=sub, meter=meter),
        # guests are clients: no DHCP(v6) server or relay answers, no IPv6 router
        # advertisements (DHCPv6: anything from the server port or to the client port)
        flow("from_guest", P_TOP,
             {"in_port": p, "eth_type": ETH_IPV4, "ip_proto": IPPROTO_UDP,
              "udp_src": 67, "udp_dst": 68},
             trigger, purpose=Purpose.GUEST_PORT, subject=sub, meter=meter),
        flow("from_guest", P_TOP,
             {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6,
              "icmpv6_type": ICMPV6_ROUTER_ADVERT},
             trigger, purpose=Purpose.GUEST_PORT, subject=sub, meter=meter),
        flow("from_guest", P_TOP,
             {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_UDP,
              "udp_src": DHCP6_SERVER},
             trigger, purpose=Purpose.GUEST_PORT, subject=sub, meter=meter),
        flow("from_guest", P_HIGH,  # below the one above: a 547 -> 546 frame matches both
             {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_UDP,
              "udp_dst": DHCP6_CLIENT},
             trigger, purpose=Purpose.GUEST_PORT, subject=sub, meter=meter),
        flow("from_guest", P_PORT, {"in_port": p, "eth_type": ETH_ARP}, trigger,
             purpose=Purpose.LEARN, subject=sub, meter=meter),
        flow("from_guest", P_PORT, {"in_port": p, "eth_type": ETH_IPV4}, trigger,
             purpose=Purpose.LEARN, subject=sub, meter=meter),
        flow("from_guest", P_LOW, {"in_port": p}, goto="switch_local",
             purpose=Purpose.GUEST_PORT, subject=sub),
        *snoop_flows(p, meter),
    ]
    specs += port6_flows(p, meter)
    for mac in (m, *others):
        specs += mac_flows(p, mac, meter)
    return specs


def mac_flows(p: int, m: str, meter: int | None) -> list[FlowSpec]:
    """The flows of guest MAC `m` behind port `p` (one set per guest a port carries): its
    source check, its ARP probes, local delivery to it, and ND from the LAN naming it in
    the option (a leak reflected, or a spoof pointing the host's or the guests' neighbour
    caches at a guest: dropped, counted by the flows)."""
    sub = subject(p)
    nd = {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6}
    return [
        flow("classify", P_PORT, {"in_port": p, "eth_src": m}, goto="guest_snoop",
             purpose=Purpose.GUEST_PORT, subject=sub),
        # ARP probes (RFC 5227) claim nothing: forward, and let the controller see them
        flow("from_guest", P_PROBE,
             {"in_port": p, "eth_type": ETH_ARP, "arp_spa": "0.0.0.0", "arp_sha": m},
             [ToController()], goto="switch_local", purpose=Purpose.LEARN, subject=sub,
             meter=meter),
        flow("switch_local", P_PORT, {"eth_dst": m}, [Output(p)],
             purpose=Purpose.GUEST_MAC, subject=sub),
        flow("from_uplink", P_HIGH, {**nd, "icmpv6_type": ICMPV6_NEIGHBOR_SOLICIT,
                                     "ipv6_nd_sll": m}, purpose=Purpose.CONFLICT, subject=sub),
        flow("from_uplink", P_HIGH, {**nd, "icmpv6_type": ICMPV6_NEIGHBOR_ADVERT,
                                     "ipv6_nd_tll": m}, purpose=Purpose.CONFLICT, subject=sub),
    ]


def binding_args(b: Binding, view: View | None) -> tuple | None:
    """What `binding_flows` is computed from (None: no flows)."""
    if view is None:
        return None
    return (b.port_no, b.mac, b.ip, view.idle_timeout if b.source not in LEASED else 0)


def binding_flows(p: int, m: str, ip: str, idle: int) -> list[FlowSpec]:
    """Steering of guest IP `ip` from the uplink to port `p` and MAC `m`, and its egress
    source check (idle-timed after `idle` seconds unless 0).  An IPv6 address (one binding
    table, one section kind: its text says its version) gets `binding6_flows`."""
    if ":" in ip:
        return binding6_flows(p, m, ip, idle)
    sub = subject(p)
    to_guest = [SetField("eth_dst", m), Output(p)]  # (two flows)
    return [
        flow("from_uplink", P_BINDING, {"eth_type": ETH_ARP, "arp_spa": ip}, [ToController()],
             purpose=Purpose.CONFLICT, subject=sub),
        flow("from_uplink", P_PORT, {"eth_type": ETH_ARP, "arp_op": 2, "arp_tpa": ip},
             [SetField("eth_dst", m), SetField("arp_tha", m), Output(p)],
             purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_uplink", P_PORT, {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
             to_guest, purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_uplink", P_PORT, {"eth_type": ETH_IPV4, "ipv4_dst": ip},
             to_guest, purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_guest", P_BINDING,
             {"in_port": p, "eth_type": ETH_ARP, "arp_spa": ip, "arp_sha": m},
             goto="switch_local", purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_guest", P_BINDING,
             {"in_port": p, "eth_src": m, "eth_type": ETH_IPV4, "ipv4_src": ip},
             goto="switch_local", purpose=Purpose.GUEST_IP, subject=sub,
             idle_timeout=idle, send_flow_removed=bool(idle)),
    ]


def snoop_flows(p: int, meter: int | None) -> list[FlowSpec]:
    """Group snooping on guest port `p`: a copy of its IGMP and MLD messages goes to the
    controller (which learns the groups it joins and leaves; packet-ins from this table are
    only that), and the frame goes on to `from_guest`, whose source check decides whether it
    reaches the host, the other guests and the LAN, as for any other frame (a report from a
    source not bound to the port is a learning trigger there).  Metered like the port's
    other controller-bound flows."""
    sub = subject(p)
    also = {"goto": "from_guest", "purpose": Purpose.LEARN, "subject": sub, "meter": meter}
    specs = [flow("guest_snoop", P_HIGH,
                  {"in_port": p, "eth_type": ETH_IPV4, "ip_proto": IPPROTO_IGMP},
                  [ToController()], **also)]
    specs += [flow("guest_snoop", P_HIGH,
                   {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6,
                    "icmpv6_type": kind},
                   [ToController()], **also) for kind in MLD_TYPES]
    return specs


def group_args(group: str, members: Iterable[int] | None, view: View | None
               ) -> tuple | None:
    """What `group_flows` is computed from: the station MAC, the group and the guest ports
    it goes to (None: every port, for well-known groups and subnet broadcasts; else the
    members still on the bridge).  None: no flows (no uplink, or no member left)."""
    if view is None:
        return None
    if members is None:
        return (view.station_mac, group, None)
    ports = tuple(sorted(p for p in members if p in view.guest_ports))
    return (view.station_mac, group, ports) if ports else None


def group_flows(s: str, group: str, ports: tuple[int, ...] | None) -> list[FlowSpec]:
    """Group `group`'s copies that the AP turned into unicast to the station MAC `s`:
    the Ethernet destination restored (the group's own MAC: 01:00:5e + low 23 bits,
    33:33 + low 32 bits; ff:ff:ff:ff:ff:ff for a subnet-directed broadcast) and delivered
    to the host and the member guest `ports` (None: to every port)."""
    out = [Output(PORT_ALL)] if ports is None else (
        [Output(PORT_LOCAL)] + [Output(p) for p in ports])
    if ":" in group:
        match = {"eth_dst": s, "eth_type": ETH_IPV6, "ipv6_dst": group}
        mac = group_mac(group)
    else:
        match = {"eth_dst": s, "eth_type": ETH_IPV4, "ipv4_dst": group}
        mac = group_mac(group) if 224 <= int(group.split(".")[0]) < 240 else BROADCAST
    return [flow("from_uplink", P_GROUP_EXACT, match, [SetField("eth_dst", mac), *out],
                 purpose=Purpose.GROUP)]
# ---------------------------------------------------------------- IPv6 (issue 12)
# Priorities of the IPv6 flows that sit between the shared ones above.
P_ND_BOUND = 420  # from_guest: an NA for one of the guest's own addresses
P_ND = 410  # from_guest: other NAs (learn the target); NS from a bound source
P_ND_TARGET = 310  # from_uplink: an NS for a guest address (beside its ipv6_dst flow)
UNSPECIFIED6 = "::"


def static6_flows(u: int, s: str) -> list[FlowSpec]:
    """IPv6 flows of the `static` section: the uplink copies of NS and NA carry the station
    MAC in their link-layer option too (OVS rewrites the option and fixes the checksum; a
    DAD NS has no option and is left alone); guests' Redirects never go anywhere."""
    nd = {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6}
    return [
        flow("from_guest", P_TOP, {**nd, "icmpv6_type": ICMPV6_REDIRECT},
             purpose=Purpose.GUEST_PORT),
        flow("to_uplink", P_LOW, {**nd, "icmpv6_type": ICMPV6_NEIGHBOR_SOLICIT},
             [SetField("eth_src", s), SetField("ipv6_nd_sll", s), Output(u)],
             purpose=Purpose.UPLINK_OUT),
        flow("to_uplink", P_LOW, {**nd, "icmpv6_type": ICMPV6_NEIGHBOR_ADVERT},
             [SetField("eth_src", s), SetField("ipv6_nd_tll", s), Output(u)],
             purpose=Purpose.UPLINK_OUT),
    ]


def port6_flows(p: int, meter: int | None) -> list[FlowSpec]:
    """IPv6 triggers of guest port `p`, controller-bound under `meter`: Router
    Solicitations (their source link-layer option is rewritten by the controller: OVS does
    not parse RS options), NAs whose target is not bound to the port yet, DAD (source ::,
    forwarded and seen: the target is the guest's tentative address) and any IPv6 from a
    source not bound to the port (learn it or refuse it).  (ND from the LAN naming a guest's
    MAC: `mac_flows`.)"""
    sub = subject(p)
    trigger = [ToController()]
    icmp6 = {"in_port": p, "eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6}
    return [
        flow("from_guest", P_HIGH, {**icmp6, "icmpv6_type": ICMPV6_ROUTER_SOLICIT}, trigger,
             purpose=Purpose.UPLINK_OUT, subject=sub, meter=meter),
        flow("from_guest", P_ND, {**icmp6, "icmpv6_type": ICMPV6_NEIGHBOR_ADVERT}, trigger,
             purpose=Purpose.LEARN, subject=sub, meter=meter),
        flow("from_guest", P_PROBE, {**icmp6, "ipv6_src": UNSPECIFIED6}, trigger,
             goto="switch_local", purpose=Purpose.LEARN, subject=sub, meter=meter),
        flow("from_guest", P_PORT, {"in_port": p, "eth_type": ETH_IPV6}, trigger,
             purpose=Purpose.LEARN, subject=sub, meter=meter),
    ]


def binding6_flows(p: int, m: str, ip: str, idle: int) -> list[FlowSpec]:
    """IPv6 address `ip` bound to port `p` and MAC `m`: traffic and NSs for it from the
    uplink go to the guest with its MAC; an NA for it from the uplink is a conflict (seen by
    the controller, and given to the guest, whose DAD needs it, not to the host); from the
    guest, the source check (idle-timed unless `idle` is 0) and ND for the address with the
    guest's own MAC in the option (no guest can point a neighbour at another's MAC)."""
    sub = subject(p)
    v6 = {"eth_type": ETH_IPV6}
    na = {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6,
          "icmpv6_type": ICMPV6_NEIGHBOR_ADVERT}
    ns = {"eth_type": ETH_IPV6, "ip_proto": IPPROTO_ICMPV6,
          "icmpv6_type": ICMPV6_NEIGHBOR_SOLICIT}
    to_guest = [SetField("eth_dst", m), Output(p)]
    return [
        flow("from_uplink", P_BINDING, {**na, "ipv6_nd_target": ip},
             [ToController(), *to_guest], purpose=Purpose.CONFLICT, subject=sub),
        flow("from_uplink", P_ND_TARGET, {**ns, "ipv6_nd_target": ip}, to_guest,
             purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_uplink", P_PORT, {**v6, "ipv6_dst": ip}, to_guest,
             purpose=Purpose.GUEST_IP, subject=sub),
        flow("from_guest", P_ND_BOUND,
             {"in_port": p, "eth_src": m, **na, "ipv6_nd_target": ip},
             [SetField("ipv6_nd_tll", m)], goto="switch_local", purpose=Purpose.GUEST_IP,
             subject=sub),
        flow("from_guest", P_ND, {"in_port": p, "eth_src": m, **ns, "ipv6_src": ip},
             [SetField("ipv6_nd_sll", m)], goto="switch_local", purpose=Purpose.GUEST_IP,
             subject=sub),
        flow("from_guest", P_BINDING, {"in_port": p, "eth_src": m, **v6, "ipv6_src": ip},
             goto="switch_local", purpose=Purpose.GUEST_IP, subject=sub,
             idle_timeout=idle, send_flow_removed=bool(idle)),
    ]


# ------------------------------------------------------------------ sections
# One type per kind of section.  Each knows what its flows are computed from (`args`, read
# from the model and the view) and how (`flows`); the core and `sections` never switch on a
# kind.  (Named tuples: cheap to make and hash on the packet-in path; the `kind` field keeps
# two sections of different types apart even when their keys are equal.)


class StaticSection(NamedTuple):
    """The uplink, the station MAC and the list of guest ports."""

    kind: str = "static"

    def args(self, model: Model, view: View | None) -> tuple | None:
        return static_args(view)

    def flows(self, args: tuple) -> list[FlowSpec]:
        return static_flows(*args)


class PortSection(NamedTuple):
    """One guest port and its guest MACs (source check, learning triggers)."""

    port_no: int
    kind: str = "port"

    def args(self, model: Model, view: View | None) -> tuple | None:
        guest = model.guests.get(self.port_no)
        return port_args(guest, view) if guest else None

    def flows(self, args: tuple) -> list[FlowSpec]:
        return port_flows(*args)


class BindingSection(NamedTuple):
    """One IPv4 or IPv6 binding (ingress steering, egress source check, ND)."""

    ip: str
    kind: str = "ip"

    def args(self, model: Model, view: View | None) -> tuple | None:
        b = model.bindings.get(self.ip)
        return binding_args(b, view) if b else None

    def flows(self, args: tuple) -> list[FlowSpec]:
        return binding_flows(*args)


class GroupSection(NamedTuple):
    """One multicast group or subnet-directed broadcast address restored to its own MAC."""

    group: str
    kind: str = "group"

    def args(self, model: Model, view: View | None) -> tuple | None:
        group = self.group
        if group in WELL_KNOWN or group in model.host_broadcasts:
            return group_args(group, None, view)
        members = model.groups.get(group)
        return group_args(group, members, view) if members else None

    def flows(self, args: tuple) -> list[FlowSpec]:
        return group_flows(*args)


STATIC = StaticSection()
Section = Union[StaticSection, PortSection, BindingSection, GroupSection]
