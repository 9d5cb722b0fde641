"""The parts of docs/usage.md and docs/pipeline.md that are generated from the code.

``python -m wlbridge.cli.docgen`` rewrites them in place; ``python -m wlbridge.cli.docgen --check``
exits 1 when a doc differs from what the code says (a unit test runs the same check).
A generated part sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``.

* usage.md ``synopsis``: every command's usage line, from the argument parser;
* usage.md ``options``: the configuration options, from `config.options()`;
* pipeline.md ``tables``: the tables, from `pipeline.TABLES`;
* pipeline.md ``static``/``port``/``ip``/``ip6``/``group``: each section's flows, built by
  `flows`'s own functions for symbolic ports and addresses, and ``counts``: how many there are.

Whole files, shipped as package data (``wlbridge/data``), also from the argument parser:
the man page ``wlbridge.8`` (argparse-manpage) and the bash completion ``wlbridge.bash``
(shtab).  Both libraries are development tools (the ``test`` extra): the generated files are
committed, an installed wlbridge needs neither.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wlbridge.app import config
from wlbridge.cli.main import build_parsers
from wlbridge.flows import pipeline, wanted
from wlbridge.flows.pipeline import FlowSpec, Move, Output, SetField, ToController
from wlbridge.proto import groupmsg

DOCS = Path(__file__).resolve().parents[3] / "docs"
DATA = Path(__file__).resolve().parents[1] / "data"
WIDTH = 100

# symbolic values the section flows are built with, and how they are shown
UPLINK, GUEST = 1, 2
STATION, GUEST_MAC, GUEST_IP = "02:00:00:00:00:aa", "02:00:00:00:00:bb", "192.0.2.1"
GUEST_IP6 = "2001:db8::1"
ETH_TYPES = {pipeline.ETH_ARP: "ARP", pipeline.ETH_IPV4: "IPv4", pipeline.ETH_IPV6: "IPv6",
             pipeline.ETH_EAPOL: "EAPOL"}
IP_PROTOS = {pipeline.IPPROTO_UDP: "UDP", pipeline.IPPROTO_ICMPV6: "ICMPv6",
             pipeline.IPPROTO_IGMP: "IGMP"}
ICMPV6_TYPES = {pipeline.ICMPV6_ROUTER_ADVERT: "router advertisement",
                groupmsg.MLD_REPORT: "MLDv1 report", groupmsg.MLD_DONE: "MLDv1 done",
                groupmsg.MLD_REPORT_V2: "MLDv2 report"}
FIELD_ORDER = ("in_port", "eth_src", "eth_dst", "eth_type", "ip_proto", "arp_op", "arp_spa",
               "arp_sha", "arp_tpa", "ipv4_src", "ipv4_dst", "udp_src", "udp_dst",
               "icmpv6_type", "ipv6_src", "ipv6_dst", "ipv6_nd_target", "ipv6_nd_sll",
               "ipv6_nd_tll")
ICMPV6_TYPES = {pipeline.ICMPV6_ROUTER_SOLICIT: "router solicitation",
                pipeline.ICMPV6_ROUTER_ADVERT: "router advertisement",
                pipeline.ICMPV6_NEIGHBOR_SOLICIT: "NS", pipeline.ICMPV6_NEIGHBOR_ADVERT: "NA",
                pipeline.ICMPV6_REDIRECT: "redirect"}
# the group section's examples: a group a guest joined (IPv4, IPv6), a well-known group,
# a subnet-directed broadcast of the host's network
GROUP_EXAMPLES = (("239.1.2.3", (GUEST,)), ("ff15::1234", (GUEST,)), ("224.0.0.251", None),
                  ("192.0.2.255", None))


# ---- usage.md ---------------------------------------------------------------------------
def synopsis() -> str:
    """Every command's usage, as `wlbridge COMMAND --help` prints it."""
    parser, commands = build_parsers()
    lines = [_usage(parser)] + [_usage(cmd) for cmd in commands.values()]
    return "```\n" + "\n".join(lines) + "\n```"


