"""The core's packet-in path: what a frame the switch sent up teaches, or why it is refused.

Frames come up from a guest port when the switch cannot vouch for them (first frame of a
port, an unknown source MAC, an address without a binding, ARP and DHCP) and from the
uplink for DHCP replies and LAN hosts' ARP for guest addresses.  Guests' DHCP goes on to
`dhcp_service`; whom a guest may be and which addresses it may use is decided in `guard`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import guard
from .packets import Frame, FrameError, parse_frame
from .pipeline import ETH_EAPOL, ETH_IPV6
from .state import GuestPort

if TYPE_CHECKING:  # pragma: no cover
    from .core import Core

LOG = logging.getLogger("wlbridge.core")


class PacketInPath:
    """Packet-in handling for one `Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def packet_in(self, in_port: int, data: bytes, now: float) -> list:
        """Parse a packet-in and act on it (`Core.packet_in` catches what escapes)."""
        core = self.core
        try:
            frame = parse_frame(data)
        except FrameError as exc:
            core.counters.bump(f"malformed.{exc.reason}")
            return []
        if in_port == core.uplink:
            return self._from_uplink(frame, now)
        guest = core.guests.get(in_port)
        if guest is None:
            core.counters.bump("packet_in.unknown_port")
            return []
        if guest.mac is None:
            return self._learn_mac(guest, frame)
        if frame.eth_src != guest.mac:
            return self.refuse(guest, "spoofed-mac", frame.eth_src)
        if frame.eth_type == ETH_EAPOL:
            return self.refuse(guest, "eapol", "")
        if frame.eth_type == ETH_IPV6:  # only router advertisements come here
            return self.refuse(guest, "ipv6-router-advert", "")
        if frame.is_dhcp_server:
            return self.refuse(guest, "dhcp-server", frame.ipv4.src if frame.ipv4 else "")
        if frame.is_dhcp_client:
            core.counters.bump("packet_in.dhcp")
            return core.dhcp.from_guest(guest, frame, now)
        if frame.arp is not None:
            core.counters.bump("packet_in.arp")
            return self._guest_arp(guest, frame, now)
        if frame.ipv4 is not None:
            core.counters.bump("packet_in.ipv4")
            return self.claim(guest, frame.ipv4.src, "ipv4", frame, now)
        core.counters.bump("packet_in.other")
        return []

    def _from_uplink(self, frame: Frame, now: float) -> list:
        core = self.core
        if frame.is_dhcp_server:
            core.counters.bump("packet_in.dhcp")
            return core.dhcp.from_uplink(frame, now)
        if frame.arp is not None and frame.arp.src_ip in core.bindings:
            b = core.bindings[frame.arp.src_ip]
            core.counters.bump("conflicts.uplink")
            core._log_once(f"conflict:{b.ip}",
                           "LAN host %s claims %s, bound to guest port %s",
                           frame.arp.src_mac, b.ip, b.port_no)
            return []
        core.counters.bump("packet_in.uplink_other")
        return []

    def _learn_mac(self, guest: GuestPort, frame: Frame) -> list:
        core = self.core
        mac = frame.eth_src
        cause = guard.check_guest_mac(mac, core.station_mac, core._by_mac)
        if cause:
            return self.refuse(guest, cause, mac)
        guest.mac, guest.mac_source = mac, "learned"
        core._by_mac[mac] = guest
        core.dirty = True
        core.counters.bump("guests.mac_learned")
        LOG.info("port %s: guest MAC %s", guest.name, mac)
        msgs = core._sync([("port", guest.port_no)])
        return msgs + [core.packet_out_table(guest.port_no, frame.data)]

    def _guest_arp(self, guest: GuestPort, frame: Frame, now: float) -> list:
        arp = frame.arp
        assert arp is not None
        if arp.src_mac != guest.mac:
            return self.refuse(guest, "arp-sha-mismatch", arp.src_mac)
        if arp.src_ip == "0.0.0.0":  # probe: the switch forwarded it already
            self.core.counters.bump("arp.probes")
            return []
        return self.claim(guest, arp.src_ip, "arp", frame, now)

    def claim(self, guest: GuestPort, ip: str, source: str, frame: Frame | None,
              now: float) -> list:
        """A guest uses `ip`: bind it if allowed, then let the frame go on."""
        core = self.core
        current = core.bindings.get(ip)
        if current is not None and current.port_no == guest.port_no:
            # already ours (e.g. after an idle flow expired meanwhile): just forward
            msgs = core._sync([("ip", ip)])
        else:
            cause = guard.check_claim(ip, guest, core.bindings, core.host_ips,
                                      core.config.max_ips_per_port, core.config.max_bindings)
            if cause:
                return self.refuse(guest, cause, ip)
            msgs = core.bind(guest, ip, source, now)
        if frame is not None:
            msgs.append(core.packet_out_table(guest.port_no, frame.data))
        return msgs

    def refuse(self, guest: GuestPort, cause: str, detail: str) -> list:
        """Count and log (once per port and cause) a frame the controller will not act on."""
        core = self.core
        core.counters.bump(f"refused.{cause}")
        core._log_once(f"refused:{guest.port_no}:{cause}",
                       "port %s: refused (%s) %s", guest.name, cause, detail)
        return []
