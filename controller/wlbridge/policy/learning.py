"""The packet-in policy: what a frame the switch sent up teaches, or why it is refused.

Frames come up from a guest port when the switch cannot vouch for them (first frame of a
port, an unknown source MAC, an address without a binding, ARP and DHCP) and from the
uplink for DHCP replies and LAN hosts' ARP for guest addresses.  Guests' DHCP goes on to
`dhcp_service` (DHCPv6 to `dhcp6_service`); whom a guest may be and which addresses it may
use is decided in `guard`.  The answer is a list of `effects` (the core applies them);
refusals are only counted and logged (through `telemetry`).
"""

from __future__ import annotations

from typing import Any

from wlbridge.flows.pipeline import ETH_EAPOL, ETH_IPV6, IPPROTO_ICMPV6, IPPROTO_IGMP
from wlbridge.policy import fleet, guard
from wlbridge.policy.dhcp6_service import Dhcp6Service
from wlbridge.policy.dhcp_service import DhcpService
from wlbridge.policy.effects import Announce, Bind, Effect, LearnMac, Refresh, Reinject
from wlbridge.policy.nd import NdPolicy
from wlbridge.policy.policing import Policing
from wlbridge.proto.packets import Frame, FrameError, parse_frame

#: IPv6 next headers an MLD message comes behind: ICMPv6, or the hop-by-hop options header
#: (with its router alert) that MLD messages carry first
MLD_CARRIERS = (IPPROTO_ICMPV6, 0)
from wlbridge.model.state import GuestPort, Model
from wlbridge.telemetry import Telemetry

#: guest MACs one port may carry unless configured (``max_macs_per_port``)
MAX_MACS_PER_PORT = 32


