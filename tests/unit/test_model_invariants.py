"""The model keeps its invariants whatever happens: random sequences of the core's events
(switch connections with ports missing or renamed, ports added and deleted, ARP, DHCP and
IGMP from guests, idle flows, leases ending, the host taking addresses, restarts from the
saved state) and after every step every binding is on a live guest port and in its `ips`,
every `ips` entry is bound to that guest, a binding's MAC is one of the guest MACs behind its
port (a port may carry several, up to its bound), the MAC index holds exactly the guests' MACs
and memberships are of live guest ports.  The check is written here, apart from the model's own
`invariant_errors`, so that a bug in both does not hide."""

from __future__ import annotations

from dhcp_frames import ack, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import Ether
from scapy.layers.igmp import IGMP
from scapy.layers.inet import IP
from wlbridge.compat import ofp, parser
from wlbridge.core import Core, CoreConfig
from wlbridge.flows import cookies
from wlbridge.flows.pipeline import BY_NAME
from wlbridge.model.state import Port
from wlbridge.proto.packets import gratuitous_arp

UP = 1
MAX_MACS = 3
GUEST_PORTS = (2, 3, 4, 5)
STATION = "02:5a:00:00:00:01"
MACS = [f"02:00:00:00:00:{n:02x}" for n in range(1, 5)]
IPS = [f"10.0.0.{n}" for n in range(20, 26)]
GROUPS = ["239.1.1.1", "239.2.2.2"]
SNOOP = BY_NAME["guest_snoop"].table_id


def config() -> CoreConfig:
    # g5 has a configured MAC that guests on other ports may also use; a port carries up to
    # three of the four MACs
    return CoreConfig(uplink="wlan0", static_macs={"g5": MACS[0]}, max_ips_per_port=3,
                      max_bindings=5, max_macs_per_port=MAX_MACS)


def port(p: int, renamed: bool = False) -> Port:
    return Port(p, f"h{p}" if renamed else f"g{p}", f"fe:00:00:00:00:{p:02x}")


def igmp_join(mac: str, src: str, group: str) -> bytes:
    return bytes(Ether(src=mac, dst="01:00:5e:00:00:16") / IP(src=src, dst=group, ttl=1)
                 / IGMP(type=0x16, gaddr=group))


guest_port = st.sampled_from(GUEST_PORTS)
events = st.one_of(
    st.tuples(st.just("connect"), st.sets(guest_port), st.sets(guest_port)),
    st.tuples(st.just("add"), guest_port, st.booleans()),
    st.tuples(st.just("delete"), guest_port),
    st.tuples(st.just("arp"), guest_port, st.sampled_from(MACS), st.sampled_from(IPS)),
    st.tuples(st.just("dhcp"), guest_port, st.sampled_from(MACS), st.sampled_from(IPS)),
    st.tuples(st.just("join"), guest_port, st.sampled_from(MACS), st.sampled_from(IPS),
              st.sampled_from(GROUPS)),
    st.tuples(st.just("idle"), st.sampled_from(IPS)),
    st.tuples(st.just("time"), st.sampled_from([1.0, 200.0, 4000.0])),
    st.tuples(st.just("host"), st.sampled_from(IPS)),
    st.tuples(st.just("restart"), st.sets(guest_port)),
    st.tuples(st.just("disconnect"),),
)