def _usage(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    text = parser.format_usage().rstrip()
    return "\n".join(line[len("usage: "):] for line in text.splitlines())


def command_options(name: str) -> str:
    """A command's options, defaults and help, from its parser."""
    rows = ["| option | default | |", "|---|---|---|"]
    for action in build_parsers()[1][name].options:
        if "-h" in action.option_strings or action.help == argparse.SUPPRESS:
            continue
        option = " / ".join(action.option_strings)
        if action.metavar or action.choices:
            option += f" {action.metavar or '{' + ','.join(action.choices) + '}'}"
        option = f"`{option.strip()}`"   # a positional has no option string
        text = action.help or ""
        default = "(required)" if action.required else "–"
        found = re.search(r" \(default: (.*)\)$", text)
        if found:
            text, default = text[:found.start()], found.group(1)
            default = default if " " in default else f"`{default}`"
        rows.append(f"| {option} | {default} | {text} |")
    return "\n".join(rows)


def options_table() -> str:
    """The options: `[wlbridge]` key, `wlbridge run` flag, default, accepted values."""
    rows = ["| `[wlbridge]` key | `wlbridge run` flag | default | accepts | |",
            "|---|---|---|---|---|"]
    for opt in config.options():
        boolean = type(opt.type).__name__ == "Boolean"
        flag = config.flag(opt)
        flag = f"`{flag}`, `--no-{flag[2:]}`" if boolean else f"`{flag}`"
        default = opt.default
        if isinstance(default, list):
            default = ",".join(default) or None
        elif isinstance(default, bool):
            default = str(default).lower()
        shown = "(unset)" if default is None else f"`{default}`"
        help_text = (opt.help or "").replace("|", "\\|")
        rows.append(f"| `{opt.dest}` | {flag} | {shown} | {config.expected(opt)} | "
                    f"{help_text} |")
    return "\n".join(rows)


# ---- pipeline.md ------------------------------------------------------------------------
def tables_table() -> str:
    rows = ["| id | name | purpose | matches allowed | set-fields allowed | goto | table miss |",
            "|---:|---|---|---|---|---|---|"]
    for t in pipeline.TABLES:
        goto = ", ".join(str(pipeline.BY_NAME[n].table_id) for n in t.next_tables) or "–"
        miss = {"drop": "drop", "local": "output LOCAL"}.get(
            t.miss, t.miss.replace("goto:", "goto "))
        rows.append(f"| {t.table_id} | `{t.name}` | {t.doc} | {_fields(t.matches)} | "
                    f"{_fields(t.set_fields)} | {goto} | {miss} |")
    return "\n".join(rows)


def _fields(names: frozenset[str]) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names)) or "–"


def _view() -> wanted.View:
    return wanted.View(uplink=UPLINK, station_mac=STATION, guest_ports=(GUEST,))


def section_specs() -> dict[str, list[FlowSpec]]:
    """Each section's flows as the controller builds them: static with one guest port, a
    guest port with a known MAC, one binding learned from ARP."""
    return {
        "static": wanted.static_flows(_view()),
        "port": wanted.port_flows(GUEST, GUEST_MAC, None),
        "ip": wanted.binding_flows(GUEST, GUEST_MAC, GUEST_IP, 300),
        "group": [spec for group, ports in GROUP_EXAMPLES
                  for spec in wanted.group_flows(STATION, group, ports)],
        "ip6": wanted.binding_flows(GUEST, GUEST_MAC, GUEST_IP6, 300),
    }


