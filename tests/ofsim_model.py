"""Flow-table model of the OpenFlow simulator (tests/ofsim.py): match/instruction canonicalisation,
OVS prerequisites, flows and the results of applying messages and processing packets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ofsim_packets import (
    ETH_ARP,
    ETH_IP,
    ETH_IPV6,
    Headers,
    SimError,
    data_of,
    decode_field,
    encode_field,
)
from wlbridge.compat import ofp, parser

_IP = frozenset({ETH_IP, ETH_IPV6})
PORT_NAMES = {ofp.OFPP_LOCAL: "LOCAL", ofp.OFPP_ALL: "ALL", ofp.OFPP_FLOOD: "FLOOD",
              ofp.OFPP_IN_PORT: "IN_PORT", ofp.OFPP_CONTROLLER: "CONTROLLER",
              ofp.OFPP_TABLE: "TABLE", ofp.OFPP_NORMAL: "NORMAL", ofp.OFPP_ANY: "ANY"}
# Prerequisites (as in OVS): field -> ((required field, allowed exact values), ...).
_PREREQ: dict[str, tuple[tuple[str, frozenset], ...]] = {}
for _names, _reqs in [
    ("arp_op arp_spa arp_tpa arp_sha arp_tha", (("eth_type", frozenset({ETH_ARP, 0x8035})),)),
    ("ipv4_src ipv4_dst", (("eth_type", frozenset({ETH_IP})),)),
    ("ipv6_src ipv6_dst ipv6_flabel ipv6_exthdr", (("eth_type", frozenset({ETH_IPV6})),)),
    ("ip_dscp ip_ecn ip_proto", (("eth_type", _IP),)),
    ("tcp_src tcp_dst", (("eth_type", _IP), ("ip_proto", frozenset({6})))),
    ("udp_src udp_dst", (("eth_type", _IP), ("ip_proto", frozenset({17})))),
    ("sctp_src sctp_dst", (("eth_type", _IP), ("ip_proto", frozenset({132})))),
    ("icmpv4_type icmpv4_code", (("eth_type", frozenset({ETH_IP})), ("ip_proto", frozenset({1})))),
    ("icmpv6_type icmpv6_code",
     (("eth_type", frozenset({ETH_IPV6})), ("ip_proto", frozenset({58})))),
    ("ipv6_nd_target", (("icmpv6_type", frozenset({135, 136})),)),
    ("ipv6_nd_sll", (("icmpv6_type", frozenset({135})),)),
    ("ipv6_nd_tll", (("icmpv6_type", frozenset({136})),)),
    ("mpls_label mpls_tc mpls_bos", (("eth_type", frozenset({0x8847, 0x8848})),)),
    ("pbb_isid", (("eth_type", frozenset({0x88E7})),)),
]:
    for _n in _names.split():
        _PREREQ[_n] = _reqs
for _n in ("ipv6_nd_target", "ipv6_nd_sll", "ipv6_nd_tll"):
    _PREREQ[_n] = _PREREQ["icmpv6_type"] + _PREREQ[_n]
#: Fields a set-field may not change.
READONLY_FIELDS = frozenset({"in_port", "in_phy_port", "metadata", "eth_type", "ip_proto",
                             "ipv6_exthdr", "mpls_bos"})
_INST_ORDER = {"meter": 0, "apply": 1, "clear": 2, "write": 3, "goto": 4}


class Rejected(SimError):
    """A message the switch (OVS) would refuse with an OpenFlow error."""


class AmbiguousMatch(SimError):
    """Two flows of the same (highest) priority match one packet: their order is undefined."""


def canon_match(match: Any) -> tuple[tuple[str, Any], ...]:
    """Canonical match: (field, value-or-(value, mask)) pairs in OXM order; zero masks dropped."""
    items = match.items() if match is not None else ()
    out = []
    for name, value in items:
        v, m, w = encode_field(name, value)
        if m:
            out.append((name, decode_field(name, v, m, w)))
    return tuple(sorted(out, key=lambda kv: ofp.oxm_get_field_info_by_name(kv[0])[0]))


def match_bits(canon: Iterable[tuple[str, Any]]) -> dict[str, tuple[int, int, int]]:
    """A canonical match as {field: (value, mask, width)} ints (`encode_field`)."""
    return {n: encode_field(n, val) for n, val in canon}


def check_prereqs(bits: Mapping[str, tuple[int, int, int]], fields: Iterable[str], what: str,
                   setting: bool = False) -> None:
    """`Rejected` unless the match (`match_bits`) holds the OpenFlow prerequisites of these
    fields (matched, or set when ``setting``); `what` names them in the message."""
    for f in fields:
        if f == "vlan_pcp" or (setting and f == "vlan_vid"):
            v, m, _ = bits.get("vlan_vid", (0, 0, 0))
            if not (v & m & ofp.OFPVID_PRESENT):
                raise Rejected(f"{what} requires vlan_vid with OFPVID_PRESENT in the match")
        for req, allowed in _PREREQ.get(f, ()):
            v, m, w = bits.get(req, (None, 0, 0))
            if v is None or m != (1 << w) - 1 or v not in allowed:
                want = "|".join(hex(a) if req == "eth_type" else str(a) for a in sorted(allowed))
                raise Rejected(f"{what} requires {req}={want} in the match")




class FieldView:
    """Packet fields as OXM ints, for matching (vlan_vid in OXM form, in_port separate)."""

    def __init__(self, in_port: int, hdrs: Headers) -> None:
        self.in_port, self.hdrs, self.cache = in_port, hdrs, {}  # type: ignore[var-annotated]

    def get(self, name: str) -> int | None:
        if name not in self.cache:
            if name in ("in_port", "in_phy_port"):
                val: Any = self.in_port
            elif name == "vlan_vid":
                vid = self.hdrs.get("vlan_vid")
                val = 0 if vid is None else (vid & 0xFFF) | ofp.OFPVID_PRESENT
            else:
                val = self.hdrs.get(name)
            self.cache[name] = None if val is None else encode_field(name, val)[0]
        return self.cache[name]


# ---------------------------------------------------------------- instructions
def canon_action(a: Any) -> tuple:
    """A framework action as a comparable tuple (("output", port[, max_len]), ...)."""
    if isinstance(a, parser.OFPActionOutput):
        if a.port == ofp.OFPP_CONTROLLER:  # max_len only matters there
            return ("output", a.port, a.max_len)
        return ("output", a.port)
    if isinstance(a, parser.OFPActionSetField):
        if isinstance(a.value, tuple):
            raise Rejected(f"masked set_field {a.key} is not OpenFlow 1.3")
        v, m, w = encode_field(a.key, a.value)
        return ("set_field", a.key, decode_field(a.key, v, m, w))
    if type(a).__name__ == "NXActionRegMove":
        return ("move", a.src_field, a.dst_field, a.n_bits, a.src_ofs, a.dst_ofs)
    raise NotImplementedError(f"ofsim does not model action {type(a).__name__}")


def canon_instructions(insts: Sequence[Any]) -> tuple:
    """Canonical instructions in OVS execution order: meter, apply, clear, write, goto."""
    out = []
    for i in insts or ():
        if isinstance(i, parser.OFPInstructionGotoTable):
            out.append(("goto", i.table_id))
        elif isinstance(i, parser.OFPInstructionMeter):
            out.append(("meter", i.meter_id))
        elif isinstance(i, parser.OFPInstructionActions):
            kind = {ofp.OFPIT_APPLY_ACTIONS: "apply", ofp.OFPIT_WRITE_ACTIONS: "write",
                    ofp.OFPIT_CLEAR_ACTIONS: "clear"}[i.type]
            acts = tuple(canon_action(a) for a in i.actions or ())
            if kind == "clear" and acts:
                raise Rejected("clear_actions takes no actions")
            out.append((kind, acts) if kind != "clear" else ("clear",))
        else:
            raise NotImplementedError(f"ofsim does not model instruction {type(i).__name__}")
    kinds = [i[0] for i in out]
    if len(set(kinds)) != len(kinds):
        raise Rejected(f"duplicate instruction type in {kinds}")
    return tuple(sorted(out, key=lambda i: _INST_ORDER[i[0]]))


def port_label(p: int) -> str:
    """A port number as printed: a reserved port by name (LOCAL, CONTROLLER, ...)."""
    return PORT_NAMES.get(p, str(p))


def _fmt_action(a: tuple) -> str:
    if a[0] == "output":
        return f"output:{port_label(a[1])}" + (f":{a[2]}" if len(a) > 2 else "")
    if a[0] == "move":
        _, src, dst, n, s_ofs, d_ofs = a
        return f"move:{src}[{s_ofs}..{s_ofs + n - 1}]->{dst}[{d_ofs}..{d_ofs + n - 1}]"
    return f"set_field:{a[2]}->{a[1]}"


def _fmt_insts(insts: tuple) -> str:
    parts = []
    for i in insts:
        if i[0] == "apply":
            parts += [_fmt_action(a) for a in i[1]]
        elif i[0] == "write":
            parts.append("write_actions(" + ",".join(_fmt_action(a) for a in i[1]) + ")")
        else:
            parts.append({"meter": "meter:{}", "goto": "goto_table:{}", "clear": "clear_actions"}[
                i[0]].format(*i[1:]))
    return ",".join(parts) or "drop"


# ---------------------------------------------------------------- flows and results
class FlowSpec(NamedTuple):
    """The comparable, hashable part of a flow (what `Switch.snapshot()` is made of)."""
    table_id: int
    priority: int
    match: tuple
    instructions: tuple
    cookie: int
    idle_timeout: int
    hard_timeout: int
    flags: int

    @property
    def key(self) -> tuple:
        return (self.table_id, self.priority, self.match)


@dataclass
class Flow:
    spec: FlowSpec
    packets: int = 0
    installed: float = 0.0
    last_used: float = 0.0
    bits: dict = field(default_factory=dict, repr=False)

    def __getattr__(self, name: str) -> Any:  # table_id, priority, match, cookie, ...
        if name == "spec":
            raise AttributeError(name)
        return getattr(self.spec, name)

    def outputs_to(self, port: int) -> bool:
        return any(a[0] == "output" and a[1] == port for i in self.spec.instructions
                   if i[0] in ("apply", "write") for a in i[1])

    def __str__(self) -> str:
        s = self.spec
        opts = [f"cookie={s.cookie:#x}", f"table={s.table_id}", f"n_packets={self.packets}"]
        opts += [f"{n}={getattr(s, n)}" for n in ("idle_timeout", "hard_timeout") if getattr(s, n)]
        flags = " send_flow_rem" if s.flags & ofp.OFPFF_SEND_FLOW_REM else ""
        match = ",".join(f"{n}={_fmt_val(n, v)}" for n, v in s.match)
        return (", ".join(opts) + f",{flags} priority={s.priority}" + (f",{match}" if match else "")
                + f" actions={_fmt_insts(s.instructions)}")


def _fmt_val(name: str, v: Any) -> str:
    if isinstance(v, tuple):
        return f"{_fmt_val(name, v[0])}/{_fmt_val(name, v[1])}"
    return hex(v) if isinstance(v, int) and name in ("eth_type", "vlan_vid") else str(v)


class Change(NamedTuple):
    kind: str  # add | readd (identical ADD) | replace | modify | delete | expire
    spec: FlowSpec


@dataclass
class ApplyResult:
    added: int = 0
    replaced: int = 0  # ADD over an existing flow with a different spec
    unchanged: int = 0  # ADD identical to the existing flow
    modified: int = 0
    deleted: int = 0
    removed: list = field(default_factory=list)  # OFPFlowRemoved for deleted SEND_FLOW_REM flows
    replies: list = field(default_factory=list)  # answers to stats requests, in order


@dataclass
class PacketIn:
    table_id: int | None  # None for a packet-out's output:CONTROLLER
    cookie: int
    reason: int
    in_port: int
    headers: Headers
    max_len: int = ofp.OFPCML_NO_BUFFER

    @property
    def data(self) -> bytes:
        return data_of(self.headers)

    def to_msg(self, datapath: Any = None) -> Any:
        """An OFPPacketIn as the controller would receive it."""
        data = self.data
        return parser.OFPPacketIn(datapath, buffer_id=ofp.OFP_NO_BUFFER, total_len=len(data),
                                  reason=self.reason, table_id=self.table_id or 0,
                                  cookie=self.cookie, match=parser.OFPMatch(in_port=self.in_port),
                                  data=data)


@dataclass
class Result:
    in_port: int
    outputs: list = field(default_factory=list)  # [(port, headers)] in emission order
    to_controller: list = field(default_factory=list)  # [PacketIn]
    trace: list = field(default_factory=list)  # [(table_id, priority, cookie)] flows hit
    meters: list = field(default_factory=list)  # meter ids passed
    miss_table: int | None = None  # table whose miss (no flow) ended the pipeline
    notes: list = field(default_factory=list)  # skipped/dropped outputs etc.

    @property
    def dropped(self) -> bool:
        return not self.outputs and not self.to_controller

    def ports(self) -> set:
        return {p for p, _ in self.outputs}

    def out(self, port: int) -> Headers | None:
        hits = [h for p, h in self.outputs if p == port]
        if len(hits) > 1:
            raise AssertionError(f"delivered {len(hits)} times to port {port}:\n{self}")
        return hits[0] if hits else None

    def __str__(self) -> str:
        lines = [f"in_port={port_label(self.in_port)} trace=" + " -> ".join(
            f"t{t}/p{p}/{c:#x}" for t, p, c in self.trace)]
        lines += [f"  out {port_label(p)}: {summary(h)}" for p, h in self.outputs]
        lines += [f"  controller (table {pi.table_id}, cookie {pi.cookie:#x}, reason {pi.reason}): "
                  f"{summary(pi.headers)}" for pi in self.to_controller]
        lines += [f"  meter {m}" for m in self.meters] + [f"  note: {n}" for n in self.notes]
        if self.dropped:
            lines.append("  DROPPED" + (f" (miss in table {self.miss_table})"
                                        if self.miss_table is not None else ""))
        return "\n".join(lines)


def summary(h: Headers) -> str:
    """Headers on one line, without the frame and payload bytes."""
    return "{" + ", ".join(f"{k}={v!r}" for k, v in h.items() if k not in ("data", "payload")) + "}"


