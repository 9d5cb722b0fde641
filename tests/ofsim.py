"""A small OpenFlow 1.3 switch simulator for unit tests: apply flow-mods, then ask for packet fate.

    sw = Switch([1, 2]); sw.apply(msgs)
    r = sw.process(1, arp_request('02:00:00:00:00:01', '10.0.0.5', '10.0.0.1'))
    assert r.ports() == {2} and r.out(2)['eth_src'] == ...

Packets are dicts of OXM-named header fields (see `normalise`); `vlan_vid` holds the bare 12-bit VID
(absent = untagged), `payload` the L4 payload bytes, `data` the raw frame (dropped once a
set-field changes the headers). Only output / set-field / goto / meter / write- and clear-actions
are modelled (others raise NotImplementedError).

Choices: flow-mods OVS would refuse raise `Rejected` (so does DELETE with os-ken's default
out_port=0, which silently deletes nothing in OVS); two top-priority flows matching one packet
raise `AmbiguousMatch`; output to a port not on the switch is dropped with a note in
`Result.notes`; MODIFY matching nothing is a no-op (OpenFlow 1.3; OVS would add the flow).
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from wlbridge import compat
from wlbridge.compat import ofp, parser

Headers = dict  # dict[str, Any]: OXM field name -> value
BROADCAST = "ff:ff:ff:ff:ff:ff"
ETH_ARP, ETH_IP, ETH_IPV6 = 0x0806, 0x0800, 0x86DD
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
_READONLY = frozenset({"in_port", "in_phy_port", "metadata", "eth_type", "ip_proto",
                       "ipv6_exthdr", "mpls_bos"})
_INST_ORDER = {"meter": 0, "apply": 1, "clear": 2, "write": 3, "goto": 4}


class SimError(ValueError):
    """Base class of the simulator's errors."""


class Rejected(SimError):
    """A message the switch (OVS) would refuse with an OpenFlow error."""


class AmbiguousMatch(SimError):
    """Two flows of the same (highest) priority match one packet: their order is undefined."""


# ---------------------------------------------------------------- fields and matches
def _encode(name: str, value: Any) -> tuple[int, int, int]:
    """OXM (value, mask, width in bits) as ints; the value is normalised to value & mask."""
    try:
        _, vb, mb = ofp.oxm_from_user(name, value)
    except KeyError:
        raise SimError(f"unknown OXM field {name!r}") from None
    width, v = len(vb) * 8, int.from_bytes(vb, "big")
    m = int.from_bytes(mb, "big") if mb is not None else (1 << width) - 1
    return v & m, m, width