def _value(name: str, value: Any, section: str) -> str:
    if isinstance(value, tuple):
        if value == pipeline.GROUP_BIT:
            return "group bit set"
        if name.startswith(("ipv4", "ipv6")):
            bits = bin(int(ipaddress.ip_address(value[1]))).count("1")
            return str(ipaddress.ip_network(f"{value[0]}/{bits}"))
        return "/".join(_value(name, v, section) for v in value)
    if name == "eth_type":
        return ETH_TYPES.get(value, f"{value:#06x}")
    if name == "ip_proto":
        return IP_PROTOS.get(value, str(value))
    if name == "icmpv6_type" and value in ICMPV6_TYPES:
        return f"{value} ({ICMPV6_TYPES[value]})"
    if name in ("in_port", "port"):
        return _port(value, section)
    return {STATION: "station", GUEST_MAC: "M", GUEST_IP: "A", GUEST_IP6: "A"}.get(
        value, str(value))


def _port(port: int, section: str) -> str:
    names = {UPLINK: "uplink", GUEST: "each guest port" if section == "static" else
             "member P" if section == "group" else "P",
             pipeline.PORT_LOCAL: "LOCAL", pipeline.PORT_ALL: "ALL"}
    return names.get(port, str(port))


def _bits(ofs: int, n_bits: int) -> str:
    return f"{ofs}..{ofs + n_bits - 1}"


def _actions(spec: FlowSpec, section: str) -> str:
    parts = []
    for a in spec.actions:
        if isinstance(a, Output):
            parts.append(f"output {_port(a.port, section)}")
        elif isinstance(a, ToController):
            parts.append("CONTROLLER")
        elif isinstance(a, SetField):
            parts.append(f"`{a.field}`:={_value(a.field, a.value, section)}")
        elif isinstance(a, Move):
            parts.append(f"`{a.dst}`[{_bits(a.dst_ofs, a.n_bits)}]:="
                         f"`{a.src}`[{_bits(a.src_ofs, a.n_bits)}]")
    if spec.goto:
        parts.append(f"goto {spec.goto}")
    if spec.idle_timeout:
        parts.append("`idle_timeout` (not DHCP-learned), flow-removed")
    return ", ".join(parts) or "drop"


def section_table(section: str) -> str:
    rows = ["| table | prio | match | actions | cookie purpose |", "|---|---:|---|---|---|"]
    specs = sorted(section_specs()[section],
                   key=lambda s: (pipeline.BY_NAME[s.table].table_id, -s.priority))
    for s in specs:
        fields = sorted(s.match, key=lambda kv: FIELD_ORDER.index(kv[0]))
        match = ", ".join(f"`{k}`={_value(k, v, section)}" for k, v in fields) or "–"
        rows.append(f"| {s.table} | {s.priority} | {match} | {_actions(s, section)} | "
                    f"`{s.purpose.name.lower()}` |")
    return "\n".join(rows)


def counts() -> dict[str, int]:
    specs = section_specs()
    return {"static": len(specs["static"]), "port": len(specs["port"]),
            "port_unknown_mac": len(wanted.port_flows(GUEST, None, None)),
            "ip": len(specs["ip"]), "ip6": len(specs["ip6"]),
            "group": len(wanted.group_flows(STATION, GROUP_EXAMPLES[0][0], (GUEST,))),
            "well_known": len(groupmsg.WELL_KNOWN)}


def counts_text() -> str:
    c = counts()
    return (f"Per bridge: {c['static']} static flows (the table misses included), "
            f"{c['port']} per guest port with a known MAC ({c['port_unknown_mac']} before "
            f"the MAC is known), {c['ip']} per bound IPv4 address, {c['ip6']} per bound IPv6 "
            f"address, {c['group']} per group: each of the {c['well_known']} well-known groups, "
            f"each subnet broadcast address of the host and each group a guest joined. Two "
            f"guests with one IPv4 address each, no group joined, the host on one subnet: "
            f"{total(2, 2)} flows; with a link-local and a global IPv6 address each too: "
            f"{total(2, 2, 4)} flows.")


