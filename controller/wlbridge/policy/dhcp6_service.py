"""DHCPv6 through a one-MAC uplink: the core's handling of DHCPv6 packet-ins.

Guests are DHCPv6 clients.  Their messages (UDP 546 -> 547, normally to ff02::1:2 from their
link-local address) come to the controller, which records the transaction and sends them on
with the station MAC as Ethernet source; nothing in the payload needs rewriting (see `dhcp6`).
The server answers (UDP 547 -> 546) to the client's link-local address, at the MAC Neighbor
Discovery gave it: the station MAC.  Those replies come to the controller too, which finds
the guest and delivers the reply with the guest's MAC as destination, then binds the
addresses a Reply leases (IA_NA, and IA_TA) for their valid lifetime (source ``dhcp6``: no idle
expiry; the lease ends at the valid lifetime, as DHCPv4 leases do).

How a reply is matched to its guest: by **transaction**, not by its destination address.
Each client message records ``xid -> (guest port, guest MAC, client DUID, IPv6 source)``; a
reply is the guest's when its ``xid`` is a live transaction of that guest, its CLIENTID equals
the recorded DUID and its IPv6 destination is the address the guest sent from.  Matching on
the destination alone would need the guest's link-local address bound to it first (Neighbor
Discovery learning), and a link-local address says nothing about which transaction a reply
answers; the transaction table is what the server itself keys on (RFC 8415: xid + DUID).
A reply that matches no guest is the host's own (its DHCPv6 client on the bridge) and goes to
LOCAL unchanged.  To keep a guest from taking the host's replies, a guest may not send from
the station MAC's EUI-64 link-local address (nor any host address the model knows) nor with a
DUID-LL/LLT that holds the station MAC, and an ``xid`` live for another guest or DUID is
refused ("xid-collision").

The table is bounded (``max_entries`` overall, ``max_per_port`` per guest, the oldest going
first) and an entry lives ``ttl`` seconds after the guest's last message of that
transaction (retransmissions keep the ``xid``, RFC 8415 15).  Release and Decline unbind what
they give back; a Reply with valid lifetime 0 for a bound address unbinds it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

from wlbridge.flows.pipeline import PORT_LOCAL
from wlbridge.model.state import GuestPort, Model
from wlbridge.policy.effects import Bind, Deliver, Effect, Unbind
from wlbridge.policy.guard import check_claim
from wlbridge.policy.policing import Policing
from wlbridge.proto import dhcp6
from wlbridge.proto.packets import Frame
from wlbridge.telemetry import Telemetry


class Transaction(NamedTuple):
    port: int
    mac: str
    duid: bytes | None
    source: str  # the guest's IPv6 source address
    expiry: float


class Transactions:
    """xid -> the guest's transaction (pure, time injected, bounded)."""

    def __init__(self, max_entries: int = 1024, ttl: float = 120.0,
                 max_per_port: int = 32) -> None:
        self.max_entries, self.ttl, self.max_per_port = max_entries, ttl, max_per_port
        self._entries: OrderedDict[int, Transaction] = OrderedDict()  # oldest refresh first
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, xid: int, now: float) -> Transaction | None:
        t = self._entries.get(xid)
        return t if t is not None and now < t.expiry else None

    def record(self, xid: int, port: int, mac: str, duid: bytes | None, source: str,
               now: float) -> bool:
        """Remember (or refresh) a transaction; False if `xid` is live for another guest or
        another client DUID (the reply could not be told apart)."""
        old = self.lookup(xid, now)
        if old is not None and (old.port, old.mac, old.duid) != (port, mac, duid):
            return False
        self._entries.pop(xid, None)
        self.expire(now)
        mine = [x for x, t in self._entries.items() if t.port == port]
        if len(mine) >= self.max_per_port:
            del self._entries[mine[0]]
            self.evicted += 1
        if len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1
        self._entries[xid] = Transaction(port, mac, duid, source, now + self.ttl)
        return True

    def expire(self, now: float) -> int:
        dead = [x for x, t in self._entries.items() if now >= t.expiry]
        for x in dead:
            del self._entries[x]
        return len(dead)

    def next_expiry(self) -> float | None:
        return min((t.expiry for t in self._entries.values()), default=None)

    def forget_port(self, port: int) -> None:
        for x in [x for x, t in self._entries.items() if t.port == port]:
            del self._entries[x]


