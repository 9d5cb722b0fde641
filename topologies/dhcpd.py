"""ISC dhcpd as the emulated LAN's DHCPv4 server (test tooling), the alternative to dnsmasq
(`topologies.dhcp`) for the Mininet topology's ``dhcp=isc``.

It serves the same ``dhcp`` settings of a `topologies.graph` router (range, lease time, no
router and no DNS option unless asked), in the foreground, state under a work directory.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from .dhcp import Lease


def dhcpd_conf(addr: str, conf: dict) -> str:
    """dhcpd.conf for the router's interface address ``addr`` (e.g. 10.231.7.1/24)."""
    iface = ipaddress.ip_interface(addr)
    net = iface.network
    first, last = conf["range"]
    lease = int(conf.get("lease_time", 300))
    options = []
    if conf.get("router_option"):
        options.append(f"  option routers {iface.ip};")
    if conf.get("dns_option"):
        options.append(f"  option domain-name-servers {iface.ip};")
    ping = "true" if conf.get("ping_check", False) else "false"
    return "\n".join([
        "authoritative;",
        f"default-lease-time {lease};",
        f"max-lease-time {lease};",
        f"ping-check {ping};",
        "ddns-update-style none;",
        f"subnet {net.network_address} netmask {net.netmask} {{",
        f"  range {first} {last};",
        *options,
        "}",
        "",
    ])


def dhcpd_argv(ifname: str, conf: Path, workdir: Path) -> list[str]:
    """dhcpd -4 in the foreground on one interface (the leases file must exist)."""
    return ["dhcpd", "-4", "-f", "-d", "-cf", str(conf), "-lf", str(workdir / "dhcpd.leases"),
            "-pf", str(workdir / "dhcpd.pid"), ifname]


_LEASE_RE = re.compile(r"lease (\S+) \{(.*?)\n\}", re.DOTALL)


def parse_leases(text: str) -> list[Lease]:
    """The active leases of a dhcpd.leases file (the last record of each address wins);
    expiry is 0 (dhcpd writes dates, not epoch seconds)."""
    found: dict[str, Lease] = {}
    for ip, body in _LEASE_RE.findall(text):
        mac = re.search(r"hardware ethernet ([0-9a-f:]+);", body, re.IGNORECASE)
        if mac and "binding state active" in body:
            found[ip] = Lease(0, mac.group(1).lower(), ip, "*", "*")
        else:
            found.pop(ip, None)
    return list(found.values())
