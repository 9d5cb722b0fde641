"""A small OpenFlow 1.3 switch simulator for unit tests: apply flow-mods, then ask for packet fate.

    sw = Switch([1, 2]); sw.apply(msgs)
    r = sw.process(1, arp_request('02:00:00:00:00:01', '10.0.0.5', '10.0.0.1'))
    assert r.ports() == {2} and r.out(2)['eth_src'] == ...

Packets are dicts of OXM-named header fields (see `normalise`); `vlan_vid` holds the bare 12-bit VID
(absent = untagged), `payload` the L4 payload bytes, `data` the raw frame (dropped once a
set-field changes the headers). Only output / set-field / move (Nicira reg_move) / goto / meter /
write- and clear-actions are modelled (others raise NotImplementedError).

Choices: flow-mods OVS would refuse raise `Rejected` (so does DELETE with os-ken's default
out_port=0, which silently deletes nothing in OVS); two top-priority flows matching one packet
raise `AmbiguousMatch`; output to a port not on the switch is dropped with a note in
`Result.notes`; MODIFY matching nothing is a no-op (OpenFlow 1.3; OVS would add the flow).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ofsim_model import (
    PORT_NAMES,
    READONLY_FIELDS,
    AmbiguousMatch,
    ApplyResult,
    Change,
    FieldView,
    Flow,
    FlowSpec,
    PacketIn,
    Rejected,
    Result,
    canon_action,
    canon_instructions,
    canon_match,
    check_prereqs,
    match_bits,
    port_label,
    summary,
)
from ofsim_packets import (
    BROADCAST,
    Headers,
    SimError,
    arp_reply,
    arp_request,
    data_of,
    decode_field,
    encode_field,
    ether,
    from_bytes,
    icmp_echo,
    ipv4,
    normalise,
    to_bytes,
    udp,
)
from wlbridge import compat
from wlbridge.compat import ofp, parser


# ---------------------------------------------------------------- the switch
class Switch:
    """An OpenFlow 1.3 switch's tables, ports and meters; see the module docstring."""

    def __init__(self, ports: Mapping[int, str] | Iterable[int] = ()) -> None:
        named = ports if isinstance(ports, Mapping) else {p: f"p{p}" for p in ports}
        self.ports: dict[int, str] = {ofp.OFPP_LOCAL: "LOCAL", **named}
        self._flows: dict[tuple, Flow] = {}
        self.meters: dict[int, Any] = {}
        self.down: set[int] = set()  # ports taken down by a port-mod (OFPPC_PORT_DOWN)
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
            elif isinstance(msg, parser.OFPPortMod):
                self._port_mod(msg)
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
                    if a[1] in READONLY_FIELDS:
                        raise Rejected(f"set_field of read-only field {a[1]}")
                    check_prereqs(bits, [a[1]], f"set_field:{a[1]}", setting=True)
                elif a[0] == "move":
                    self._check_move(a, bits)
                elif (a[1] in (0, ofp.OFPP_ANY) or (a[1] == ofp.OFPP_TABLE and not packet_out)
                      or (a[1] > ofp.OFPP_MAX and a[1] not in PORT_NAMES)):
                    raise Rejected(f"invalid output port {a[1]:#x}")

    @staticmethod
    def _check_move(a: tuple, bits: Mapping) -> None:
        """OVS refuses a move into a read-only field, bits outside either field, or fields
        whose prerequisites the match does not guarantee."""
        _, src, dst, n_bits, src_ofs, dst_ofs = a
        if dst in READONLY_FIELDS:
            raise Rejected(f"move into read-only field {dst}")
        for name, ofs in ((src, src_ofs), (dst, dst_ofs)):
            width = 8 * ofp.oxm_get_field_info_by_name(name)[1].size
            if n_bits < 1 or ofs < 0 or ofs + n_bits > width:
                raise Rejected(f"move: bits {ofs}..{ofs + n_bits - 1} outside {name}")
        check_prereqs(bits, [src, dst], f"move:{src}->{dst}")

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
        rbits = match_bits(req)
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
        bits = match_bits(match)
        check_prereqs(bits, bits, f"match {dict(match)}")
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

    def _port_mod(self, msg: Any) -> None:
        """OFPPC_PORT_DOWN set or cleared (a down port neither sends nor receives)."""
        if msg.port_no not in self.ports or msg.port_no == ofp.OFPP_LOCAL:
            raise Rejected(f"port-mod of port {msg.port_no}: no such port")
        if msg.mask & ~ofp.OFPPC_PORT_DOWN:
            raise NotImplementedError("port-mod of a config bit other than PORT_DOWN")
        if msg.mask & ofp.OFPPC_PORT_DOWN:
            if msg.config & ofp.OFPPC_PORT_DOWN:
                self.down.add(msg.port_no)
            else:
                self.down.discard(msg.port_no)

    # -- packets
    def process(self, in_port: int, pkt: Mapping[str, Any], now: float | None = None) -> Result:
        """Run a packet received on `in_port` through the pipeline from table 0."""
        if in_port not in self.ports:
            raise SimError(f"no port {in_port} on the switch (ports: {sorted(self.ports)})")
        self._tick(now)
        res = Result(in_port)
        if in_port in self.down:
            res.notes.append(f"port {in_port} is down: nothing received")
            return res
        self._pipeline(in_port, normalise(pkt), res)
        return res

    def packet_out(self, msg: Any, pkt: Mapping[str, Any] | None = None,
                   now: float | None = None) -> Result:
        """Execute an OFPPacketOut (packet from `pkt`, or parsed from msg.data)."""
        self._tick(now)
        if msg.buffer_id != ofp.OFP_NO_BUFFER:
            raise Rejected(f"packet-out buffer_id {msg.buffer_id}: this switch has no buffers")
        hdrs = normalise(pkt) if pkt is not None else from_bytes(msg.data)
        acts = tuple(canon_action(a) for a in msg.actions or ())
        view = FieldView(msg.in_port, hdrs)  # set-field prerequisites are checked on the packet
        bits = {n: encode_field(n, view.get(n)) for n in ("eth_type", "ip_proto", "vlan_vid")
                if view.get(n) is not None}
        self._validate((("apply", acts),), 0, bits, packet_out=True)
        res = Result(msg.in_port)
        self._actions(acts, msg.in_port, hdrs, res, None)
        return res

    def _lookup(self, table_id: int, view: FieldView) -> Flow | None:
        hits = [f for f in self._flows.values() if f.table_id == table_id
                and all(view.get(n) is not None and view.get(n) & m == v  # type: ignore[operator]
                        for n, (v, m, _) in f.bits.items())]
        if not hits:
            return None
        top = max(f.priority for f in hits)
        best = [f for f in hits if f.priority == top]
        if len(best) > 1:
            raise AmbiguousMatch(f"table {table_id}: {len(best)} flows of priority {top} match "
                                 f"{summary(view.hdrs)}:\n" + "\n".join(map(str, best)))
        return best[0]

    def _pipeline(self, in_port: int, hdrs: Headers, res: Result) -> None:
        table, action_set = 0, {}  # type: ignore[var-annotated]
        while True:
            flow = self._lookup(table, FieldView(in_port, hdrs))
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
                if a[1] in ("ipv6_nd_sll", "ipv6_nd_tll") and hdrs.get(a[1]) in (
                        None, "00:00:00:00:00:00"):
                    continue  # no such option in the frame: OVS's datapath changes nothing
                hdrs.pop("data", None)
                hdrs[a[1]] = a[2] & 0xFFF if a[1] == "vlan_vid" else a[2]
                continue
            if a[0] == "move":
                _, src, dst, n_bits, src_ofs, dst_ofs = a
                if hdrs.get(src) is None or hdrs.get(dst) is None:
                    raise SimError(f"move {src}->{dst}: the packet has no such field")
                sv, _, _ = encode_field(src, hdrs[src])
                dv, _, dw = encode_field(dst, hdrs[dst])
                mask = (1 << n_bits) - 1
                dv = (dv & ~(mask << dst_ofs)) | (((sv >> src_ofs) & mask) << dst_ofs)
                hdrs.pop("data", None)
                hdrs[dst] = decode_field(dst, dv, (1 << dw) - 1, dw)
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
                res.outputs += [(p, dict(hdrs)) for p in sorted(self.ports)
                                if p != in_port and p not in self.down]
            elif port == in_port:
                res.notes.append(f"output:{port_label(port)} is the in_port: skipped")
            elif port == ofp.OFPP_IN_PORT and in_port not in self.ports:
                res.notes.append(f"output:IN_PORT to non-port {port_label(in_port)}: dropped")
            elif port == ofp.OFPP_IN_PORT:
                res.outputs.append((in_port, dict(hdrs)))
            elif port not in self.ports:
                res.notes.append(f"output:{port}: no such port, dropped")
            elif port in self.down:
                res.notes.append(f"output:{port}: port down, dropped")
            else:
                res.outputs.append((port, dict(hdrs)))



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
