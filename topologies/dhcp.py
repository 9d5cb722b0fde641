"""DHCP in the emulated LAN: the router's dnsmasq, and client scripts for guests.

Client scripts only configure the address on the interface in the namespace the client runs in.
They never touch routes, /etc/resolv.conf or the hostname (the stock dhclient-script would write
the host's resolv.conf, the filesystem being shared), and append every event to a log file.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import NamedTuple


class Lease(NamedTuple):
    expiry: int
    mac: str
    ip: str
    hostname: str
    client_id: str


def dnsmasq_argv(ifname: str, addr: str, conf: dict, workdir: Path) -> list[str]:
    """dnsmasq as a foreground DHCP-only server on one interface, state under workdir."""
    net = ipaddress.ip_interface(addr).network
    router_ip = str(ipaddress.ip_interface(addr).ip)
    first, last = conf["range"]
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",  # no DNS service, hence no implicit DNS option
        f"--interface={ifname}",
        "--bind-interfaces",
        f"--dhcp-range={first},{last},{net.netmask},{int(conf.get('lease_time', 300))}",
        f"--dhcp-leasefile={workdir / 'leases'}",
        "--dhcp-authoritative",
        "--log-dhcp",
        f"--log-facility={workdir / 'dnsmasq.log'}",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
        # Empty option 3 = send no router: nothing may ever get a default route from us.
        f"--dhcp-option=3,{router_ip}" if conf.get("router_option") else "--dhcp-option=3",
        f"--dhcp-option=6,{router_ip}" if conf.get("dns_option") else "--dhcp-option=6",
    ]
    if not conf.get("ping_check", False):
        argv.append("--no-ping")
    return argv


def parse_leases(text: str) -> list[Lease]:
    """Parse a dnsmasq leases file."""
    leases = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].isdigit():
            leases.append(Lease(int(parts[0]), parts[1].lower(), parts[2], parts[3], parts[4]))
    return leases


DHCLIENT_SCRIPT = """#!/bin/sh
# dhclient -sf script (wlbridge test tooling): address only, in this namespace.
echo "$reason ${{new_ip_address:-}} ${{old_ip_address:-}}" >> {events}
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" \\
      valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time"
    ;;
  EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ;;
esac
exit 0
"""

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc -s script (wlbridge test tooling): address only, in this namespace.
echo "$1 ${{ip:-}}" >> {events}
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew)
    for old in $(ip -4 -o addr show dev "$interface" | awk '{{print $4}}'); do
      [ "${{old%/*}}" = "$ip" ] || ip -4 addr del "$old" dev "$interface"
    done
    ip -4 addr replace "$ip/${{mask:-24}}" dev "$interface" \\
      valid_lft "${{lease:-forever}}" preferred_lft "${{lease:-forever}}"
    ;;
esac
exit 0
"""

#: dhclient.conf: quick retries so tests do not wait a minute for a failure.
DHCLIENT_CONF = """timeout {timeout};
retry 2;
initial-interval 1;
backoff-cutoff 2;
request subnet-mask, broadcast-address, routers, domain-name-servers;
"""


def write_client_files(workdir: Path, name: str, timeout: int = 20) -> dict[str, Path]:
    """Per-client private files: scripts, conf, lease/pid files, event log."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / f"{name}.dhcp-events"
    files = {
        "events": events,
        "dhclient_script": workdir / f"{name}.dhclient-script",
        "udhcpc_script": workdir / f"{name}.udhcpc-script",
        "dhclient_conf": workdir / f"{name}.dhclient.conf",
        "leases": workdir / f"{name}.dhclient.leases",
        "pid": workdir / f"{name}.dhcp.pid",
    }
    files["dhclient_script"].write_text(DHCLIENT_SCRIPT.format(events=events))
    files["udhcpc_script"].write_text(UDHCPC_SCRIPT.format(events=events))
    files["dhclient_conf"].write_text(DHCLIENT_CONF.format(timeout=timeout))
    for key in ("dhclient_script", "udhcpc_script"):
        files[key].chmod(0o755)
    return files


def dhclient_argv(ifname: str, files: dict[str, Path], *, oneshot: bool = False,
                  extra: tuple[str, ...] = ()) -> list[str]:
    argv = ["dhclient", "-4", "-d", "-v", "-cf", str(files["dhclient_conf"]),
            "-lf", str(files["leases"]), "-pf", str(files["pid"]),
            "-sf", str(files["dhclient_script"])]
    if oneshot:
        argv.append("-1")
    return [*argv, *extra, ifname]


def udhcpc_argv(ifname: str, files: dict[str, Path], *, broadcast: bool = True,
                oneshot: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    argv = ["busybox", "udhcpc", "-f", "-i", ifname, "-s", str(files["udhcpc_script"]),
            "-p", str(files["pid"]), "-t", "4", "-T", "2", "-A", "2"]
    if broadcast:
        argv.append("-B")
    if oneshot:
        argv += ["-n", "-q"]
    return [*argv, *extra]