def dump_total() -> str:
    c = counts()
    return (f"{total(2, 2, 2)} flows in all: {c['static']} static + 2 × {c['port']} per guest "
            f"port + 2 × {c['ip']} per bound IPv4 address + 2 × {c['ip6']} per bound IPv6 "
            f"address (the guests' link-local ones) + {c['well_known'] + 1} × {c['group']} per "
            f"group ({c['well_known']} well-known, the subnet broadcast).")


def total(guests: int, bindings: int, bindings6: int = 0) -> int:
    c = counts()
    return (c["static"] + guests * c["port"] + bindings * c["ip"] + bindings6 * c["ip6"]
            + (c["well_known"] + 1) * c["group"])


# ---- examples of output ----------------------------------------------------------------
NOW = 1_700_000_000.0


def status_example() -> str:
    """`wlbridge status` for a bridge with two guests (a sample status document)."""
    from wlbridge.cli.status_client import render

    snap = {
        "bridge": "br-wl", "dpid": "00003ca9f4123456", "connected": True, "generation": 1,
        "uplink": {"name": "wlan0", "port_no": 1, "present": True, "up": True},
        "station_mac": "3c:a9:f4:12:34:56", "host_ips": ["192.168.1.23"],
        "dhcp_mode": "broadcast", "idle_timeout": 300,
        "lan": {"subnet": "192.168.1.0/24", "gateway_mac": "a0:b5:49:10:20:30",
                "ssid": "home", "since": NOW - 3600, "confirmed": True, "changes": 0},
        "guests": [
            {"port": "vnet0", "mac": "52:54:00:6b:3c:11",
             "ips": [{"ip": "192.168.1.51", "source": "arp", "expires": None},
                     {"ip": "2001:db8:1:0:5054:ff:fe6b:3c11", "source": "nd", "expires": None},
                     {"ip": "fe80::5054:ff:fe6b:3c11", "source": "nd", "expires": None}]},
            {"port": "veth-c1", "mac": "02:00:00:00:00:01",
             "ips": [{"ip": "192.168.1.175", "source": "dhcp", "expires": NOW + 296}]}],
        "groups": [
            {"group": "239.1.2.3", "mac": "01:00:5e:01:02:03", "always": False,
             "members": [{"port": "vnet0", "expires": NOW + 251}]},
            *({"group": g, "always": True, "members": []} for g in (
                "192.168.1.255", *groupmsg.WELL_KNOWN))],
        "counters": {"bindings.learned.arp": 1, "bindings.learned.dhcp": 1,
                     "bindings.learned.nd": 2, "dhcp.ack.to_guest": 1}}
    return "```\n$ wlbridge status\n" + render(snap, now=NOW) + "\n  ...\n```"


def flows_excerpt() -> str:
    """`wlbridge flows` for guest port 2 of the annotated dump (packet counts 0): the
    flows built by `flows`, encoded as for the switch, decoded as the command does."""
    from wlbridge.cli.flowdump import group, render
    from wlbridge.flows.flowtext import instruction_texts

    station, mac, ip = "02:57:4c:00:02:00", "02:57:4c:00:04:01", "10.231.160.51"
    view = wanted.View(uplink=1, station_mac=station, guest_ports=(2, 3))
    specs = [s for s in wanted.static_flows(view) if s.purpose.name in ("REFLECT", "UPLINK_OUT")]
    specs += wanted.port_flows(2, mac, None) + wanted.binding_flows(2, mac, ip, 300)
    entries = []
    for spec in specs:
        mod = pipeline.build_add(spec, 1)
        entries.append({"cookie": mod.cookie, "table_id": mod.table_id,
                        "priority": mod.priority, "packet_count": 0,
                        "match": {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in mod.match.items()},
                        "instructions": instruction_texts(mod.instructions)})
    groups = group(entries)
    total = sum(len(v) for v in groups.values())
    return ("```\n$ wlbridge flows\n"
            f"bridge br-wl: {total} flow(s), from the controller at http://127.0.0.1:9654\n"
            + render(groups) + "\n```")


