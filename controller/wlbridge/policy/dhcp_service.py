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

from typing import Any

from wlbridge.flows.pipeline import BROADCAST, PORT_LOCAL
from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.dhcp_relay import ClientIdRelay
from wlbridge.policy.effects import Bind, Deliver, Effect, Unbind
from wlbridge.policy.guard import check_claim
from wlbridge.proto import dhcp
from wlbridge.proto.packets import Frame
from wlbridge.telemetry import Telemetry


class DhcpService:
    """DHCP packet-in decisions over one model (returns `effects`).  `config` supplies
    ``dhcp_mode`` and the address limits."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry) -> None:
        self.model = model
        self.config = config
        self.tel = telemetry
        self.relay = ClientIdRelay()

    @property
    def mode(self) -> str:
        return self.config.dhcp_mode

    def _bad(self, exc: dhcp.DhcpError, where: str) -> list[Effect]:
        self.tel.bump(f"dhcp.malformed.{exc.reason}")
        self.tel.log_once(f"dhcp-bad:{where}:{exc.reason}", "dropping bad DHCP frame from %s: %s",
                          where, exc)
        return []

    def _lease_event(self, msg: dhcp.DhcpFrame) -> dhcp.LeaseEvent | None:
        """What the message teaches about leases; a message that teaches nothing valid is
        still forwarded (counted), it just binds nothing."""
        try:
            return dhcp.lease_event(msg)
        except dhcp.DhcpError as exc:
            self.tel.bump(f"dhcp.unlearnable.{exc.reason}")
            return None

    def tick(self, now: float) -> None:
        self.relay.expire(now)

    def next_due(self) -> float | None:
        """When `tick` has something to do (None: nothing pending)."""
        return self.relay.next_expiry()

    def forget_port(self, port_no: int) -> None:
        self.relay.forget_port(port_no)

    # ------------------------------------------------------------- from guests
    def from_guest(self, guest: GuestPort, frame: Frame, now: float) -> list[Effect]:
        model, tel = self.model, self.tel
        uplink, station_mac = model.uplink, model.station_mac
        if uplink is None or station_mac is None:
            tel.bump("dhcp.no-uplink")
            return []
        try:
            msg = dhcp.parse(frame.data)
            if not msg.is_client_message:
                raise dhcp.DhcpError("wrong-direction")
            mac = frame.eth_src  # the guest behind the port
            if msg.chaddr != mac:
                tel.bump("refused.dhcp-chaddr")
                tel.log_once(f"dhcp-chaddr:{guest.port_no}",
                             "port %s: DHCP for chaddr %s, not its own MAC %s",
                             guest.name, msg.chaddr, mac)
                return []
            event = self._lease_event(msg)
            if self.mode == "client-id":
                out = self.relay.outbound(msg, mac, guest.port_no, station_mac, now)
            else:
                out = dhcp.rewrite_eth_src(dhcp.set_broadcast_flag(msg), station_mac)
        except dhcp.DhcpError as exc:
            return self._bad(exc, guest.name)
        tel.bump(f"dhcp.{msg.msg_name.lower()}.from_guest")
        port = self._egress_port(frame.eth_dst, uplink, station_mac)
        if port != uplink:
            out = frame.data  # a server on the host or in another guest: no translation needed
        effects: list[Effect] = [Deliver(guest.port_no, port, out)]
        if event is not None and event.ip is not None:
            b = model.bindings.get(event.ip)
            if b is not None and (b.port_no, b.mac) == (guest.port_no, mac):
                tel.binding_log.info(now, "port %s: %s %s", guest.name, event.cause, event.ip)
                effects.append(Unbind(event.ip, event.cause))
        return effects

    def _egress_port(self, eth_dst: str, uplink: int, station_mac: str) -> int:
        if eth_dst == station_mac:
            return PORT_LOCAL
        other = self.model.guest_by_mac(eth_dst) if eth_dst != BROADCAST else None
        return other.port_no if other is not None else uplink

    # ------------------------------------------------------------- from the LAN
    def from_uplink(self, frame: Frame, now: float) -> list[Effect]:
        model = self.model
        try:
            msg = dhcp.parse(frame.data)
            if not msg.is_server_reply:
                raise dhcp.DhcpError("wrong-direction")
            if self.mode == "client-id":
                relayed = self.relay.inbound(msg, now)
                if relayed is not None:
                    guest = model.guests.get(relayed.port)
                    restored = dhcp.parse(relayed.frame)
                    data = self._repaired(restored)
                    event = self._lease_event(restored)
                    if guest is None or relayed.guest_mac not in guest.macs:
                        return self._unknown(msg)
                    return self._deliver(guest, relayed.guest_mac, data, event,
                                         restored.msg_name, now)
            chaddr = dhcp.reply_chaddr(msg)
            if chaddr == model.station_mac:
                self.tel.bump(f"dhcp.{msg.msg_name.lower()}.to_host")
                assert model.uplink is not None  # a packet-in from the uplink
                return [Deliver(model.uplink, PORT_LOCAL, frame.data)]
            guest = model.guest_by_mac(chaddr)
            if guest is None:
                return self._unknown(msg)
            event = self._lease_event(msg)
            data = dhcp.set_eth_dst(self._repaired(msg), chaddr)
        except dhcp.DhcpError as exc:
            return self._bad(exc, "uplink")
        return self._deliver(guest, chaddr, data, event, msg.msg_name, now)

    def _repaired(self, msg: dhcp.DhcpFrame) -> bytes:
        """The reply with a wrong UDP checksum corrected (counted): hostapd's unicast copies
        of a broadcast reply carry one when the server's checksum was left to offload."""
        fixed = dhcp.repair_udp_checksum(msg)
        if fixed is None:
            return bytes(msg.raw)
        self.tel.bump("dhcp.reply.checksum_repaired")
        return fixed

    def _unknown(self, msg: dhcp.DhcpFrame) -> list[Effect]:
        self.tel.bump("dhcp.reply-unknown-client")
        return []

    def _deliver(self, guest: GuestPort, mac: str, data: bytes,
                 event: dhcp.LeaseEvent | None, name: str, now: float) -> list[Effect]:
        """The reply for the guest `mac` behind port `guest` (delivered first: it waits for
        it; the flows it needs next follow within the same batch), then the binding's
        changes."""
        bindings = self.model.bindings
        self.tel.bump(f"dhcp.{name.lower()}.to_guest")
        uplink = self.model.uplink
        assert uplink is not None  # a packet-in from the uplink
        effects: list[Effect] = [Deliver(uplink, guest.port_no, data)]
        if event is not None and event.kind == "bind" and event.ip is not None:
            bound = self._bind(guest, mac, event, now)
            if bound is None:  # the guest must not configure an address it cannot use
                self.tel.bump(f"dhcp.{name.lower()}.withheld")
                return []
            effects += bound
        elif event is not None and event.kind == "unbind":
            for ip in sorted(guest.ips):
                b = bindings.get(ip)
                if b is not None and b.source == "dhcp" and b.mac == mac \
                        and event.ip in (None, ip):
                    effects.append(Unbind(ip, event.cause))
        return effects

    def _bind(self, guest: GuestPort, mac: str, event: dhcp.LeaseEvent,
              now: float) -> list[Effect] | None:
        """Effects binding the address leased to the guest `mac` behind port `guest`, or
        None when the binding is refused."""
        bindings, config, tel = self.model.bindings, self.config, self.tel
        ip = event.ip
        assert ip is not None
        cause = check_claim(ip, guest, {}, self.model.host_ips, config.max_ips_per_port + 1,
                            config.max_bindings + 1)
        if cause or (ip not in bindings and len(bindings) >= config.max_bindings):
            tel.bump(f"refused.dhcp-{cause or 'global-limit'}")
            tel.log_once(f"dhcp-refused:{guest.port_no}:{cause}",
                         "port %s: DHCP gave %s, refused (%s): reply withheld",
                         guest.name, ip, cause or "global-limit")
            return None
        owner = bindings.get(ip)
        if owner is not None and owner.port_no != guest.port_no:
            tel.log_once(f"dhcp-move:{ip}", "DHCP server gave %s (bound to port %s) to %s",
                         ip, owner.port_no, guest.name)
        effects: list[Effect] = []
        for old in sorted(guest.ips - {ip}):  # a new lease replaces the guest's old one
            b = bindings.get(old)
            if b is not None and b.source == "dhcp" and b.mac == mac:
                effects.append(Unbind(old, "new-lease"))
        tel.binding_log.info(now, "port %s: DHCP lease %s for %ss", guest.name, ip,
                             event.lease_seconds)
        return effects + [Bind(guest.port_no, ip, "dhcp", event.expiry(now),
                               event.lease_seconds, guest.sibling(mac))]
