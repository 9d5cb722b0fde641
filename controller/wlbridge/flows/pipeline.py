"""The OpenFlow pipeline, declared once as data, and the flow builder that enforces it.

Every flow the controller installs is described by a `FlowSpec`.  `build_add`
turns it into an OpenFlow 1.3 flow-mod (with ``datapath=None``) after checking it
against the table's declaration: allowed match fields, allowed set-fields, legal
``goto`` targets, bit ranges of field-to-field moves, and OpenFlow match prerequisites
(``arp_tpa`` needs ``eth_type=0x0806`` and so on, for set-fields and moves too).  A spec that breaks the declaration raises
`PipelineError` when it is built, i.e. in the unit tests, not on the switch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from wlbridge.compat import ofp
from wlbridge.flows import cookies
from wlbridge.flows.cookies import Purpose
from wlbridge.openflow import fastof, ofmsg

ETH_ARP = 0x0806
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_EAPOL = 0x888E
IPPROTO_UDP = 17
IPPROTO_TCP = 6
IPPROTO_ICMP = 1
IPPROTO_ICMPV6 = 58
IPPROTO_IGMP = 2
ICMPV6_ROUTER_SOLICIT = 133
ICMPV6_ROUTER_ADVERT = 134
ICMPV6_NEIGHBOR_SOLICIT = 135
ICMPV6_NEIGHBOR_ADVERT = 136
ICMPV6_REDIRECT = 137

PORT_LOCAL = ofp.OFPP_LOCAL
PORT_ALL = ofp.OFPP_ALL
PORT_CONTROLLER = ofp.OFPP_CONTROLLER
PORT_TABLE = ofp.OFPP_TABLE
PORT_IN_PORT = ofp.OFPP_IN_PORT

BROADCAST = "ff:ff:ff:ff:ff:ff"
GROUP_BIT = ("01:00:00:00:00:00", "01:00:00:00:00:00")


class PipelineError(ValueError):
    """A flow that does not fit the declared pipeline."""


@dataclass(frozen=True)
class Table:
    """One table of the pipeline."""

    name: str
    table_id: int
    matches: frozenset[str]
    set_fields: frozenset[str]
    next_tables: tuple[str, ...]
    miss: str  # "drop", "local" (output to LOCAL) or "goto:<table>"
    doc: str = ""


TABLES: tuple[Table, ...] = (
    Table(
        "classify", 0,
        frozenset({"in_port", "eth_src"}),
        frozenset(),
        ("from_uplink", "guest_snoop", "switch_local"),
        "drop",
        "Where a frame came from: the uplink, the host (LOCAL) or a guest port with its own MAC.",
    ),
    Table(
        "guest_snoop", 15,
        frozenset({"in_port", "eth_type", "ip_proto", "icmpv6_type"}),
        frozenset(),
        ("from_guest",),
        "goto:from_guest",
        "A copy of guests' IGMP and MLD messages to the controller (group snooping); every "
        "frame goes on to port security.",
    ),
    Table(
        "from_uplink", 10,
        frozenset({"eth_src", "eth_dst", "eth_type", "arp_op", "arp_spa", "arp_tpa",
                   "ipv4_dst", "ip_proto", "udp_src", "udp_dst",
                   "ipv6_dst", "icmpv6_type", "ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll"}),
        frozenset({"eth_dst", "arp_tha"}),
        (),
        "local",
        "Frames from the Wi-Fi LAN: steered to a guest by destination IP, else to the host.",
    ),
    Table(
        "from_guest", 20,
        frozenset({"in_port", "eth_src", "eth_type", "arp_op", "arp_spa", "arp_sha", "ipv4_src",
                   "ip_proto", "udp_src", "udp_dst", "icmpv6_type",
                   "ipv6_src", "ipv6_nd_target"}),
        frozenset({"ipv6_nd_sll", "ipv6_nd_tll"}),
        ("switch_local",),
        "drop",
        "Port security and learning triggers for frames from guests.",
    ),
    Table(
        "switch_local", 40,
        frozenset({"eth_dst"}),
        frozenset(),
        ("to_uplink",),
        "goto:to_uplink",
        "Local delivery by destination MAC (guests, host); group frames also go on to the uplink.",
    ),
    Table(
        "to_uplink", 50,
        frozenset({"eth_type", "ip_proto", "icmpv6_type"}),
        frozenset({"eth_src", "arp_sha", "ipv6_nd_sll", "ipv6_nd_tll"}),
        (),
        "drop",
        "Rewrite to the station MAC (Ethernet source, ARP sender, ND link-layer options) and "
        "send out the uplink.",
    ),
)

BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
BY_ID: dict[int, Table] = {t.table_id: t for t in TABLES}

# OpenFlow 1.3 match prerequisites: field -> (field it needs, allowed values)
PREREQUISITES: dict[str, tuple[str, tuple[int, ...]]] = {
    "arp_op": ("eth_type", (ETH_ARP,)),
    "arp_spa": ("eth_type", (ETH_ARP,)),
    "arp_tpa": ("eth_type", (ETH_ARP,)),
    "arp_sha": ("eth_type", (ETH_ARP,)),
    "arp_tha": ("eth_type", (ETH_ARP,)),
    "ipv4_src": ("eth_type", (ETH_IPV4,)),
    "ipv4_dst": ("eth_type", (ETH_IPV4,)),
    "ipv6_src": ("eth_type", (ETH_IPV6,)),
    "ipv6_dst": ("eth_type", (ETH_IPV6,)),
    "ip_proto": ("eth_type", (ETH_IPV4, ETH_IPV6)),
    "udp_src": ("ip_proto", (IPPROTO_UDP,)),
    "udp_dst": ("ip_proto", (IPPROTO_UDP,)),
    "tcp_src": ("ip_proto", (IPPROTO_TCP,)),
    "tcp_dst": ("ip_proto", (IPPROTO_TCP,)),
    "icmpv6_type": ("ip_proto", (IPPROTO_ICMPV6,)),
    "ipv6_nd_target": ("icmpv6_type", (ICMPV6_NEIGHBOR_SOLICIT, ICMPV6_NEIGHBOR_ADVERT)),
    "ipv6_nd_sll": ("icmpv6_type", (ICMPV6_NEIGHBOR_SOLICIT,)),
    "ipv6_nd_tll": ("icmpv6_type", (ICMPV6_NEIGHBOR_ADVERT,)),
}


@dataclass(frozen=True)
class Output:
    port: int


@dataclass(frozen=True)
class SetField:
    field: str
    value: Any


@dataclass(frozen=True)
class Move:
    """Copy `n_bits` of header field `src` (from bit `src_ofs`, bit 0 the least significant)
    into field `dst` (from bit `dst_ofs`): OVS's ``move:src[..]->dst[..]`` (Nicira
    ``reg_move``), computed per packet in the fast path.  `dst` must be a field the table may
    set; both fields' prerequisites must be in the match."""

    src: str
    dst: str
    n_bits: int
    src_ofs: int = 0
    dst_ofs: int = 0


