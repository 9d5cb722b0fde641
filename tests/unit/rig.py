"""A controller core wired to the fake switch: send a packet in, see where it ends up.

`Rig.send(port, pkt)` runs the packet through the simulated tables; packet-ins go
to the core, whose answers (flow-mods, packet-outs) go back to the switch, until
everything settles.  The result lists every delivery, including those made by
packet-outs, so tests assert on packet fate end to end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ofsim import Switch, data_of, from_bytes
from wlbridge.compat import ofp, parser
from wlbridge.core import GROUP_STATS_MATCH, Core, CoreConfig
from wlbridge.model.state import Port

UP = 1
LOCAL = ofp.OFPP_LOCAL
STATION = "02:5a:00:00:00:01"
ROUTER = "02:10:00:00:00:01"
ROUTER_IP = "10.0.0.1"
HOST_IP = "10.0.0.2"
BCAST = "ff:ff:ff:ff:ff:ff"


def mac(port: int) -> str:
    return f"02:00:00:00:00:{port:02x}"


def ip(port: int) -> str:
    return f"10.0.0.{10 + port}"


@dataclass
class Delivery:
    """Where one packet (and whatever the controller did about it) ended up."""

    outputs: list[tuple[int, dict]] = field(default_factory=list)
    packet_ins: int = 0
    dead_ends: list[str] = field(default_factory=list)  # outputs to ports the switch lacks

    def ports(self) -> set[int]:
        return {p for p, _ in self.outputs}

    def out(self, port: int) -> dict | None:
        got = [h for p, h in self.outputs if p == port]
        assert len(got) <= 1, f"port {port} got the packet {len(got)} times: {got}"
        return got[0] if got else None

    def __str__(self) -> str:
        return f"outputs={[(p, h.get('eth_src'), h.get('eth_dst')) for p, h in self.outputs]}"


class Rig:
    def __init__(self, guests: tuple[int, ...] = (2, 3), config: CoreConfig | None = None,
                 now: float = 1000.0, connect: bool = True) -> None:
        self.config = config or CoreConfig(uplink="wlan0")
        self.core = Core(self.config)
        self.now = now
        self.station = STATION
        self.guest_ports = list(guests)
        self.sw = Switch({UP: "wlan0", **{p: f"g{p}" for p in guests}})
        self.packet_ins = 0
        if connect:
            self.connect()
            self.apply(self.core.host_addresses([HOST_IP], self.now))

    def port_list(self) -> list[Port]:
        ports = [Port(UP, "wlan0", self.station), Port(LOCAL, "br-wl", self.station)]
        return ports + [Port(p, f"g{p}", f"fe:00:00:00:00:{p:02x}") for p in self.guest_ports]

    def connect(self) -> Delivery:
        return self.apply(self.core.switch_connected(0xAB, self.port_list(), self.now))

    def apply(self, msgs: list[Any], delivery: Delivery | None = None) -> Delivery:
        """Apply controller messages to the switch, following packet-outs and stats."""
        delivery = delivery or Delivery()
        for msg in msgs:
            if isinstance(msg, parser.OFPPacketOut):
                result = self.sw.packet_out(msg, from_bytes(msg.data), now=self.now)
                self._collect(result, delivery)
            elif isinstance(msg, parser.OFPFlowStatsRequest):
                res = self.sw.apply(msg, now=self.now)
                flows = [f for reply in res.replies for f in reply]
                if (msg.cookie, msg.cookie_mask) == GROUP_STATS_MATCH:  # as the shell routes it
                    self.apply(self.core.group_stats(
                        [(f.table_id, f.packets, dict(f.match)) for f in flows], self.now),
                        delivery)
                    continue
                self.apply(self.core.flow_stats([f.cookie for f in flows], self.now), delivery)
            else:
                self.sw.apply(msg, now=self.now)
        return delivery

    def _collect(self, result: Any, delivery: Delivery) -> None:
        delivery.outputs += result.outputs
        delivery.dead_ends += [n for n in result.notes if "no such port" in n]
        for pi in result.to_controller:
            self.packet_ins += 1
            delivery.packet_ins += 1
            msgs = self.core.packet_in(pi.in_port, pi.data, self.now, pi.table_id, pi.cookie)
            # the core turns its own exceptions into a counter: a test never passes on one
            assert self.core.counters["errors.internal"] == 0, "the core raised (see the log)"
            self.apply(msgs, delivery)

    def send(self, port: int, pkt: dict) -> Delivery:
        """`pkt` enters the switch on `port`."""
        pkt = dict(pkt)
        pkt.setdefault("data", data_of(pkt))
        delivery = Delivery()
        self._collect(self.sw.process(port, pkt, now=self.now), delivery)
        return delivery

    def advance(self, seconds: float) -> Delivery:
        """Let time pass: switch timeouts (with flow-removed to the core) and the core's tick."""
        self.now += seconds
        delivery = Delivery()
        for removed in self.sw.expire(self.now):
            match = dict(removed.match.items())
            self.apply(self.core.flow_removed(removed.cookie, match, self.now, removed.reason),
                       delivery)
        return self.apply(self.core.tick(self.now), delivery)

    def add_port(self, port: int) -> Delivery:
        self.guest_ports.append(port)
        self.sw.add_port(port, f"g{port}")
        return self.apply(self.core.port_added(Port(port, f"g{port}", "fe:00:00:00:00:01"),
                                               self.now))

    def remove_port(self, port: int) -> Delivery:
        self.guest_ports.remove(port)
        self.sw.remove_port(port)
        return self.apply(self.core.port_deleted(port, self.now))