class Dhcp6Service:
    """DHCPv6 packet-in decisions over one model (returns `effects`).  `config` supplies the
    address limits (``max_ips_per_port``, ``max_bindings``); `policing`, the station's IPv6
    budget (None: none)."""

    def __init__(self, model: Model, config: Any, telemetry: Telemetry,
                 policing: Policing | None = None) -> None:
        self.model = model
        self.config = config
        self.tel = telemetry
        self.policing = policing
        self.transactions = Transactions()

    def tick(self, now: float) -> None:
        self.transactions.expire(now)

    def next_due(self) -> float | None:
        return self.transactions.next_expiry()

    def forget_port(self, port_no: int) -> None:
        self.transactions.forget_port(port_no)

    def _bad(self, exc: dhcp6.Dhcp6Error, where: str) -> list[Effect]:
        self.tel.bump(f"dhcp6.malformed.{exc.reason}")
        self.tel.log_once(f"dhcp6-bad:{where}:{exc.reason}",
                          "dropping bad DHCPv6 frame from %s: %s", where, exc)
        return []

    def _refuse(self, guest: GuestPort, cause: str, detail: str) -> list[Effect]:
        self.tel.bump(f"refused.{cause}")
        self.tel.log_once(f"refused:{guest.port_no}:{cause}", "port %s: refused (%s) %s",
                          guest.name, cause, detail)
        return []

    # ------------------------------------------------------------- from guests
    def from_guest(self, guest: GuestPort, frame: Frame, now: float) -> list[Effect]:
        """A guest's client message: record its transaction, send it on (station MAC as
        source towards the LAN), unbind what a Release/Decline gives back."""
        model, tel = self.model, self.tel
        uplink, station_mac = model.uplink, model.station_mac
        mac = frame.eth_src  # the guest behind the port
        if uplink is None or station_mac is None:
            tel.bump("dhcp6.no-uplink")
            return []
        try:
            msg = dhcp6.parse(frame.data)
        except dhcp6.Dhcp6Error as exc:
            return self._bad(exc, guest.name)
        if not msg.is_client_message:
            tel.bump("dhcp6.malformed.wrong-direction")
            return []
        if msg.ip_src == dhcp6.link_local_of(station_mac) or msg.ip_src in model.host_ips:
            return self._refuse(guest, "dhcp6-host-address", msg.ip_src)
        if dhcp6.duid_mac(msg.client_id) == station_mac:
            return self._refuse(guest, "dhcp6-station-duid", msg.client_id.hex())
        assert msg.xid is not None  # client messages are never relay messages
        if not self.transactions.record(msg.xid, guest.port_no, mac, msg.client_id,
                                        msg.ip_src, now):
            return self._refuse(guest, "dhcp6-xid-collision", f"{msg.xid:#08x}")
        tel.bump(f"dhcp6.{msg.msg_name}.from_guest")
        port = self._egress_port(frame.eth_dst, uplink, station_mac)
        out = dhcp6.set_eth_src(frame.data, station_mac) if port == uplink else frame.data
        effects: list[Effect] = [Deliver(guest.port_no, port, out)]
        for address in dhcp6.given_back(msg):
            b = model.bindings.get(address)
            if b is not None and (b.port_no, b.mac) == (guest.port_no, mac) \
                    and b.source == "dhcp6":
                tel.binding_log.info(now, "port %s: DHCPv6 %s %s", guest.name, msg.msg_name,
                                     address)
                effects.append(Unbind(address, msg.msg_name))
        return effects

    def _egress_port(self, eth_dst: str, uplink: int, station_mac: str) -> int:
        """Where a client message goes: the host (station MAC), another guest (its MAC), else
        the LAN (multicast to the servers, or a server's unicast address)."""
        if eth_dst == station_mac:
            return PORT_LOCAL
        other = self.model.guest_by_mac(eth_dst)
        return other.port_no if other is not None else uplink

    # ------------------------------------------------------------- from the LAN
    def from_uplink(self, frame: Frame, now: float) -> list[Effect]:
        """A server's message to a client: deliver it to the guest whose transaction it
        answers (and bind what it leases), or to the host."""
        model, tel = self.model, self.tel
        uplink = model.uplink
        assert uplink is not None  # a packet-in from the uplink
        try:
            msg = dhcp6.parse(frame.data)
        except dhcp6.Dhcp6Error as exc:
            return self._bad(exc, "uplink")
        if not msg.is_server_reply:
            tel.bump("dhcp6.malformed.wrong-direction")
            return []
        found = self._guest_of(msg, now)
        if found is None:
            tel.bump(f"dhcp6.{msg.msg_name}.to_host")
            return [Deliver(uplink, PORT_LOCAL, frame.data)]
        guest, mac = found
        effects: list[Effect] = [Deliver(uplink, guest.port_no,
                                         dhcp6.set_eth_dst(frame.data, mac))]
        changes = self._lease_changes(guest, mac, msg, now)
        if changes is None:  # the guest must not configure an address it cannot use
            tel.bump(f"dhcp6.{msg.msg_name}.withheld")
            return []
        tel.bump(f"dhcp6.{msg.msg_name}.to_guest")
        return effects + changes

    def _guest_of(self, msg: dhcp6.Dhcp6Message, now: float
                  ) -> tuple[GuestPort, str] | None:
        """The guest port and the guest MAC behind it whose transaction `msg` answers."""
        t = self.transactions.lookup(msg.xid, now) if msg.xid is not None else None
        if t is None:
            return None
        if msg.client_id != t.duid or msg.ip_dst != t.source:
            self.tel.bump("dhcp6.reply-mismatch")
            return None
        guest = self.model.guests.get(t.port)
        return (guest, t.mac) if guest is not None and t.mac in guest.macs else None

    def _lease_changes(self, guest: GuestPort, mac: str, msg: dhcp6.Dhcp6Message,
                       now: float) -> list[Effect] | None:
        """Binds (and unbinds, valid lifetime 0) for what a Reply leases to the guest `mac`
        behind port `guest`; None when a leased address is refused to it."""
        bindings, config, tel = self.model.bindings, self.config, self.tel
        leased, skipped = dhcp6.leases(msg)
        for why in skipped:
            tel.bump(f"dhcp6.unlearnable.{why}")
        effects: list[Effect] = []
        held, added = set(guest.ips), 0  # counted as they would be once all are bound
        for lease in leased:
            b = bindings.get(lease.address)
            mine = b is not None and (b.port_no, b.mac) == (guest.port_no, mac)
            if lease.valid == 0:
                if mine and b.source == "dhcp6":
                    effects.append(Unbind(lease.address, "dhcp6-expired"))
                continue
            if not mine:
                cause = check_claim(lease.address, guest, {}, self.model.host_ips,
                                    config.max_ips_per_port + 1, config.max_bindings + 1)
                if not cause and len(held) >= config.max_ips_per_port + 1:
                    cause = "port-limit"
                if not cause and b is None and len(bindings) + added >= config.max_bindings:
                    cause = "global-limit"
                held.add(lease.address)
                added += b is None
                if cause:
                    tel.bump(f"refused.dhcp6-{cause}")
                    tel.log_once(f"dhcp6-refused:{guest.port_no}:{cause}",
                                 "port %s: DHCPv6 gave %s, refused (%s): reply withheld",
                                 guest.name, lease.address, cause)
                    return None
            effects.append(Bind(guest.port_no, lease.address, "dhcp6", lease.expiry(now),
                                lease.lease, guest.sibling(mac)))
        if self.policing is not None:
            over, releases = self.policing.claim6(
                [e.ip for e in effects if isinstance(e, Bind)], guest, mac, now)
            if over is not None:
                tel.bump("refused.dhcp6-ipv6-station-limit")
                return None
            effects = releases + effects
        for e in effects:
            if isinstance(e, Bind):
                tel.binding_log.info(now, "port %s: DHCPv6 lease %s for %ss", guest.name,
                                     e.ip, e.lease)
        return effects