# ---- man page and completion (package data) ----------------------------------------------
MAN_SEE_ALSO = (r"\fBovs\-vsctl\fR(8), \fBsystemctl\fR(1); the documentation: README.md and "
                "docs/ in wlbridge's source (install.md, usage.md, troubleshooting.md)")
MAN_FILES = (".TP\n/etc/wlbridge.ini\nthe configuration file of \\fBwlbridge run\\fR (example: "
             "wlbridge/data/wlbridge.ini in the package)\n"
             ".TP\n/var/lib/wlbridge\nthe state directory: learned guests, the DHCP client's "
             "pid and lease files\n"
             ".TP\n/etc/systemd/system/wlbridge.service, wlbridge\\-setup.service\nthe units "
             "\\fBwlbridge install\\-service\\fR installs")


def _fixed_width_parsers() -> argparse.ArgumentParser:
    parser, commands = build_parsers()
    for p in (parser, *commands.values()):
        p.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    return parser


def manpage() -> str:
    """wlbridge(8), from the argument parser."""
    from argparse_manpage.manpage import Manpage

    from wlbridge import __version__

    page = Manpage(_fixed_width_parsers())
    page.date, page.source, page.manual, page.section = (
        __version__, f"wlbridge {__version__}", "System Administration", 8)
    page.description = "VMs and containers on a Wi-Fi LAN through Open vSwitch"
    page.add_section("files", "=", MAN_FILES)
    page.add_section("see also", "=", MAN_SEE_ALSO)
    return str(page)


def bash_completion() -> str:
    """Completion of commands and options for bash, from the argument parser."""
    import shtab

    return shtab.complete(_fixed_width_parsers(), shell="bash")


FILES: dict[str, Callable[[], str]] = {"wlbridge.8": manpage, "wlbridge.bash": bash_completion}


# ---- rewriting the docs -----------------------------------------------------------------
BLOCKS: dict[str, dict[str, Callable[[], str]]] = {
    "usage.md": {"synopsis": synopsis, "options": options_table,
                 "setup-options": lambda: command_options("setup"),
                 "teardown-options": lambda: command_options("teardown"),
                 "doctor-options": lambda: command_options("doctor"),
                 "install-service-options": lambda: command_options("install-service"),
                 "attach-options": lambda: command_options("attach"),
                 "detach-options": lambda: command_options("detach"),
                 "docker-plugin-options": lambda: command_options("docker-plugin"),
                 "status-example": status_example},
    "pipeline.md": {"tables": tables_table, "static": lambda: section_table("static"),
                    "port": lambda: section_table("port"), "ip": lambda: section_table("ip"),
                    "group": lambda: section_table("group"),
                    "ip6": lambda: section_table("ip6"),
                    "counts": counts_text, "flows-excerpt": flows_excerpt,
                    "dump-total": dump_total},
}


def render(name: str, text: str) -> str:
    """`text` (the doc `name`) with its generated blocks as the code makes them."""
    for block, make in BLOCKS[name].items():
        pattern = re.compile(rf"(<!-- generated: {block} -->\n).*?(<!-- end: {block} -->)",
                             re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"docs/{name} has no generated block {block!r}")
        body = make()
        text = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), text,
                           count=1)
    return text


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for name in BLOCKS:
        path = DOCS / name
        text = path.read_text()
        new = render(name, text)
        if new != text:
            stale.append(name)
            if not check:
                path.write_text(new)
    for name, make in FILES.items():
        path = DATA / name
        new = make()
        if not path.exists() or path.read_text() != new:
            stale.append(f"wlbridge/data/{name}")
            if not check:
                path.write_text(new)
    if stale:
        verb = "out of date" if check else "rewritten"
        print(f"docs {verb}: {', '.join(stale)}"
              + (" (run: python -m wlbridge.cli.docgen)" if check else ""), file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
