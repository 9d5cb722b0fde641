"""The IPv6 packet-in policy: what a guest's IPv6 frame teaches (Neighbor Discovery, an
unbound source), how its Router Solicitation reaches the LAN, and LAN NAs claiming a guest's
address.

The switch sends up only what must be learned or decided (see `flows.port6_flows`,
`flows.binding6_flows`): IPv6 from a source not bound to the port, DAD (source ::), NAs for
a target not bound to the port, Router Solicitations, and NAs from the LAN for a bound
guest address.  Once an address is bound its traffic and its ND stay in the switch.
Addresses are bound as the IPv4 ones are (`effects.Bind`, one binding table), with their
own per-guest limit (``ipv6_bindings_per_guest``) and the station's budget of all the guests
together (``max_ipv6_per_station``, `policing`); who may own one is decided in
`guard.check_claim6`.  Nothing is learned from a malformed ND message (`ndp.parse_ipv6`
refuses it: counted as ``malformed.<reason>``).
"""

from __future__ import annotations

from typing import Any

from wlbridge.model.state import GuestPort, Model
from wlbridge.policy import fleet, guard
from wlbridge.policy.effects import Bind, Deliver, Effect, Refresh, Reinject
from wlbridge.policy.policing import Policing
from wlbridge.proto.ndp import (
    NA,
    NS,
    RA,
    REDIRECT,
    RS,
    UNSPECIFIED,
    parse_ipv6,
    router_solicitation,
)
from wlbridge.proto.packets import Frame, FrameError
from wlbridge.telemetry import Telemetry

SOURCE_ND = "nd"  # learned from DAD, an NS's source or an NA's target
SOURCE_IPV6 = "ipv6"  # learned from the source of other IPv6


class NdPolicy:
    """IPv6 packet-in decisions over one model.  `config` supplies the limits
    (``ipv6_bindings_per_guest``, ``max_bindings``); `policing` the station's IPv6 budget
    (None: none)."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry,
                 policing: Policing | None = None) -> None:
        self.model = model
        self.config = config
        self.tel = telemetry
        self.policing = policing

    def from_guest(self, guest: GuestPort, frame: Frame, now: float) -> list[Effect]:
        """An IPv6 frame from a guest (`frame.eth_src`) behind the port."""
        tel = self.tel
        try:
            info = parse_ipv6(frame.data)
        except FrameError as exc:
            tel.bump(f"malformed.{exc.reason}")
            return []
        kind = info.icmp_type
        if kind == RA:
            return self.refuse(guest, "ipv6-router-advert", info.src)
        if kind == REDIRECT:
            return self.refuse(guest, "ipv6-redirect", info.src)
        mac = frame.eth_src
        if info.sll is not None and info.sll != mac:
            return self.refuse(guest, "nd-sll-mismatch", info.sll)
        if info.tll is not None and info.tll != mac:
            return self.refuse(guest, "nd-tll-mismatch", info.tll)
        if kind == RS:
            tel.bump("packet_in.ipv6_rs")
            return self._router_solicitation(guest, frame, info, now)
        if info.src == UNSPECIFIED:
            if kind == NS:  # DAD: the target is the guest's tentative address
                tel.bump("packet_in.ipv6_dad")
                return self.claim(guest, [info.target or ""], SOURCE_ND, None, mac, now)
            tel.bump("packet_in.ipv6_unspecified")  # MLD before DAD ended: forwarded
            return []
        if kind == NA:
            tel.bump("packet_in.ipv6_na")
            return self.claim(guest, [info.target or "", info.src], SOURCE_ND, frame.data,
                              mac, now)
        if kind == NS:
            tel.bump("packet_in.ipv6_ns")
            return self.claim(guest, [info.src], SOURCE_ND, frame.data, mac, now)
        tel.bump("packet_in.ipv6")
        return self.claim(guest, [info.src], SOURCE_IPV6, frame.data, mac, now)

    def from_uplink(self, frame: Frame, now: float) -> list[Effect]:
        """An NA from the LAN whose target is a bound guest address (the switch has given
        it to the guest, whose DAD needs it): counted as a conflict, as ARP is."""
        tel = self.tel
        try:
            info = parse_ipv6(frame.data)
        except FrameError as exc:
            tel.bump(f"malformed.{exc.reason}")
            return []
        b = self.model.bindings.get(info.target or "") if info.icmp_type == NA else None
        if b is None:
            tel.bump("packet_in.uplink_other")
            return []
        tel.bump("conflicts.uplink")
        tel.log_once(f"conflict:{b.ip}", "LAN host %s claims %s, bound to guest port %s",
                     info.tll or frame.eth_src, b.ip, b.port_no)
        return []

    def _router_solicitation(self, guest: GuestPort, frame: Frame, info: Any, now: float
                             ) -> list[Effect]:
        """Out to the LAN only, rewritten (OVS cannot rewrite RS options): a router answering
        with a unicast RA sends it to the station MAC, for the guest's link-local source,
        which is bound first so that the answer finds its way in."""
        model = self.model
        if model.uplink is None or model.station_mac is None:
            return []
        effects: list[Effect] = []
        if info.src != UNSPECIFIED:
            effects = self.claim(guest, [info.src], SOURCE_ND, None, frame.eth_src, now)
            if not any(isinstance(e, (Bind, Refresh)) for e in effects):   # refused
                return effects
        data = router_solicitation(frame.data, info, model.station_mac)
        return [Deliver(guest.port_no, model.uplink, data), *effects]

    def claim(self, guest: GuestPort, ips: list[str], source: str, data: bytes | None,
              mac: str, now: float) -> list[Effect]:
        """The guest `mac` behind the port uses every address of `ips`: bind those not yet
        bound to it if all are allowed (else refuse: nothing is bound), then let the frame
        (`data`) go on.  Over the station's budget, the guest's oldest temporary addresses
        are released first (`policing.claim6`)."""
        bindings, config = self.model.bindings, self.config
        effects: list[Effect] = []
        new = 0  # addresses bound by this claim already count against the limit
        for ip in dict.fromkeys(ips):
            current = bindings.get(ip)
            if current is not None and (current.port_no, current.mac) == (guest.port_no, mac):
                effects.append(Refresh(ip))
                continue
            if ip in self.model.left_behind:  # an address of the LAN the station left
                return self.refuse(guest, "old-lan", ip)
            cause = guard.check_claim6(ip, guest, bindings, self.model.host_ips,
                                       config.ipv6_bindings_per_guest - new,
                                       config.max_bindings - new, mac, self.model.remote)
            if cause:
                held = fleet.held_elsewhere(self.model, ip, mac)
                if cause == "fleet-ip-in-use" and held is not None:   # recorded, not bound
                    return self.refuse(guest, cause, ip) + [fleet.refused(ip, mac, held, now)]
                return self.refuse(guest, cause, ip)
            effects.append(Bind(guest.port_no, ip, source, mac=guest.sibling(mac)))
            new += 1
        if new and self.policing is not None:
            over, releases = self.policing.claim6(
                [e.ip for e in effects if isinstance(e, Bind)], guest, mac, now)
            if over is not None:
                return []  # (counted, logged and shown by `policing`)
            effects = releases + effects
        if data is not None:
            effects.append(Reinject(guest.port_no, data))
        return effects

    def refuse(self, guest: GuestPort, cause: str, detail: str) -> list[Effect]:
        """Count and log (once per port and cause) a frame the controller will not act on."""
        self.tel.bump(f"refused.{cause}")
        self.tel.log_once(f"refused:{guest.port_no}:{cause}", "port %s: refused (%s) %s",
                          guest.name, cause, detail)
        return []
