"""`wlbridge flows`: the bridge's flows grouped by purpose and guest, decoded from cookies."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

from wlbridge.cli.status_client import add_endpoint_arguments, fetch, served_bridge
from wlbridge.flows import cookies
from wlbridge.flows.flowtext import port_name
from wlbridge.flows.pipeline import BY_ID


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(p)
    p.add_argument("--json", action="store_true",
                   help="machine-readable output: the groups as JSON, without the header")


def group(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Flows keyed by 'purpose' or 'purpose port N' (foreign flows under 'foreign')."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        c = cookies.decode(int(e["cookie"]))
        if c is None:
            key = "foreign"
        else:
            key = c.purpose.name.lower() + (f" port {c.subject}" if c.subject else "")
            e = {**e, "generation": c.generation}
        groups[key].append(e)
    return dict(sorted(groups.items()))


def _value(name: str, value: Any) -> str:
    if isinstance(value, list):  # (value, mask)
        return f"{_value(name, value[0])}/{_value(name, value[1])}"
    if name == "eth_type" and isinstance(value, int):
        return f"{value:#06x}"
    if name == "in_port" and isinstance(value, int):
        return port_name(value)
    return str(value)


def render(groups: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for key, entries in groups.items():
        lines.append(f"[{key}] {len(entries)} flow(s)")
        for e in sorted(entries, key=lambda x: (x["table_id"], -x["priority"])):
            table = BY_ID.get(e["table_id"])
            match = ",".join(f"{k}={_value(k, v)}" for k, v in e["match"].items()) or "*"
            lines.append(f"  {table.name if table else e['table_id']:<13}"
                         f"prio={e['priority']:<4} {match}")
            lines.append(f"      -> {', '.join(e['instructions']) or 'drop'}"
                         f"   (packets={e['packet_count']})")
    return "\n".join(lines) if lines else "(no flows)"


def main(args: argparse.Namespace) -> int:
    bridge = served_bridge(args.url, args.bridge)
    groups = group(fetch(args.url, "/flows"))
    if args.json:
        print(json.dumps(groups, indent=1))
    else:
        total = sum(len(entries) for entries in groups.values())
        print(f"bridge {bridge}: {total} flow(s), from the controller at {args.url}")
        print(render(groups))
    return 0
