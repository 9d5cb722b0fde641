"""`wlbridge status`: what the running controller knows, from its loopback endpoint."""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from wlbridge.errors import UserError
from wlbridge.host.addr_handoff import render_line


def default_url() -> str:
    """The status endpoint of a controller with the default status_host and status_port."""
    from wlbridge.app import config

    return f"http://{config.default('status_host')}:{config.default('status_port')}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_endpoint_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--fleet", metavar="FLEET", default=None,
                   help="show every host and guest in this fleet store instead (its members, "
                        "comma-separated, as the `fleet` option), which host holds each "
                        "address (see docs/fleet.md)")


def add_endpoint_arguments(p: argparse.ArgumentParser) -> None:
    """``--url`` and ``--bridge``, shared with `wlbridge flows`."""
    p.add_argument("--url", default=default_url(),
                   help="the controller's status endpoint (its status_host:status_port)")
    p.add_argument("--bridge", metavar="BRIDGE", default=None,
                   help="refuse unless the controller at --url serves this bridge "
                   "(default: whichever bridge it serves, named in the output)")


def served_bridge(url: str, wanted: str | None, snap: dict[str, Any] | None = None) -> str:
    """The bridge the controller at `url` serves (from `snap`, its status, if given);
    UserError when it is not `wanted`."""
    served = (snap if snap is not None else fetch(url, "/status")).get("bridge", "?")
    if wanted is not None and served != wanted:
        raise UserError(f"the controller at {url} serves bridge {served}, not {wanted}; "
                        f"pass the status endpoint of {wanted}'s controller with --url "
                        "(its status_port)")
    return served


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


def _rows(g: dict) -> list[tuple[str | None, dict | None]]:
    """A guest port's rows: each guest MAC behind it (a port may carry several) with its
    addresses, one row each, or with none."""
    macs = list(g.get("macs") or [g.get("mac")])
    ips = g.get("ips") or []
    rows = [(m, b) for m in macs for b in ips if b.get("mac", g.get("mac")) == m]
    rows += [(b.get("mac"), b) for b in ips if b.get("mac", g.get("mac")) not in macs]
    with_ips = {m for m, _ in rows}
    rows += [(m, None) for m in macs if m not in with_ips]
    order = {m: n for n, m in enumerate(macs)}
    return sorted(rows, key=lambda r: (order.get(r[0], len(order)), r[1] is None))


def _expiry(binding: dict[str, Any], snap: dict[str, Any], now: float) -> str:
    if binding.get("expires") is not None:
        return _age(binding["expires"], now)
    idle = snap.get("idle_timeout")
    return f"after {idle}s unused" if idle else "-"


def _lan_line(lan: dict[str, Any] | None, now: float) -> str | None:
    """Which LAN the station is on (`policy.network`); None when no LAN is known yet."""
    if not lan:
        return None
    ssid = f" SSID {lan['ssid']!r}" if lan.get("ssid") else ""
    since = f", since {_age(lan['since'], now)}" if lan.get("since") is not None else ""
    state = "" if lan.get("confirmed", True) else " (the station was away: not confirmed yet)"
    moves = f", {lan['changes']} changes of LAN" if lan.get("changes") else ""
    return (f"lan      {lan['subnet']} gateway {lan['gateway_mac']}{ssid}{since}{moves}"
            f"{state}")


def _ap_line(ap: dict[str, Any] | None) -> str | None:
    """Which kind of AP (group delivery or none), why, and what that means for guests."""
    if not ap:
        return None
    lines = [f"ap       {ap.get('mode')}: {ap.get('why')}"]
    if ap.get("static_guests"):
        lines.append(f"         static guests: {ap['static_guests']}")
    if ap.get("unreachable_from_lan"):
        lines.append("         unreachable from the LAN (no address bound yet): "
                     + ", ".join(ap["unreachable_from_lan"]))
    return "\n".join(lines)


def _translation_line(t: dict[str, Any] | None) -> str | None:
    """The uplink's own translation: a NAT25 vendor driver, 4-address mode (and the fix)."""
    if not t or t.get("wireless") is None:
        return None if not t else f"wi-fi    cannot tell ({t.get('error')})"
    if not t.get("wireless"):
        return "wi-fi    the uplink is not a Wi-Fi interface"
    four = {True: "on", False: "off", None: "unknown"}[t.get("four_addr")]
    driver = t.get("driver") or "unknown driver"
    kind = "NAT25: translates MACs itself" if t.get("nat25") else "no MAC translation of its own"
    line = f"wi-fi    driver {driver} ({kind}); 4-address mode {four}"
    return "\n".join([line, *(f"         -> {a}" for a in t.get("advice", []))])