# Widths in bits of the fields a `Move` may read or write.
FIELD_BITS: dict[str, int] = {
    "eth_src": 48, "eth_dst": 48, "ipv4_src": 32, "ipv4_dst": 32,
    "ipv6_src": 128, "ipv6_dst": 128,
}


@dataclass(frozen=True)
class ToController:
    """Send to the controller (whole packet, no buffering)."""

    max_len: int = ofp.OFPCML_NO_BUFFER


Action = Union[Output, SetField, Move, ToController]
MatchValue = Union[int, str, tuple]


def _lower(value: MatchValue) -> MatchValue:
    if type(value) is int:
        return value
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, tuple):
        return tuple(_lower(v) for v in value)
    return value


def _freeze(match: Mapping[str, MatchValue]) -> tuple[tuple[str, MatchValue], ...]:
    """Sorted (field, value) pairs; text values lower-case (os-ken's canonical form)."""
    return tuple(sorted((k, _lower(v)) for k, v in match.items()))


@dataclass(frozen=True)
class FlowSpec:
    """A flow as the controller wants it, independent of generation."""

    table: str
    priority: int
    match: tuple[tuple[str, MatchValue], ...]
    actions: tuple[Action, ...] = ()
    goto: str | None = None
    purpose: Purpose = Purpose.PIPELINE
    subject: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    send_flow_removed: bool = False
    meter: int | None = None

    @property
    def key(self) -> tuple[int, int, tuple[tuple[str, MatchValue], ...]]:
        """Identity of the flow on the switch: table, priority and match."""
        return (BY_NAME[self.table].table_id, self.priority, self.match)

    @property
    def match_dict(self) -> dict[str, MatchValue]:
        return dict(self.match)


