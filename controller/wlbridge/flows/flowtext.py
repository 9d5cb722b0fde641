"""Flows as the switch reports them, for people: instructions as short text
(``set_field:eth_src=…``, ``output:LOCAL``, ``goto:to_uplink``), flow statistics as JSON-able
entries (`wlbridge flows`)."""

from __future__ import annotations

from typing import Any

from wlbridge.compat import ofp, parser
from wlbridge.flows.pipeline import BY_ID

PORT_NAMES = {ofp.OFPP_LOCAL: "LOCAL", ofp.OFPP_ALL: "ALL", ofp.OFPP_CONTROLLER: "CONTROLLER",
              ofp.OFPP_IN_PORT: "IN_PORT", ofp.OFPP_TABLE: "TABLE", ofp.OFPP_FLOOD: "FLOOD"}


def port_name(port: int) -> str:
    return PORT_NAMES.get(port, str(port))


def action_text(action: Any) -> str:
    if isinstance(action, parser.OFPActionOutput):
        return f"output:{port_name(action.port)}"
    if isinstance(action, parser.OFPActionSetField):
        return f"set_field:{action.key}={action.value}"
    if type(action).__name__ == "NXActionRegMove":
        return (f"move:{action.src_field}[{_bits(action.src_ofs, action.n_bits)}]"
                f"->{action.dst_field}[{_bits(action.dst_ofs, action.n_bits)}]")
    return type(action).__name__.replace("OFPAction", "").lower()


def _bits(ofs: int, n_bits: int) -> str:
    return f"{ofs}..{ofs + n_bits - 1}"


def instruction_texts(instructions: list[Any]) -> list[str]:
    """One string per action/instruction, in order."""
    out: list[str] = []
    for inst in instructions:
        kind = type(inst).__name__
        if kind == "OFPInstructionActions":
            out += [action_text(a) for a in inst.actions]
        elif kind == "OFPInstructionGotoTable":
            table = BY_ID.get(inst.table_id)
            out.append(f"goto:{table.name if table else inst.table_id}")
        elif kind == "OFPInstructionMeter":
            out.append(f"meter:{inst.meter_id}")
        else:
            out.append(kind.replace("OFPInstruction", "").lower())
    return out or ["drop"]


def flow_entries(stats: list[Any]) -> list[dict[str, Any]]:
    """Flow-statistics entries (os-ken's ``OFPFlowStats``) as JSON-able dicts."""
    return [{
        "table_id": s.table_id, "priority": s.priority, "cookie": s.cookie,
        "match": {k: list(v) if isinstance(v, tuple) else v for k, v in s.match.items()},
        "instructions": instruction_texts(s.instructions),
        "packet_count": s.packet_count, "byte_count": s.byte_count,
        "idle_timeout": s.idle_timeout, "duration_sec": s.duration_sec,
    } for s in stats]