class PacketInPolicy:
    """Packet-in decisions over one model.  `config` supplies the limits
    (``max_ips_per_port``, ``max_bindings``, ``max_macs_per_port``)."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry,
                 dhcp: DhcpService, groups: Any = None,
                 dhcp6: Dhcp6Service | None = None, policing: Policing | None = None
                 ) -> None:
        self.model = model
        self.config = config
        self.tel = telemetry
        self.dhcp = dhcp
        self.groups = groups  # a `groups.GroupPolicy` (IGMP/MLD snooping), or None
        self.dhcp6 = dhcp6 if dhcp6 is not None else Dhcp6Service(model, config, telemetry)
        self.nd = NdPolicy(model, config, telemetry, policing)

    def packet_in(self, in_port: int, data: bytes, now: float,
                  snooped: bool = False) -> list[Effect]:
        """Parse a packet-in and decide (`Core.packet_in` catches what escapes).  `snooped`:
        the copy of a guest's IGMP/MLD message that the snooping table sends up (the frame
        itself went on to the source check, which may send it up again as a learning
        trigger): only its memberships are learned from it."""
        model = self.model
        counters = self.tel.counters
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            counters[f"malformed.{exc.reason}"] += 1
            return []
        if in_port == model.uplink:
            return self._from_uplink(frame, now)
        guest = model.guests.get(in_port)
        if guest is None:
            counters["packet_in.unknown_port"] += 1
            return []
        if frame.eth_src not in guest.macs:
            return self._learn_mac(guest, frame)
        if frame.eth_type == ETH_EAPOL:
            return self.refuse(guest, "eapol", "")
        is_group_msg = ((frame.ipv6 is not None and frame.ipv6.proto in MLD_CARRIERS)
                        or (frame.ipv4 is not None and frame.ipv4.proto == IPPROTO_IGMP))
        if snooped:
            effects = self.groups.from_guest(guest, data, now) if (
                self.groups is not None and is_group_msg) else None
            if effects is None:  # another ICMPv6 message: the source check deals with it
                counters["packet_in.snooped_other"] += 1
                return []
            return effects
        if is_group_msg and frame.ipv4 is not None and frame.ipv4.src == "0.0.0.0":
            counters["packet_in.igmp_unspecified"] += 1  # no address to vouch for: dropped
            return []
        if frame.eth_type == ETH_IPV6:
            if frame.is_dhcp6_server:  # guests are DHCPv6 clients, never servers or relays
                return self.refuse(guest, "dhcp6-server", frame.ipv6.src if frame.ipv6 else "")
            if frame.is_dhcp6_client:
                counters["packet_in.dhcp6"] += 1
                return self.dhcp6.from_guest(guest, frame, now)
        if frame.eth_type == ETH_IPV6:  # ND, router solicitations, unbound sources
            return self.nd.from_guest(guest, frame, now)
        if frame.is_dhcp_server:
            return self.refuse(guest, "dhcp-server", frame.ipv4.src if frame.ipv4 else "")
        if frame.is_dhcp_client:
            counters["packet_in.dhcp"] += 1
            return self.dhcp.from_guest(guest, frame, now)
        if frame.arp is not None:
            counters["packet_in.arp"] += 1
            return self._guest_arp(guest, frame, now)
        if frame.ipv4 is not None:
            counters["packet_in.ipv4"] += 1
            return self.claim(guest, frame.ipv4.src, "ipv4", frame, now)
        counters["packet_in.other"] += 1
        return []

    def _from_uplink(self, frame: Frame, now: float) -> list[Effect]:
        model, tel = self.model, self.tel
        if frame.is_dhcp_server:
            tel.bump("packet_in.dhcp")
            return self.dhcp.from_uplink(frame, now)
        if frame.is_dhcp6_server:
            tel.bump("packet_in.dhcp6")
            return self.dhcp6.from_uplink(frame, now)
        if frame.arp is not None and frame.arp.src_ip in model.bindings:
            b = model.bindings[frame.arp.src_ip]
            tel.bump("conflicts.uplink")
            tel.log_once(f"conflict:{b.ip}", "LAN host %s claims %s, bound to guest port %s",
                         frame.arp.src_mac, b.ip, b.port_no)
            return []
        if frame.eth_type == ETH_IPV6:
            return self.nd.from_uplink(frame, now)
        tel.bump("packet_in.uplink_other")
        return []

    def _learn_mac(self, guest: GuestPort, frame: Frame) -> list[Effect]:
        """A frame from a MAC the port does not carry yet: a new guest behind it, up to the
        port's bound; a port with a configured MAC (or a bound of 1) carries that one only."""
        mac = frame.eth_src
        if guest.mac is not None:
            limit = getattr(self.config, "max_macs_per_port", MAX_MACS_PER_PORT)
            if guest.mac_source == "configured" or limit <= 1:
                return self.refuse(guest, "spoofed-mac", mac)
            if len(guest.macs) >= limit:
                return self.refuse(guest, "mac-limit", mac)
        cause = guard.check_guest_mac(mac, self.model.station_mac, self.model.by_mac)
        if cause:
            return self.refuse(guest, cause, mac)
        return [LearnMac(guest.port_no, mac), *fleet.arrived(self.model, guest, mac),
                Reinject(guest.port_no, frame.data)]

    def _guest_arp(self, guest: GuestPort, frame: Frame, now: float) -> list[Effect]:
        arp = frame.arp
        assert arp is not None
        if arp.src_mac != frame.eth_src:
            return self.refuse(guest, "arp-sha-mismatch", arp.src_mac)
        if arp.src_ip == "0.0.0.0":  # probe: the switch forwarded it already
            self.tel.bump("arp.probes")
            return []
        return self.claim(guest, arp.src_ip, "arp", frame, now)

    def claim(self, guest: GuestPort, ip: str, source: str, frame: Frame,
              now: float) -> list[Effect]:
        """The guest `frame.eth_src` behind the port uses `ip`: bind it if allowed, then let
        the frame go on."""
        bindings = self.model.bindings
        current = bindings.get(ip)
        mac = frame.eth_src
        if current is not None and (current.port_no, current.mac) == (guest.port_no, mac):
            # already ours (e.g. after an idle flow expired meanwhile): just forward
            effects: list[Effect] = [Refresh(ip)]
        else:
            if ip in self.model.left_behind:  # an address of the LAN the station left
                return self.refuse(guest, "old-lan", ip)
            config = self.config
            remote = self.model.remote
            cause = guard.check_claim(ip, guest, bindings, self.model.host_ips,
                                      config.max_ips_per_port, config.max_bindings, mac, remote)
            if cause:
                held = fleet.held_elsewhere(self.model, ip, mac)
                if cause == "fleet-ip-in-use" and held is not None:
                    return self.refuse(guest, cause, ip) + [fleet.refused(ip, mac, held, now)]
                return self.refuse(guest, cause, ip)
            effects = [Bind(guest.port_no, ip, source, mac=guest.sibling(mac))]
            if ip in remote:   # it held it on another host: it moved here
                effects.append(Announce((ip,)))
        if frame is not None:
            effects.append(Reinject(guest.port_no, frame.data))
        return effects

    def refuse(self, guest: GuestPort, cause: str, detail: str) -> list[Effect]:
        """Count and log (once per port and cause) a frame the controller will not act on."""
        self.tel.bump(f"refused.{cause}")
        self.tel.log_once(f"refused:{guest.port_no}:{cause}", "port %s: refused (%s) %s",
                          guest.name, cause, detail)
        return []