def flow(table: str, priority: int, match: Mapping[str, MatchValue] | None = None,
         actions: Iterable[Action] = (), goto: str | None = None,
         purpose: Purpose = Purpose.PIPELINE, subject: int = 0, **kw: Any) -> FlowSpec:
    """Declare a flow; it is validated against the pipeline straight away."""
    match = match or {}
    names = tuple(sorted(match))
    actions = tuple(actions)
    # ``FlowSpec(...)`` without the frozen dataclass's per-field ``__setattr__``
    spec = object.__new__(FlowSpec)
    values = spec.__dict__
    values.update(_SPEC_DEFAULTS)
    values["table"], values["priority"], values["goto"] = table, priority, goto
    values["match"] = tuple([(k, _lower(match[k])) for k in names])
    values["actions"], values["purpose"], values["subject"] = actions, purpose, subject
    if kw:
        for name in kw:
            if name not in _SPEC_DEFAULTS:
                raise TypeError(f"FlowSpec has no field {name!r}")
        values.update(kw)
    # Validity depends on the flow's shape only, not on its addresses: check each shape once.
    shape = (table, priority, goto, names, match.get("eth_type"), match.get("ip_proto"),
             match.get("icmpv6_type"),
             tuple([a.field if isinstance(a, SetField) else a for a in actions
                    if not isinstance(a, Output)]))
    order = _SHAPES.get(shape)
    if order is None:
        validate(spec)
        order = fastof.oxm_order(names)
        if len(_SHAPES) < 4096:
            _SHAPES[shape] = order
    # `build_add` need not validate again, and knows the OXM order of the match fields
    values["_valid"] = True
    values["_oxm_order"] = order
    return spec


_SHAPES: dict[tuple, Any] = {}
_SPEC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FlowSpec)
                  if f.default is not dataclasses.MISSING}


def validate(spec: FlowSpec) -> None:
    """Raise PipelineError unless the flow fits its table's declaration."""
    table = BY_NAME.get(spec.table)
    if table is None:
        raise PipelineError(f"unknown table {spec.table!r}")
    match = spec.match_dict
    for name in match:
        if name not in table.matches:
            raise PipelineError(f"table {table.name}: match on {name} not allowed")
    for name in match:
        _check_prerequisite(name, match, table.name)
    for action in spec.actions:
        if isinstance(action, SetField):
            if action.field not in table.set_fields:
                raise PipelineError(f"table {table.name}: set_field {action.field} not allowed")
            _check_prerequisite(action.field, match, table.name, what="set_field")
        elif isinstance(action, Move):
            _check_move(action, match, table)
    if spec.goto is not None and spec.goto not in table.next_tables:
        raise PipelineError(f"table {table.name}: goto {spec.goto} not allowed")
    if not 0 <= spec.priority <= 0xFFFF:
        raise PipelineError(f"priority {spec.priority} out of range")


def _check_move(move: Move, match: Mapping[str, MatchValue], table: Table) -> None:
    if move.dst not in table.set_fields:
        raise PipelineError(f"table {table.name}: move into {move.dst} not allowed")
    for name, ofs in ((move.src, move.src_ofs), (move.dst, move.dst_ofs)):
        width = FIELD_BITS.get(name)
        if width is None:
            raise PipelineError(f"table {table.name}: move of {name} not supported")
        if (type(move.n_bits) is not int or type(ofs) is not int or move.n_bits < 1
                or ofs < 0 or ofs + move.n_bits > width):
            raise PipelineError(f"table {table.name}: move of bits {ofs}..{ofs + move.n_bits - 1}"
                                f" outside {name}'s {width}")
        _check_prerequisite(name, match, table.name, what="move")