def _decode(name: str, v: int, m: int, width: int) -> Any:
    num = ofp.oxm_get_field_info_by_name(name)[0]
    mask = None if m == (1 << width) - 1 else m.to_bytes(width // 8, "big")
    return ofp.oxm_to_user(num, v.to_bytes(width // 8, "big"), mask)[1]


def canon_match(match: Any) -> tuple[tuple[str, Any], ...]:
    """Canonical match: (field, value-or-(value, mask)) pairs in OXM order; zero masks dropped."""
    items = match.items() if match is not None else ()
    out = []
    for name, value in items:
        v, m, w = _encode(name, value)
        if m:
            out.append((name, _decode(name, v, m, w)))
    return tuple(sorted(out, key=lambda kv: ofp.oxm_get_field_info_by_name(kv[0])[0]))


def _bits(canon: Iterable[tuple[str, Any]]) -> dict[str, tuple[int, int, int]]:
    return {n: _encode(n, val) for n, val in canon}


def _check_prereqs(bits: Mapping[str, tuple[int, int, int]], fields: Iterable[str], what: str,
                   setting: bool = False) -> None:
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


def normalise(pkt: Mapping[str, Any]) -> Headers:
    """Copy of `pkt` with MAC/IP strings in canonical form (lowercase etc.); other keys kept."""
    out = dict(pkt)
    for k, val in pkt.items():
        if isinstance(val, str):
            try:
                v, m, w = _encode(k, val)
            except SimError:
                continue
            out[k] = _decode(k, v, m, w)
    return out


class _View:
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
            self.cache[name] = None if val is None else _encode(name, val)[0]
        return self.cache[name]


# ---------------------------------------------------------------- instructions
def _canon_action(a: Any) -> tuple:
    if isinstance(a, parser.OFPActionOutput):
        if a.port == ofp.OFPP_CONTROLLER:  # max_len only matters there
            return ("output", a.port, a.max_len)
        return ("output", a.port)
    if isinstance(a, parser.OFPActionSetField):
        if isinstance(a.value, tuple):
            raise Rejected(f"masked set_field {a.key} is not OpenFlow 1.3")
        v, m, w = _encode(a.key, a.value)
        return ("set_field", a.key, _decode(a.key, v, m, w))
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
            acts = tuple(_canon_action(a) for a in i.actions or ())
            if kind == "clear" and acts:
                raise Rejected("clear_actions takes no actions")
            out.append((kind, acts) if kind != "clear" else ("clear",))
        else:
            raise NotImplementedError(f"ofsim does not model instruction {type(i).__name__}")
    kinds = [i[0] for i in out]
    if len(set(kinds)) != len(kinds):
        raise Rejected(f"duplicate instruction type in {kinds}")
    return tuple(sorted(out, key=lambda i: _INST_ORDER[i[0]]))


def _port_name(p: int) -> str:
    return PORT_NAMES.get(p, str(p))


def _fmt_action(a: tuple) -> str:
    if a[0] == "output":
        return f"output:{_port_name(a[1])}" + (f":{a[2]}" if len(a) > 2 else "")
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
        lines = [f"in_port={_port_name(self.in_port)} trace=" + " -> ".join(
            f"t{t}/p{p}/{c:#x}" for t, p, c in self.trace)]
        lines += [f"  out {_port_name(p)}: {_short(h)}" for p, h in self.outputs]
        lines += [f"  controller (table {pi.table_id}, cookie {pi.cookie:#x}, reason {pi.reason}): "
                  f"{_short(pi.headers)}" for pi in self.to_controller]
        lines += [f"  meter {m}" for m in self.meters] + [f"  note: {n}" for n in self.notes]
        if self.dropped:
            lines.append("  DROPPED" + (f" (miss in table {self.miss_table})"
                                        if self.miss_table is not None else ""))
        return "\n".join(lines)


def _short(h: Headers) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in h.items() if k not in ("data", "payload")) + "}"


# ---------------------------------------------------------------- the switch
class Switch:
    """An OpenFlow 1.3 switch's tables, ports and meters; see the module docstring."""

    def __init__(self, ports: Mapping[int, str] | Iterable[int] = ()) -> None:
        named = ports if isinstance(ports, Mapping) else {p: f"p{p}" for p in ports}
        self.ports: dict[int, str] = {ofp.OFPP_LOCAL: "LOCAL", **named}
        self._flows: dict[tuple, Flow] = {}
        self.meters: dict[int, Any] = {}
        self.history: list[Change] = []
        self.now = 0.0

    # -- ports, time, history
    def add_port(self, port: int, name: str = "") -> None:
        self.ports[port] = name or f"p{port}"

    def remove_port(self, port: int) -> None:
        del self.ports[port]

    def _tick(self, now: float | None) -> None:
        if now is not None:
            if now < self.now:
                raise SimError(f"time goes backwards: {now} < {self.now}")
            self.now = now

    def mark(self) -> int:
        """A position in `history`, for `changes`/`deleted_keys`/`readded_keys`."""
        return len(self.history)

    def changes(self, since: int = 0, kinds: str = "") -> list[Change]:
        return [c for c in self.history[since:] if not kinds or c.kind in kinds.split()]

    def deleted_keys(self, since: int = 0) -> set:
        """Keys (table, priority, match) removed by DELETE / meter deletion since `since`."""
        return {c.spec.key for c in self.changes(since, "delete")}

    def readded_keys(self, since: int = 0) -> set:
        """Keys deleted (or expired) and then added again since `since`: flow churn."""
        gone, out = set(), set()
        for c in self.history[since:]:
            if c.kind in ("delete", "expire"):
                gone.add(c.spec.key)
            elif c.kind == "add" and c.spec.key in gone:
                out.add(c.spec.key)
        return out

    # -- inspection
    def flows(self, table_id: int | None = None) -> list[Flow]:
        return [f for f in self._flows.values() if table_id is None or f.table_id == table_id]

    def __len__(self) -> int:
        return len(self._flows)

    def snapshot(self) -> tuple[FlowSpec, ...]:
        """All flows as sorted FlowSpecs: hashable, comparable, counter-free."""
        return tuple(sorted((f.spec for f in self._flows.values()),
                            key=lambda s: (s.table_id, -s.priority, repr(s.match))))

    def dump(self) -> str:
        """`ovs-ofctl dump-flows`-like text."""
        flows = sorted(self._flows.values(), key=lambda f: (f.table_id, -f.priority, repr(f.match)))
        return "\n".join(f" {f}" for f in flows)

    # -- messages
    def apply(self, msgs: Any, now: float | None = None) -> ApplyResult:
        """Apply one message or a list of them in order (no rollback if one raises)."""
        self._tick(now)
        res = ApplyResult()
        for msg in msgs if isinstance(msgs, (list, tuple)) else [msgs]:
            if isinstance(msg, parser.OFPFlowMod):
                self._flow_mod(msg, res)
            elif isinstance(msg, parser.OFPMeterMod):
                self._meter_mod(msg, res)
            elif isinstance(msg, parser.OFPFlowStatsRequest):
                self._check_out(msg)
                res.replies.append([replace(f) for f in self._select(msg, strict=False)])
            elif isinstance(msg, parser.OFPPortDescStatsRequest):
                res.replies.append(dict(self.ports))
            elif isinstance(msg, parser.OFPPacketOut):
                raise SimError("use Switch.packet_out() for packet-outs")
            elif isinstance(msg, (parser.OFPBarrierRequest, parser.OFPSetConfig,
                                  parser.OFPEchoRequest, parser.OFPFeaturesRequest,
                                  parser.OFPSetAsync, parser.OFPRoleRequest)):
                pass
            else:
                raise NotImplementedError(f"ofsim does not model {type(msg).__name__}")
        return res

    def _validate(self, insts: tuple, table_id: int, bits: Mapping,
                  packet_out: bool = False) -> None:
        """Refuse what OVS refuses: bad gotos, unknown meters, prerequisites, bad ports."""
        for i in insts:
            if i[0] == "goto" and not table_id < i[1] <= 254:
                raise Rejected(f"goto_table:{i[1]} from table {table_id}")
            if i[0] == "meter" and i[1] not in self.meters:
                raise Rejected(f"meter {i[1]} does not exist")
            for a in i[1] if i[0] in ("apply", "write") else ():
                if a[0] == "set_field":
                    if a[1] in _READONLY:
                        raise Rejected(f"set_field of read-only field {a[1]}")
                    _check_prereqs(bits, [a[1]], f"set_field:{a[1]}", setting=True)
                elif (a[1] in (0, ofp.OFPP_ANY) or (a[1] == ofp.OFPP_TABLE and not packet_out)
                      or (a[1] > ofp.OFPP_MAX and a[1] not in PORT_NAMES)):
                    raise Rejected(f"invalid output port {a[1]:#x}")

    def _check_out(self, msg: Any) -> None:
        if msg.out_port != ofp.OFPP_ANY or msg.out_group != ofp.OFPG_ANY:
            if msg.out_port == 0 or msg.out_group == 0:
                raise Rejected("out_port/out_group 0 (os-ken's default) selects no flow in OVS; "
                               "pass OFPP_ANY / OFPG_ANY")
            if msg.out_group != ofp.OFPG_ANY:
                raise NotImplementedError("out_group filter (groups are not modelled)")

    def _select(self, msg: Any, strict: bool, out_port: int | None = None) -> list[Flow]:
        """Flows selected by a flow-mod / stats request (loose: the flow's match is within)."""
        out_port = msg.out_port if out_port is None else out_port
        req = canon_match(msg.match)
        rbits = _bits(req)
        out = []
        for f in self._flows.values():
            if msg.table_id != ofp.OFPTT_ALL and f.table_id != msg.table_id:
                continue
            if (f.cookie ^ msg.cookie) & msg.cookie_mask:
                continue
            if strict and (f.priority != msg.priority or f.match != req):
                continue
            if not strict and not all(
                    n in f.bits and f.bits[n][1] & m == m and f.bits[n][0] & m == v
                    for n, (v, m, _) in rbits.items()):
                continue
            if out_port != ofp.OFPP_ANY and not f.outputs_to(out_port):
                continue
            out.append(f)
        return out

    def _flow_mod(self, fm: Any, res: ApplyResult) -> None:
        if fm.buffer_id not in (None, ofp.OFP_NO_BUFFER):
            raise Rejected(f"buffer_id {fm.buffer_id}: this switch has no buffers")
        if not (0 <= fm.priority <= 0xFFFF and 0 <= fm.idle_timeout <= 0xFFFF
                and 0 <= fm.hard_timeout <= 0xFFFF and 0 <= fm.cookie < 1 << 64):
            raise Rejected("priority / timeout / cookie out of range")
        cmd, match = fm.command, canon_match(fm.match)
        bits = _bits(match)
        _check_prereqs(bits, bits, f"match {dict(match)}")
        insts = canon_instructions(fm.instructions)
        if cmd == ofp.OFPFC_ADD:
            if not 0 <= fm.table_id <= 254:
                raise Rejected(f"ADD to table {fm.table_id}")
            if fm.flags & ofp.OFPFF_CHECK_OVERLAP:
                raise NotImplementedError("OFPFF_CHECK_OVERLAP")
            self._validate(insts, fm.table_id, bits)
            spec = FlowSpec(fm.table_id, fm.priority, match, insts, fm.cookie, fm.idle_timeout,
                            fm.hard_timeout, fm.flags)
            old = self._flows.get(spec.key)
            keep = old.packets if old and not fm.flags & ofp.OFPFF_RESET_COUNTS else 0
            self._flows[spec.key] = Flow(spec, keep, self.now, self.now, bits)
            kind = "add" if old is None else "readd" if old.spec == spec else "replace"
            res.added += kind == "add"
            res.unchanged += kind == "readd"
            res.replaced += kind == "replace"
            self.history.append(Change(kind, spec))
        elif cmd in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            if fm.table_id > 254 and fm.table_id != ofp.OFPTT_ALL:
                raise Rejected(f"MODIFY in table {fm.table_id}")
            # MODIFY ignores out_port/out_group (which os-ken defaults to 0)
            targets = self._select(fm, cmd == ofp.OFPFC_MODIFY_STRICT, out_port=ofp.OFPP_ANY)
            for f in targets:  # validate all before changing any
                self._validate(insts, f.table_id, bits)
            for f in targets:
                if fm.flags & ofp.OFPFF_RESET_COUNTS:
                    f.packets = 0
                if f.instructions != insts:
                    f.spec = f.spec._replace(instructions=insts)
                    res.modified += 1
                    self.history.append(Change("modify", f.spec))
        elif cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            if fm.table_id > 254 and fm.table_id != ofp.OFPTT_ALL:
                raise Rejected(f"DELETE in table {fm.table_id}")
            self._check_out(fm)
            for f in self._select(fm, strict=cmd == ofp.OFPFC_DELETE_STRICT):
                self._remove(f, "delete", ofp.OFPRR_DELETE, res.removed)
                res.deleted += 1
        else:
            raise Rejected(f"bad flow-mod command {cmd}")

    def _remove(self, f: Flow, kind: str, reason: int, notify: list) -> None:
        del self._flows[f.spec.key]
        self.history.append(Change(kind, f.spec))
        if f.flags & ofp.OFPFF_SEND_FLOW_REM:
            age = max(0.0, self.now - f.installed)
            notify.append(parser.OFPFlowRemoved(
                None, cookie=f.cookie, priority=f.priority, reason=reason, table_id=f.table_id,
                duration_sec=int(age), duration_nsec=int(age % 1 * 1e9),
                idle_timeout=f.idle_timeout, hard_timeout=f.hard_timeout, packet_count=f.packets,
                byte_count=0, match=parser.OFPMatch(**dict(f.match))))

    def _meter_mod(self, mm: Any, res: ApplyResult) -> None:
        mid = mm.meter_id
        if mm.command == ofp.OFPMC_ADD:
            if mid in self.meters:
                raise Rejected(f"meter {mid} exists")
            self.meters[mid] = mm
        elif mm.command == ofp.OFPMC_MODIFY:
            if mid not in self.meters:
                raise Rejected(f"meter {mid} does not exist")
            self.meters[mid] = mm
        elif mm.command == ofp.OFPMC_DELETE:  # also removes the flows using the meter
            gone = set(self.meters) if mid == ofp.OFPM_ALL else {mid} & set(self.meters)
            for m in gone:
                del self.meters[m]
            for f in list(self._flows.values()):
                if any(i[0] == "meter" and i[1] in gone for i in f.instructions):
                    self._remove(f, "delete", ofp.OFPRR_DELETE, res.removed)
                    res.deleted += 1
        else:
            raise Rejected(f"bad meter-mod command {mm.command}")

    def expire(self, now: float) -> list:
        """Remove timed-out flows; return OFPFlowRemoved messages for the SEND_FLOW_REM ones."""
        self._tick(now)
        notify: list = []
        for f in list(self._flows.values()):
            if f.hard_timeout and now >= f.installed + f.hard_timeout:
                self._remove(f, "expire", ofp.OFPRR_HARD_TIMEOUT, notify)
            elif f.idle_timeout and now >= f.last_used + f.idle_timeout:
                self._remove(f, "expire", ofp.OFPRR_IDLE_TIMEOUT, notify)
        return notify

    # -- packets
    def process(self, in_port: int, pkt: Mapping[str, Any], now: float | None = None) -> Result:
        """Run a packet received on `in_port` through the pipeline from table 0."""
        if in_port not in self.ports:
            raise SimError(f"no port {in_port} on the switch (ports: {sorted(self.ports)})")
        self._tick(now)
        res = Result(in_port)
        self._pipeline(in_port, normalise(pkt), res)
        return res

    def packet_out(self, msg: Any, pkt: Mapping[str, Any] | None = None,
                   now: float | None = None) -> Result:
        """Execute an OFPPacketOut (packet from `pkt`, or parsed from msg.data)."""
        self._tick(now)
        if msg.buffer_id != ofp.OFP_NO_BUFFER:
            raise Rejected(f"packet-out buffer_id {msg.buffer_id}: this switch has no buffers")
        hdrs = normalise(pkt) if pkt is not None else from_bytes(msg.data)
        acts = tuple(_canon_action(a) for a in msg.actions or ())
        view = _View(msg.in_port, hdrs)  # set-field prerequisites are checked on the packet
        bits = {n: _encode(n, view.get(n)) for n in ("eth_type", "ip_proto", "vlan_vid")
                if view.get(n) is not None}
        self._validate((("apply", acts),), 0, bits, packet_out=True)
        res = Result(msg.in_port)
        self._actions(acts, msg.in_port, hdrs, res, None)
        return res

    def _lookup(self, table_id: int, view: _View) -> Flow | None:
        hits = [f for f in self._flows.values() if f.table_id == table_id
                and all(view.get(n) is not None and view.get(n) & m == v  # type: ignore[operator]
                        for n, (v, m, _) in f.bits.items())]
        if not hits:
            return None
        top = max(f.priority for f in hits)
        best = [f for f in hits if f.priority == top]
        if len(best) > 1:
            raise AmbiguousMatch(f"table {table_id}: {len(best)} flows of priority {top} match "
                                 f"{_short(view.hdrs)}:\n" + "\n".join(map(str, best)))
        return best[0]

    def _pipeline(self, in_port: int, hdrs: Headers, res: Result) -> None:
        table, action_set = 0, {}  # type: ignore[var-annotated]
        while True:
            flow = self._lookup(table, _View(in_port, hdrs))
            if flow is None:
                res.miss_table = table
                return
            flow.packets += 1
            flow.last_used = self.now
            res.trace.append((table, flow.priority, flow.cookie))
            goto = None
            for inst in flow.instructions:
                if inst[0] == "meter":
                    res.meters.append(inst[1])
                elif inst[0] == "apply":
                    self._actions(inst[1], in_port, hdrs, res, flow)
                elif inst[0] == "clear":
                    action_set.clear()
                elif inst[0] == "write":
                    action_set.update({a[:2] if a[0] == "set_field" else a[:1]: a for a in inst[1]})
                else:
                    goto = inst[1]
            if goto is None:
                acts = sorted(action_set.values(), key=lambda a: a[0] == "output")
                self._actions(acts, in_port, hdrs, res, flow)
                return
            table = goto

    def _actions(self, acts: Iterable[tuple], in_port: int, hdrs: Headers, res: Result,
                 flow: Flow | None) -> None:
        for a in acts:
            if a[0] == "set_field":
                hdrs.pop("data", None)
                hdrs[a[1]] = a[2] & 0xFFF if a[1] == "vlan_vid" else a[2]
                continue
            port = a[1]
            if port == ofp.OFPP_CONTROLLER:
                no_match = flow is not None and flow.priority == 0 and not flow.match
                res.to_controller.append(PacketIn(
                    flow.table_id if flow else None, flow.cookie if flow else 0,
                    ofp.OFPR_NO_MATCH if no_match else ofp.OFPR_ACTION, in_port, dict(hdrs), a[2]))
            elif port == ofp.OFPP_TABLE:
                self._pipeline(in_port, dict(hdrs), res)
            elif port == ofp.OFPP_NORMAL:
                raise NotImplementedError("output:NORMAL")
            elif port in (ofp.OFPP_ALL, ofp.OFPP_FLOOD):
                res.outputs += [(p, dict(hdrs)) for p in sorted(self.ports) if p != in_port]
            elif port == in_port:
                res.notes.append(f"output:{_port_name(port)} is the in_port: skipped")
            elif port == ofp.OFPP_IN_PORT and in_port not in self.ports:
                res.notes.append(f"output:IN_PORT to non-port {_port_name(in_port)}: dropped")
            elif port == ofp.OFPP_IN_PORT:
                res.outputs.append((in_port, dict(hdrs)))
            elif port not in self.ports:
                res.notes.append(f"output:{port}: no such port, dropped")
            else:
                res.outputs.append((port, dict(hdrs)))


# ---------------------------------------------------------------- packets
def _pkt_mod(name: str) -> Any:
    return importlib.import_module(f"{compat.FRAMEWORK}.lib.packet.{name}")


def ether(eth_src: str, eth_dst: str, eth_type: int, **fields: Any) -> Headers:
    return normalise(dict(eth_src=eth_src, eth_dst=eth_dst, eth_type=eth_type, **fields))


def arp_request(sha: str, spa: str, tpa: str, *, eth_dst: str = BROADCAST,
                tha: str = "00:00:00:00:00:00", **fields: Any) -> Headers:
    return ether(fields.pop("eth_src", sha), eth_dst, ETH_ARP, arp_op=1, arp_spa=spa,
                 arp_tpa=tpa, arp_sha=sha, arp_tha=tha, **fields)


def arp_reply(sha: str, spa: str, tha: str, tpa: str, **fields: Any) -> Headers:
    return ether(fields.pop("eth_src", sha), fields.pop("eth_dst", tha), ETH_ARP, arp_op=2,
                 arp_spa=spa, arp_tpa=tpa, arp_sha=sha, arp_tha=tha, **fields)


def ipv4(eth_src: str, eth_dst: str, src: str, dst: str, ip_proto: int = 0,
         **fields: Any) -> Headers:
    return ether(eth_src, eth_dst, ETH_IP, ipv4_src=src, ipv4_dst=dst, ip_proto=ip_proto, **fields)


def udp(eth_src: str, eth_dst: str, src: str, dst: str, sport: int, dport: int,
        payload: bytes = b"", **fields: Any) -> Headers:
    return ipv4(eth_src, eth_dst, src, dst, 17, udp_src=sport, udp_dst=dport, payload=payload,
                **fields)


def icmp_echo(eth_src: str, eth_dst: str, src: str, dst: str, payload: bytes = b"\0\1\0\1",
              **fields: Any) -> Headers:
    return ipv4(eth_src, eth_dst, src, dst, 1, icmpv4_type=8, icmpv4_code=0, payload=payload,
                **fields)


def from_bytes(data: bytes) -> Headers:
    """Parse an Ethernet frame (os-ken packet library) into a header dict; keeps `data`."""
    h: Headers = {}
    off, end = 0, len(data)
    for p in compat.packet.Packet(bytes(data)).protocols:
        kind = type(p).__name__
        if kind == "ethernet":
            h.update(eth_src=p.src, eth_dst=p.dst, eth_type=p.ethertype)
            off = 14
        elif kind == "vlan":
            h.update(vlan_vid=p.vid, vlan_pcp=p.pcp, eth_type=p.ethertype)
            off += 4
        elif kind == "arp":
            h.update(arp_op=p.opcode, arp_spa=p.src_ip, arp_tpa=p.dst_ip, arp_sha=p.src_mac,
                     arp_tha=p.dst_mac)
            break
        elif kind == "ipv4":
            h.update(ipv4_src=p.src, ipv4_dst=p.dst, ip_proto=p.proto)
            end, off = off + p.total_length, off + p.header_length * 4
        elif kind == "ipv6":  # extension headers are not walked
            h.update(ipv6_src=p.src, ipv6_dst=p.dst, ip_proto=p.nxt)
            end, off = off + 40 + p.payload_length, off + 40
        elif kind in ("udp", "tcp", "icmp", "icmpv6"):
            if kind.startswith("icmp"):
                v, t = ("v6", p.type_) if kind == "icmpv6" else ("v4", p.type)
                h.update({f"icmp{v}_type": t, f"icmp{v}_code": p.code})
            else:
                h.update({f"{kind}_src": p.src_port, f"{kind}_dst": p.dst_port})
            off += {"udp": 8, "icmp": 4, "icmpv6": 4}.get(kind) or p.offset * 4
            h["payload"] = bytes(data[off:end])
            break
    h = normalise(h)
    h["data"] = bytes(data)
    return h


def to_bytes(h: Mapping[str, Any]) -> bytes:
    """Build an Ethernet frame from a header dict (eth[/vlan]/arp|ipv4[/udp|tcp|icmp]/payload)."""
    pk, et = compat.packet.Packet(), h["eth_type"]
    vlan = h.get("vlan_vid")
    pk.add_protocol(compat.ethernet.ethernet(h["eth_dst"], h["eth_src"],
                                             et if vlan is None else 0x8100))
    if vlan is not None:
        pk.add_protocol(compat.vlan.vlan(pcp=h.get("vlan_pcp", 0), vid=vlan, ethertype=et))
    if et == ETH_ARP:
        pk.add_protocol(compat.arp.arp(opcode=h["arp_op"], src_mac=h["arp_sha"],
                                       src_ip=h["arp_spa"], dst_mac=h["arp_tha"],
                                       dst_ip=h["arp_tpa"]))
    elif et == ETH_IPV6:
        raise NotImplementedError("to_bytes: IPv6")
    elif et == ETH_IP:
        proto = h.get("ip_proto", 0)
        pk.add_protocol(compat.ipv4.ipv4(proto=proto, src=h["ipv4_src"], dst=h["ipv4_dst"]))
        if proto == 17:
            pk.add_protocol(compat.udp.udp(h["udp_src"], h["udp_dst"]))
        elif proto == 6:
            pk.add_protocol(_pkt_mod("tcp").tcp(h["tcp_src"], h["tcp_dst"]))
        elif proto == 1:
            raw = struct.pack("!BBH", h["icmpv4_type"], h["icmpv4_code"], 0) + h.get("payload", b"")
            csum = compat.packet_utils.checksum(raw)
            pk.add_protocol(raw[:2] + struct.pack("!H", csum) + raw[4:])
            pk.serialize()
            return bytes(pk.data)
    pk.add_protocol(h.get("payload", b""))
    pk.serialize()
    return bytes(pk.data)


def data_of(h: Mapping[str, Any]) -> bytes:
    """The frame: the original bytes if the headers are unmodified, else rebuilt."""
    return h["data"] if "data" in h else to_bytes(h)


def assert_serialisable(msgs: Any) -> None:
    """Serialise each message with a stand-in datapath (as send_msg would); restores the message."""
    proto = importlib.import_module(f"{compat.FRAMEWORK}.ofproto.ofproto_protocol")
    dp = proto.ProtocolDesc(version=ofp.OFP_VERSION)
    for msg in msgs if isinstance(msgs, (list, tuple)) else [msgs]:
        saved = {k: getattr(msg, k) for k in ("datapath", "version", "msg_type", "msg_len",
                                              "xid", "buf")}
        try:
            msg.datapath = dp
            msg.serialize()
        except Exception as e:
            raise AssertionError(f"cannot serialise {msg}: {e!r}") from e
        finally:
            for k, v in saved.items():
                setattr(msg, k, v)


__all__ = [
    "BROADCAST",
    "AmbiguousMatch",
    "ApplyResult",
    "Change",
    "Flow",
    "FlowSpec",
    "PacketIn",
    "Rejected",
    "Result",
    "SimError",
    "Switch",
    "arp_reply",
    "arp_request",
    "assert_serialisable",
    "canon_instructions",
    "canon_match",
    "data_of",
    "ether",
    "from_bytes",
    "icmp_echo",
    "ipv4",
    "normalise",
    "to_bytes",
    "udp",
]
