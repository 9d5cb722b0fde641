"""DHCP through a one-MAC uplink: the core's handling of DHCP packet-ins.

Strategies (``dhcp_mode``):

* ``broadcast`` (default): client messages get the BOOTP broadcast flag (UDP
  checksum patched), keep their ``chaddr`` and leave with the station MAC;
  replies are delivered to the guest whose MAC equals ``chaddr``.
* ``client-id``: ``chaddr`` becomes the station MAC (option 61 carries the guest's
  MAC); replies are mapped back by transaction id (`dhcp_relay.ClientIdRelay`).

Either way an ACK binds ``yiaddr`` to the guest for the lease time; NAK, RELEASE
and DECLINE remove what they should.  Replies whose ``chaddr`` is the station MAC
are the host's own and go to LOCAL unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import dhcp
from .compat import parser
from .dhcp_relay import ClientIdRelay
from .guard import check_claim
from .packets import Frame
from .pipeline import BROADCAST, PORT_LOCAL
from .state import GuestPort

if TYPE_CHECKING:  # pragma: no cover
    from .core import Core


class DhcpService:
    """DHCP packet-in handling for one `Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.relay = ClientIdRelay()

    @property
    def mode(self) -> str:
        return self.core.config.dhcp_mode

    def _bad(self, exc: dhcp.DhcpError, where: str) -> list:
        self.core.counters.bump(f"dhcp.malformed.{exc.reason}")
        self.core._log_once(f"dhcp-bad:{where}:{exc.reason}", "dropping bad DHCP frame from %s: %s",
                            where, exc)
        return []

    def _lease_event(self, msg: dhcp.DhcpFrame) -> dhcp.LeaseEvent | None:
        """What the message teaches about leases; a message that teaches nothing valid is
        still forwarded (counted), it just binds nothing."""
        try:
            return dhcp.lease_event(msg)
        except dhcp.DhcpError as exc:
            self.core.counters.bump(f"dhcp.unlearnable.{exc.reason}")
            return None

    def tick(self, now: float) -> None:
        self.relay.expire(now)

    def next_due(self) -> float | None:
        """When `tick` has something to do (None: nothing pending)."""
        return self.relay.next_expiry()

    def forget_port(self, port_no: int) -> None:
        self.relay.forget_port(port_no)

    # ------------------------------------------------------------- from guests
    def from_guest(self, guest: GuestPort, frame: Frame, now: float) -> list:
        core = self.core
        if core.uplink is None or core.station_mac is None:
            core.counters.bump("dhcp.no-uplink")
            return []
        try:
            msg = dhcp.parse(frame.data)
            if not msg.is_client_message:
                raise dhcp.DhcpError("wrong-direction")
            if msg.chaddr != guest.mac:
                core.counters.bump("refused.dhcp-chaddr")
                core._log_once(f"dhcp-chaddr:{guest.port_no}",
                               "port %s: DHCP for chaddr %s, not its own MAC %s",
                               guest.name, msg.chaddr, guest.mac)
                return []
            event = self._lease_event(msg)
            if self.mode == "client-id":
                out = self.relay.outbound(msg, guest.mac, guest.port_no, core.station_mac, now)
            else:
                out = dhcp.rewrite_eth_src(dhcp.set_broadcast_flag(msg), core.station_mac)
        except dhcp.DhcpError as exc:
            return self._bad(exc, guest.name)
        core.counters.bump(f"dhcp.{msg.msg_name.lower()}.from_guest")
        msgs: list = []
        if event is not None and event.ip is not None:
            b = core.bindings.get(event.ip)
            if b is not None and b.port_no == guest.port_no:
                core.binding_log.info(now, "port %s: %s %s", guest.name, event.cause, event.ip)
                msgs += core.unbind(event.ip, event.cause)
        port = self._egress_port(frame.eth_dst)
        if port != core.uplink:
            out = frame.data  # a server on the host or in another guest: no translation needed
        msgs.append(core.packet_out(guest.port_no, [parser.OFPActionOutput(port)], out))
        return msgs

    def _egress_port(self, eth_dst: str) -> int:
        core = self.core
        if eth_dst == core.station_mac:
            return PORT_LOCAL
        other = core.guest_by_mac(eth_dst) if eth_dst != BROADCAST else None
        return other.port_no if other is not None else core.uplink

    # ------------------------------------------------------------- from the LAN
    def from_uplink(self, frame: Frame, now: float) -> list:
        core = self.core
        try:
            msg = dhcp.parse(frame.data)
            if not msg.is_server_reply:
                raise dhcp.DhcpError("wrong-direction")
            if self.mode == "client-id":
                relayed = self.relay.inbound(msg, now)
                if relayed is not None:
                    guest = core.guests.get(relayed.port)
                    data = relayed.frame
                    restored = dhcp.parse(data)
                    event = self._lease_event(restored)
                    if guest is None or guest.mac != relayed.guest_mac:
                        return self._unknown(msg)
                    return self._deliver(guest, data, event, restored.msg_name, now)
            chaddr = dhcp.reply_chaddr(msg)
            if chaddr == core.station_mac:
                core.counters.bump(f"dhcp.{msg.msg_name.lower()}.to_host")
                return [core.packet_out(core.uplink, [parser.OFPActionOutput(PORT_LOCAL)],
                                        frame.data)]
            guest = core.guest_by_mac(chaddr)
            if guest is None:
                return self._unknown(msg)
            event = self._lease_event(msg)
            data = dhcp.set_eth_dst(msg.raw, chaddr)
        except dhcp.DhcpError as exc:
            return self._bad(exc, "uplink")
        return self._deliver(guest, data, event, msg.msg_name, now)

    def _unknown(self, msg: dhcp.DhcpFrame) -> list:
        self.core.counters.bump("dhcp.reply-unknown-client")
        return []

    def _deliver(self, guest: GuestPort, data: bytes, event: dhcp.LeaseEvent | None,
                 name: str, now: float) -> list:
        """The reply for the guest first (it waits for it; the flows it needs next follow
        within the same batch), then the binding's flow changes."""
        core = self.core
        core.counters.bump(f"dhcp.{name.lower()}.to_guest")
        msgs = [core.packet_out(core.uplink, [parser.OFPActionOutput(guest.port_no)], data)]
        if event is not None and event.kind == "bind" and event.ip is not None:
            bound = self._bind(guest, event, now)
            if bound is None:  # the guest must not configure an address it cannot use
                core.counters.bump(f"dhcp.{name.lower()}.withheld")
                return []
            msgs += bound
        elif event is not None and event.kind == "unbind":
            for ip in sorted(guest.ips):
                b = core.bindings.get(ip)
                if b is not None and b.source == "dhcp" and event.ip in (None, ip):
                    msgs += core.unbind(ip, event.cause)
        return msgs

    def _bind(self, guest: GuestPort, event: dhcp.LeaseEvent, now: float) -> list | None:
        """Messages binding the leased address, or None when the binding is refused."""
        core = self.core
        ip = event.ip
        assert ip is not None
        cause = check_claim(ip, guest, {}, core.host_ips, core.config.max_ips_per_port + 1,
                            core.config.max_bindings + 1)
        if cause or (ip not in core.bindings and len(core.bindings) >= core.config.max_bindings):
            core.counters.bump(f"refused.dhcp-{cause or 'global-limit'}")
            core._log_once(f"dhcp-refused:{guest.port_no}:{cause}",
                           "port %s: DHCP gave %s, refused (%s): reply withheld",
                           guest.name, ip, cause or "global-limit")
            return None
        owner = core.bindings.get(ip)
        if owner is not None and owner.port_no != guest.port_no:
            core._log_once(f"dhcp-move:{ip}", "DHCP server gave %s (bound to port %s) to %s",
                           ip, owner.port_no, guest.name)
        msgs: list = []
        for old in sorted(guest.ips - {ip}):  # a new lease replaces the old one
            b = core.bindings.get(old)
            if b is not None and b.source == "dhcp":
                msgs += core.unbind(old, "new-lease")
        core.binding_log.info(now, "port %s: DHCP lease %s for %ss", guest.name, ip,
                              event.lease_seconds)
        return msgs + core.bind(guest, ip, "dhcp", now, expires=event.expiry(now),
                                lease=event.lease_seconds)