class World:
    """A core and the switch's ports as the events left them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.ports: dict[int, Port] = {}
        self.core = Core(config())
        self.connect({2, 3}, set())
        self.xid = 0

    def connect(self, present: set[int], renamed: set[int]) -> None:
        self.ports = {p: port(p, p in renamed) for p in present}
        self.core.switch_connected(0xAB, [Port(UP, "wlan0", STATION), *self.ports.values()],
                                   self.now)

    def packet_in(self, in_port: int, data: bytes, table_id: int = 0) -> None:
        """A packet-in; a frame the core sends back through the tables comes back to it
        once (as the switch's flows would send a frame that still teaches something)."""
        msgs = self.core.packet_in(in_port, data, self.now, table_id)
        for msg in msgs:
            if (isinstance(msg, parser.OFPPacketOut) and msg.actions
                    and msg.actions[0].port == ofp.OFPP_TABLE and table_id == 0):
                self.core.packet_in(msg.in_port, msg.data, self.now)

    def step(self, event: tuple) -> None:
        core, kind = self.core, event[0]
        if kind == "connect":
            self.connect(event[1], event[2])
        elif kind == "add":
            self.ports[event[1]] = port(event[1], event[2])
            core.port_added(self.ports[event[1]], self.now)
        elif kind == "delete":
            self.ports.pop(event[1], None)
            core.port_deleted(event[1], self.now)
        elif kind == "arp":
            self.packet_in(event[1], gratuitous_arp(event[2], event[3]))
        elif kind == "dhcp":
            self.xid += 1
            self.packet_in(event[1], request(event[2], self.xid, event[3]))
            self.packet_in(UP, ack(event[2], self.xid, event[3], lease=600))
        elif kind == "join":  # a guest (its address learned first) joins a group
            self.packet_in(event[1], gratuitous_arp(event[2], event[3]))
            self.packet_in(event[1], igmp_join(event[2], event[3], event[4]), SNOOP)
        elif kind == "idle":
            cookie = cookies.make(cookies.Purpose.GUEST_IP, core.generation, 0)
            core.flow_removed(cookie, {"ipv4_src": event[1]}, self.now)
        elif kind == "time":
            self.now += event[1]
            core.tick(self.now)
        elif kind == "host":
            core.host_addresses(["10.0.0.2/24", event[1]], self.now)
        elif kind == "restart":
            saved = core.export_state()
            self.core = Core(config())
            self.core.restore_state(saved)
            self.connect(event[1], set())
        elif kind == "disconnect":
            core.switch_disconnected(self.now)


def broken_invariants(core: Core) -> list[str]:
    model, errors = core.model, []
    for ip, b in model.bindings.items():
        guest = model.guests.get(b.port_no)
        if guest is None:
            errors.append(f"{ip} is bound to port {b.port_no}, which is no guest")
        elif ip not in guest.ips:
            errors.append(f"{ip} is bound to {guest.name} but not in its ips")
        elif b.mac not in guest.macs:
            errors.append(f"{ip} is bound to {b.mac}, not behind {guest.name}")
    for port_no, guest in model.guests.items():
        for ip in guest.ips:
            b = model.bindings.get(ip)
            if b is None or b.port_no != port_no:
                errors.append(f"{guest.name} lists {ip}, which is not bound to it")
        if guest.mac != next(iter(guest.macs), None):
            errors.append(f"{guest.name}'s first MAC {guest.mac} is not first of {guest.macs}")
        if len(guest.macs) > MAX_MACS or (guest.mac_source == "configured"
                                          and len(guest.macs) != 1):
            errors.append(f"{guest.name} carries {list(guest.macs)}, beyond its bound")
    macs = {m for g in model.guests.values() for m in g.macs}
    if set(model.by_mac) != macs:
        errors.append(f"MAC index {sorted(model.by_mac)} but guest MACs {sorted(macs)}")
    for mac, guest in model.by_mac.items():
        if mac not in guest.macs or model.guests.get(guest.port_no) is not guest:
            errors.append(f"MAC index {mac} -> {guest.name}, not a live guest of that MAC")
        if model.guest_by_mac(mac) is not guest:
            errors.append(f"guest_by_mac({mac}) does not find {guest.name}")
    for group, members in model.groups.items():
        if not set(members) <= set(model.guests):
            errors.append(f"{group} has members {sorted(members)} that are no guests")
    for ip in model.host_ips & set(model.bindings):
        errors.append(f"the host's {ip} is bound to a guest")
    if core.counters["errors.internal"]:
        errors.append("the core raised (see the log)")
    return errors


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(events, max_size=25))
def test_random_event_sequences_keep_the_models_invariants(steps):
    world = World()
    assert broken_invariants(world.core) == []
    for n, event in enumerate(steps):
        world.step(event)
        broken = broken_invariants(world.core) + world.core.model.invariant_errors()
        assert broken == [], f"after step {n} {event}: {broken}"


def test_the_random_events_do_bind_move_park_and_adopt():
    """The sequences above reach the interesting cases: this one binds, moves an address
    between guests, parks a guest missing at a reconnect and adopts it when it returns."""
    world = World()
    for event in [("arp", 2, MACS[1], IPS[0]), ("arp", 3, MACS[2], IPS[1]),
                  ("join", 2, MACS[1], IPS[0], GROUPS[0]), ("dhcp", 3, MACS[2], IPS[0])]:
        world.step(event)
    core = world.core
    assert {ip: b.port_no for ip, b in core.bindings.items()} == {IPS[0]: 3, IPS[1]: 3}
    assert core.counters["bindings.removed.moved"] == 1
    world.step(("arp", 2, MACS[1], IPS[2]))
    world.step(("connect", {3}, set()))  # g2 missing: parked
    assert 2 not in core.guests and core.counters["bindings.parked"] == 1
    assert core.model.groups == {}
    world.step(("add", 2, False))  # back: adopted with its MAC, address and group
    assert core.guests[2].mac == MACS[1] and core.bindings[IPS[2]].port_no == 2
    assert core.counters["bindings.restored"] == 1 and GROUPS[0] in core.model.groups
    assert broken_invariants(core) == []