def _check_prerequisite(name: str, match: Mapping[str, MatchValue], table: str,
                        what: str = "match") -> None:
    need = PREREQUISITES.get(name)
    while need is not None:
        field_name, allowed = need
        if match.get(field_name) not in allowed:
            raise PipelineError(
                f"table {table}: {what} {name} needs {field_name} in {allowed}")
        need = PREREQUISITES.get(field_name)


_INSTRUCTIONS: dict[tuple, list] = {}


def _instructions(spec: FlowSpec) -> list:
    """The spec's instructions; shared between flow-mods of equal actions (they are only
    read and serialised), the cache bounded."""
    key = (spec.actions, spec.goto, spec.meter)
    insts = _INSTRUCTIONS.get(key)
    if insts is None:
        if len(_INSTRUCTIONS) >= 8192:
            _INSTRUCTIONS.clear()
        insts = _INSTRUCTIONS[key] = _make_instructions(spec)
    return insts


def _make_instructions(spec: FlowSpec) -> list:
    actions = []
    for action in spec.actions:
        if isinstance(action, Output):
            actions.append(ofmsg.output(action.port))
        elif isinstance(action, ToController):
            actions.append(ofmsg.output(PORT_CONTROLLER, action.max_len))
        elif isinstance(action, SetField):
            actions.append(fastof.set_field(action.field, action.value))
        elif isinstance(action, Move):
            actions.append(ofmsg.reg_move(action.src, action.dst, action.n_bits,
                                          action.src_ofs, action.dst_ofs))
        else:  # pragma: no cover - guarded by the type
            raise PipelineError(f"unknown action {action!r}")
    goto = BY_NAME[spec.goto].table_id if spec.goto is not None else None
    return fastof.instructions(spec.meter, actions, goto)


def build_add(spec: FlowSpec, generation: int):
    """OFPFC_ADD flow-mod for a spec (replaces a flow with the same table/priority/match)."""
    valid = getattr(spec, "_valid", False)
    if not valid:
        validate(spec)
    return fastof.flow_mod(
        cookies.make(spec.purpose, generation, spec.subject),
        BY_NAME[spec.table].table_id,
        ofp.OFPFC_ADD,
        spec.idle_timeout,
        spec.hard_timeout,
        spec.priority,
        ofp.OFPFF_SEND_FLOW_REM if spec.send_flow_removed else 0,
        fastof.match(spec.match, canonical=valid, order=getattr(spec, "_oxm_order", None)),
        _instructions(spec),
    )


def build_delete_strict(spec: FlowSpec):
    """OFPFC_DELETE_STRICT for exactly this table/priority/match (any cookie of ours)."""
    cookie, mask = cookies.ours_match()
    return ofmsg.flow_delete(cookie, mask, BY_NAME[spec.table].table_id, spec.priority,
                             fastof.match(spec.match))


def build_delete_cookie(cookie: int, mask: int):
    """OFPFC_DELETE of every flow, in every table, whose cookie matches under mask."""
    return ofmsg.flow_delete(cookie, mask)


def miss_flows() -> list[FlowSpec]:
    """Priority-0 flows implementing each table's declared miss action."""
    specs = []
    for table in TABLES:
        if table.miss == "drop":
            specs.append(flow(table.name, 0))
        elif table.miss == "local":
            specs.append(flow(table.name, 0, actions=[Output(PORT_LOCAL)]))
        elif table.miss.startswith("goto:"):
            specs.append(flow(table.name, 0, goto=table.miss[5:]))
        else:  # pragma: no cover - declaration error
            raise PipelineError(f"table {table.name}: unknown miss {table.miss!r}")
    return specs