def _policing_line(p: dict[str, Any] | None) -> str | None:
    """Re-announcement and the station's IPv6 budget, with the addresses it refused."""
    if not p:
        return None
    every = p.get("reannounce_every")
    announce = ("re-announcement off" if not p.get("reannounce_interval") else
                f"each address re-announced every {every:g} s" if every else
                "re-announcement idle (nothing bound)")
    refused = ", ".join(f"{r['ip']} ({r['port']}, {r['mac']})"
                        for r in p.get("ipv6_refused", []))
    return (f"policing {announce}; IPv6 {p.get('ipv6_used')}/{p.get('ipv6_budget')} of the "
            f"station's budget" + (f"; refused over it: {refused}" if refused else ""))


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
        *filter(None, [render_line(snap, now)]),     # who renews the host's address
        *filter(None, [_lan_line(snap.get("lan"), now)]),
        f"dhcp     {snap.get('dhcp_mode')}",
        *filter(None, [_ap_line(snap.get("ap")), _policing_line(snap.get("policing")),
                       _translation_line(snap.get("uplink_translation"))]),
        "",
    ]
    # the IP column fits the longest address (IPv6 ones are up to 39 characters)
    width = max([17] + [len(b["ip"]) + 2 for g in snap.get("guests", [])
                        for b in g.get("ips") or []])
    lines.append(f"{'PORT':<16}{'MAC':<19}{'IP':<{width}}{'LEARNED':<9}EXPIRES")
    for g in snap.get("guests", []):
        shown = None
        for i, (m, b) in enumerate(_rows(g)):
            first = i == 0
            lines.append(
                f"{(g['port'] if first else ''):<16}{((m or '-') if m != shown else ''):<19}"
                f"{(b['ip'] if b else '-'):<{width}}{(b['source'] if b else ''):<9}"
                f"{_expiry(b, snap, now) if b else ''}"
                + ("  (saved, not confirmed by the switch yet)"
                   if first and g.get("confirmed") is False else "")
                + (f"  container {g['container']}" if first and g.get("container") else "")
                + (f"  VM {g['vm']}" if first and g.get("vm") else ""))
            shown = m
    if not snap.get("guests"):
        lines.append("(no guests)")
    joined = [g for g in snap.get("groups", []) if not g.get("always")]
    always = [g["group"] for g in snap.get("groups", []) if g.get("always")]
    if snap.get("groups") is not None:
        lines += ["", f"{'GROUP':<33}{'MAC':<19}MEMBERS (membership ends)"]
        for g in joined:
            members = ", ".join(f"{m['port']} ({_age(m.get('expires'), now)})"
                                for m in g.get("members", []))
            lines.append(f"{g['group']:<33}{g.get('mac', ''):<19}{members}")
        if not joined:
            lines.append("(no group joined by a guest)")
        lines.append(f"always restored to every port: {', '.join(always) or '-'}")
    counters = snap.get("counters", {})
    if counters:
        lines += ["", "counters:"]
        lines += [f"  {k:<40} {v}" for k, v in counters.items()]
    return "\n".join(lines)


def name_containers(snap: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`snap` with each guest port a container runtime's plugin named (port -> name) given
    its ``container``."""
    for g in snap.get("guests", []):
        if g.get("port") in names:
            g["container"] = names[g["port"]]
    return snap


def container_names(bridge: str, timeout: float = 2.0) -> dict[str, str]:
    """Port -> container name from the bridge's OVSDB records (`wlbridge.host.attach`);
    empty when OVSDB cannot be read (not root, another host's controller)."""
    from wlbridge.host import attach, ovsdb

    try:
        with ovsdb.connect(None, timeout) as db:
            info = db.bridge_info(bridge)
            return attach.container_names(info) if info is not None else {}
    except Exception:  # noqa: BLE001 - the status without names, never a failure
        return {}


def render_fleet(doc: dict[str, Any], now: float | None = None) -> str:
    """`wlbridge status --fleet`: every host, every address and who holds it, the refusals."""
    now = time.time() if now is None else now
    lines = [(f"fleet store {doc['remote']}: {len(doc['hosts'])} hosts, "
             f"{len(doc['bindings'])} addresses")]
    for h in doc["hosts"]:
        lines.append(f"host {h['name']}: station {h['station_mac'] or '-'}, bridge "
                     f"{h['bridge']}, LAN {h['lan'] or '-'}, last seen "
                     f"{_age(h['last_seen'], now)}")
        for ip, says in sorted(h["conflicts"].items()):
            lines.append(f"  refused {ip}: {says}")
    lines.append("addresses (who holds each):" if doc["bindings"] else "no addresses")
    for b in doc["bindings"]:
        lines.append(f"  {b['ip']:<28} {b['mac']}  on {b['host']:<12} {b['guest'] or '-':<12} "
                     f"({b['source']})")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.fleet:
        from wlbridge.host.fleet_store import read_once

        doc = read_once(args.fleet)
        print(json.dumps(doc, indent=1) if args.json else render_fleet(doc))
        return 0
    snap = fetch(args.url, "/status")
    served_bridge(args.url, args.bridge, snap)
    name_containers(snap, container_names(str(snap.get("bridge", ""))))
    print(json.dumps(snap, indent=1) if args.json else render(snap))
    return 0