def test_guests_behind_one_port_keep_their_own_addresses_through_park_and_adopt():
    """Two MACs behind g2: each binds its own address, neither takes the other's (ARP or
    DHCP from the sibling is refused like one from another port), a third is learned up to
    the bound and the fourth refused; parked and adopted, each address is its MAC's again."""
    world = World()
    for event in [("arp", 2, MACS[1], IPS[0]), ("arp", 2, MACS[2], IPS[1]),
                  ("arp", 2, MACS[2], IPS[0])]:
        world.step(event)
    core = world.core
    assert list(core.guests[2].macs) == [MACS[1], MACS[2]]
    assert {ip: b.mac for ip, b in core.bindings.items()} == {IPS[0]: MACS[1], IPS[1]: MACS[2]}
    assert core.counters["refused.ip-in-use"] == 1
    world.step(("arp", 2, MACS[3], IPS[2]))  # the third MAC: at the bound (3)
    world.step(("arp", 2, MACS[0], IPS[3]))  # the fourth: refused
    assert len(core.guests[2].macs) == MAX_MACS and core.counters["refused.mac-limit"] == 1
    assert IPS[3] not in core.bindings
    world.step(("connect", {3}, set()))  # g2 missing: parked
    world.step(("add", 2, False))  # back: all three MACs and their addresses
    assert list(core.guests[2].macs) == [MACS[1], MACS[2], MACS[3]]
    assert {ip: b.mac for ip, b in core.bindings.items()} == {
        IPS[0]: MACS[1], IPS[1]: MACS[2], IPS[2]: MACS[3]}
    world.step(("restart", {2, 3}))  # through the state file too
    assert {ip: (b.port_no, b.mac) for ip, b in world.core.bindings.items()} == {
        IPS[0]: (2, MACS[1]), IPS[1]: (2, MACS[2]), IPS[2]: (2, MACS[3])}
    assert broken_invariants(world.core) == []


def test_a_configured_mac_another_guest_had_is_found_again_when_its_port_goes():
    """g2 learned a MAC before g5 came with it configured: the index points at g5 while it
    exists and at g2 again once g5 is gone (DHCP replies to that MAC reach g2)."""
    world = World()
    world.step(("arp", 2, MACS[0], IPS[0]))
    world.step(("add", 5, False))
    assert world.core.guest_by_mac(MACS[0]).port_no == 5
    world.step(("delete", 5))
    assert world.core.guest_by_mac(MACS[0]).port_no == 2
    assert broken_invariants(world.core) == []


MODEL_PARTS = {"guests", "bindings", "by_mac", "ips", "macs", "host_ips", "host_broadcasts",
               "parked", "uplink", "station_mac"}
MUTATORS = {"add", "discard", "remove", "pop", "popitem", "clear", "update", "setdefault",
            "append", "extend", "insert", "load", "keep", "take", "expire"}


def model_writes(tree) -> list[int]:
    """Lines that write a part of the model (`x.bindings[...] = `, `x.guests.pop(...)`,
    `del x.by_mac[...]`, `g.ips.add(...)`, `x.model.groups...`, `x.uplink = ...`)."""
    import ast

    def part(node) -> bool:
        while isinstance(node, ast.Subscript):
            node = node.value
        if not isinstance(node, ast.Attribute):
            return False
        owner = node.value
        return node.attr in MODEL_PARTS or (
            node.attr == "groups" and isinstance(owner, ast.Attribute) and owner.attr == "model")

    lines = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in MUTATORS):
            targets = [node.func.value]
        lines += [node.lineno for t in targets if part(t)]
    return lines


def test_only_the_model_writes_the_models_parts():
    """Policies, the core and the status view read the model; its methods alone write it
    (so that they can keep its invariants)."""
    import ast
    import pathlib

    import wlbridge
    root = pathlib.Path(wlbridge.__file__).parent
    files = [root / "core.py", root / "status_view.py", *sorted((root / "policy").glob("*.py"))]
    writes = {str(f.relative_to(root)): model_writes(ast.parse(f.read_text())) for f in files}
    assert {f: lines for f, lines in writes.items() if lines} == {}
    # the check sees a write when there is one
    assert sorted(model_writes(ast.parse("model.bindings[ip] = b\nguest.ips.add(ip)\n"
                                  "del self.model.by_mac[m]\nself.model.groups.pop(g)\n"
                                  "self.model.parked.load(a, b, c)\ncore.model.uplink = 3\n"
                                  "x = model.bindings.get(ip)\n"))) == [1, 2, 3, 4, 5, 6]
