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


#: The domain search list stateless (and stateful) DHCPv6 hands out, for tests to look for.
DHCP6_DOMAIN = "v6.wlbridge.test"


def dnsmasq_argv(ifname: str, addr: str, conf: dict | None, workdir: Path, *,
                 addr6: str | None = None, dhcp6: dict | None = None) -> list[str]:
    """dnsmasq as a foreground DHCP-only server on one interface, state under workdir.

    ``conf``: DHCPv4 (None: none).  ``dhcp6`` with the router's ``addr6``: DHCPv6, "stateful"
    (addresses from its range, and options) or "stateless" (Information-Request answers only);
    both hand out a DNS server (the router's IPv6 address) and the search domain
    `DHCP6_DOMAIN`.  dnsmasq never sends router advertisements here (no --enable-ra, no ra-*
    modes): radvd does (`topologies.ra`).
    """
    argv = [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",  # no DNS service, hence no implicit DNS option
        f"--interface={ifname}",
        "--bind-interfaces",
        f"--dhcp-leasefile={workdir / 'leases'}",
        "--dhcp-authoritative",
        "--log-dhcp",
        f"--log-facility={workdir / 'dnsmasq.log'}",
        f"--pid-file={workdir / 'dnsmasq.pid'}",
    ]
    if conf is not None:
        net = ipaddress.ip_interface(addr).network
        router_ip = str(ipaddress.ip_interface(addr).ip)
        first, last = conf["range"]
        argv += [
            f"--dhcp-range={first},{last},{net.netmask},{int(conf.get('lease_time', 300))}",
            # Empty option 3 = send no router: nothing may ever get a default route from us.
            f"--dhcp-option=3,{router_ip}" if conf.get("router_option") else "--dhcp-option=3",
            f"--dhcp-option=6,{router_ip}" if conf.get("dns_option") else "--dhcp-option=6",
        ]
        if not conf.get("ping_check", False):
            argv.append("--no-ping")
    if dhcp6 is not None:
        if addr6 is None:
            raise ValueError("DHCPv6 needs the router's IPv6 address (addr6)")
        router6 = ipaddress.ip_interface(addr6).ip
        if dhcp6["mode"] == "stateful":
            first, last = dhcp6["range"]
            argv.append(f"--dhcp-range={first},{last},64,{int(dhcp6.get('lease_time', 300))}")
        else:
            # "A static-only subnet with address all zeros ... replies to all
            # Information-request packets on a subnet provided with stateless DHCPv6."
            argv.append("--dhcp-range=::,static")
        argv += [f"--dhcp-option=option6:dns-server,[{router6}]",
                 f"--dhcp-option=option6:domain-search,{DHCP6_DOMAIN}"]
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


DHCLIENT6_SCRIPT = """#!/bin/sh
# dhclient -6 -sf script (wlbridge test tooling): address only, in this namespace.
echo "$reason ${{new_ip6_address:-}} ${{old_ip6_address:-}} dns=${{new_dhcp6_name_servers:-}} \
search=${{new_dhcp6_domain_search:-}}" >> {events}
case "$reason" in
  PREINIT6) ip link set dev "$interface" up ;;
  BOUND6|RENEW6|REBIND6|REBOOT6)
    if [ -n "$old_ip6_address" ] && [ "$old_ip6_address" != "$new_ip6_address" ]; then
      ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface" 2>/dev/null
    fi
    if [ -n "$new_ip6_address" ]; then
      ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" \
        valid_lft "${{new_max_life:-forever}}" preferred_lft "${{new_preferred_life:-forever}}"
    fi
    ;;
  EXPIRE6|RELEASE6|STOP6)
    if [ -n "$old_ip6_address" ]; then
      ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface" 2>/dev/null
    fi
    ;;
esac
exit 0
"""

DHCLIENT6_CONF = """timeout {timeout};
retry 2;
initial-interval 1;
backoff-cutoff 2;
request dhcp6.name-servers, dhcp6.domain-search;
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
        "events6": workdir / f"{name}.dhcp6-events",
        "dhclient6_script": workdir / f"{name}.dhclient6-script",
        "dhclient6_conf": workdir / f"{name}.dhclient6.conf",
        "leases6": workdir / f"{name}.dhclient6.leases",
        "pid6": workdir / f"{name}.dhcp6.pid",
    }
    files["dhclient_script"].write_text(DHCLIENT_SCRIPT.format(events=events))
    files["udhcpc_script"].write_text(UDHCPC_SCRIPT.format(events=events))
    files["dhclient_conf"].write_text(DHCLIENT_CONF.format(timeout=timeout))
    files["dhclient6_script"].write_text(DHCLIENT6_SCRIPT.format(events=files["events6"]))
    files["dhclient6_conf"].write_text(DHCLIENT6_CONF.format(timeout=timeout))
    for key in ("dhclient_script", "udhcpc_script", "dhclient6_script"):
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


def dhclient6_argv(ifname: str, files: dict[str, Path], *, stateless: bool = False,
                   oneshot: bool = False, extra: tuple[str, ...] = ()) -> list[str]:
    """ISC dhclient -6: stateful (IA_NA) or, with ``stateless``, -S (Information-Request)."""
    argv = ["dhclient", "-6", "-d", "-v", "-cf", str(files["dhclient6_conf"]),
            "-lf", str(files["leases6"]), "-pf", str(files["pid6"]),
            "-sf", str(files["dhclient6_script"])]
    if stateless:
        argv.append("-S")
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
