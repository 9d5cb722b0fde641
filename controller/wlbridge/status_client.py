"""`wlbridge status`: what the running controller knows, from its loopback endpoint."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from .errors import UserError

DEFAULT_URL = "http://127.0.0.1:9654"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"controller status endpoint (default {DEFAULT_URL})")


def fetch(url: str, path: str, timeout: float = 5.0) -> Any:
    """GET a JSON document from the controller; UserError when it is not running."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as exc:
        raise UserError(f"the controller at {url} answered {exc.code} for {path}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"the controller is not running (no answer at {url}: "
                        f"{getattr(exc, 'reason', exc)}); start it with `wlbridge run`") from exc


def _age(value: float | None, now: float) -> str:
    if value is None:
        return "-"
    seconds = int(value - now)
    return f"in {seconds}s" if seconds >= 0 else f"{-seconds}s ago"


def _expiry(binding: dict[str, Any], snap: dict[str, Any], now: float) -> str:
    if binding.get("expires") is not None:
        return _age(binding["expires"], now)
    idle = snap.get("idle_timeout")
    return f"after {idle}s unused" if idle else "-"


def render(snap: dict[str, Any], now: float | None = None) -> str:
    """The status as a short human-readable report."""
    now = time.time() if now is None else now
    up = snap.get("uplink", {})
    state = "up" if up.get("up") else ("down" if up.get("present") else "missing")
    lines = [
        (f"bridge   {snap.get('bridge', '?')} (dpid {snap.get('dpid') or '-'}, "
         f"{'connected' if snap.get('connected') else 'not connected'}, "
         f"generation {snap.get('generation')})"),
        f"uplink   {up.get('name')} port {up.get('port_no')} {state}",
        (f"station  {snap.get('station_mac') or '-'}  host IPs: "
         f"{', '.join(snap.get('host_ips', [])) or '-'}"),
        f"dhcp     {snap.get('dhcp_mode')}",
        "",
        f"{'PORT':<16}{'MAC':<19}{'IP':<17}{'LEARNED':<9}EXPIRES",
    ]
    for g in snap.get("guests", []):
        ips = g.get("ips") or [None]
        for i, b in enumerate(ips):
            first = i == 0
            lines.append(
                f"{(g['port'] if first else ''):<16}{((g.get('mac') or '-') if first else ''):<19}"
                f"{(b['ip'] if b else '-'):<17}{(b['source'] if b else ''):<9}"
                f"{_expiry(b, snap, now) if b else ''}")
    if not snap.get("guests"):
        lines.append("(no guests)")
    counters = snap.get("counters", {})
    if counters:
        lines += ["", "counters:"]
        lines += [f"  {k:<40} {v}" for k, v in counters.items()]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    snap = fetch(args.url, "/status")
    print(json.dumps(snap, indent=1) if args.json else render(snap))
    return 0
