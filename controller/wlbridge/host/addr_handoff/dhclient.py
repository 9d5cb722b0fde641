"""dhclient: the uplink's (ifupdown's, or one run by hand) handed to the bridge, and back.

The same dhclient command line on the bridge: its own script and configuration (with the
bridge in place of the uplink, and patience: it keeps asking for its address until the
controller forwards), pid and lease files under the state directory, daemonised (``-nw``).
Stopped (SIGTERM: no release, no STOP script) on the uplink; at teardown the original
command line is started again with its lease file carrying the bridge's latest lease.
Also the client wlbridge starts on the bridge for NetworkManager (`networkmanager`) and for
``--address-manager dhclient`` where none ran (`client_steps`).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.plan import HandoffRefused, Plan, Step, forever, manual

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

HANDOFF_SUBDIR = "handoff"
# dhclient's patience on the bridge: keep asking for the address (REBOOT state) and never
# fall back to "TIMEOUT"/"FAIL" (Debian's dhclient-script flushes the address then).
PATIENCE = 31536000
# the configuration `dhclient IFACE` reads: the base of the bridge's when no dhclient ran on
# the uplink (NetworkManager, `--address-manager dhclient` alone), so the bridge's client
# asks for what the distribution's asks (Debian: domain-search, MTU, classless routes, NTP)
# and sends the host name
SYSTEM_DHCLIENT_CONF = "/etc/dhcp/dhclient.conf"
SYSTEM_DHCLIENT_SCRIPT = "/sbin/dhclient-script"


def handoff_dir(state_dir: str) -> str:
    return os.path.join(state_dir, HANDOFF_SUBDIR)


def dhclient_files(state_dir: str, bridge: str, family: int) -> dict[str, str]:
    base = os.path.join(handoff_dir(state_dir), f"dhclient{'6' if family == 6 else ''}-{bridge}")
    return {"pidfile": base + ".pid", "leasefile": base + ".leases", "conffile": base + ".conf"}


def bridge_dhclient_argv(cmd: am.DhclientCmd | None, uplink: str, bridge: str,
                         files: dict[str, str], family: int = 4) -> list[str]:
    """The dhclient command line for the bridge: `cmd`'s (its script, options, DUID file)
    with the bridge for the uplink, our pid/lease/conf files, daemonised at once."""
    if cmd is None:
        return ["dhclient", f"-{family}", "-nw", "-pf", files["pidfile"], "-lf",
                files["leasefile"], "-cf", files["conffile"], bridge]
    replace = {"-pf": files["pidfile"], "-lf": files["leasefile"], "-cf": files["conffile"]}
    argv, args, i = [cmd.argv[0]], list(cmd.argv[1:]), 0
    while i < len(args):
        arg = args[i]
        if arg in am.DHCLIENT_VALUE_OPTS:
            value = args[i + 1] if i + 1 < len(args) else ""
            if arg not in replace:
                argv += [arg, value]
            i += 2
            continue
        if arg not in ("-d", "-1", "-nw", "-w", "-n", uplink):
            argv.append(arg)
        i += 1
    for opt, value in replace.items():
        argv += [opt, value]
    return argv + ["-nw", bridge]


def patient_conf(text: str, uplink: str, bridge: str) -> str:
    """`text` (a dhclient.conf) for the bridge: ``interface "UPLINK"`` blocks renamed, and
    told to keep asking for its address (see `PATIENCE`)."""
    text = text.replace(f'interface "{uplink}"', f'interface "{bridge}"')
    return (text.rstrip("\n") + "\n\n# added by wlbridge setup: keep asking for the address "
            "until the bridge forwards\n"
            f"reboot {PATIENCE};\ntimeout {PATIENCE};\n")


def _dhclient_time(ts: float) -> str:
    t = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    return f"{(t.weekday() + 1) % 7} {t:%Y/%m/%d %H:%M:%S}"


def seed_lease(addr: Address, iface: str, now: float) -> str:
    """A dhclient lease for `iface` asking for `addr` (INIT-REBOOT), expiring with it."""
    net = ipaddress.ip_interface(f"{addr.address}/{addr.prefixlen}").network
    left = addr.valid_lft or 0
    lines = [f'  interface "{iface}";', f"  fixed-address {addr.address};",
             f"  option subnet-mask {net.netmask};"]
    if addr.broadcast:
        lines.append(f"  option broadcast-address {addr.broadcast};")
    lines += [f"  renew {_dhclient_time(now + left / 2)};",
              f"  rebind {_dhclient_time(now + left * 7 / 8)};",
              f"  expire {_dhclient_time(now + left)};"]
    return "lease {\n" + "\n".join(lines) + "\n}\n"


def last_lease(text: str, iface: str) -> str | None:
    """The last ``lease { ... }`` block for `iface` in a dhclient lease file, or None."""
    found, depth, start = None, 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = text.rfind("lease", 0, i)
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                block = text[start:i + 1]
                if block.startswith("lease ") and f'interface "{iface}";' in block:
                    found = block
    return found


def no_dns_script(system_script: str = SYSTEM_DHCLIENT_SCRIPT) -> str:
    """A dhclient script that runs the system's without the DNS options (Debian's
    ``make_resolv_conf`` writes /etc/resolv.conf only when the server sent some)."""
    return ("#!/bin/sh\n# wlbridge setup: the host's previous address manager did not run a "
            "DHCP client, so\n# this one leaves /etc/resolv.conf alone: the system's script "
            "without DNS options\nunset new_domain_name_servers new_domain_name "
            "new_domain_search new_dhcp6_name_servers \\\n  new_dhcp6_domain_search\n"
            f"exec {system_script} \"$@\"\n")


def client_steps(plan: Plan, cmd: am.DhclientCmd | None, family: int, state_dir: str,
                 dyn4: Sequence[Address], now: float,
                 dns: bool = True) -> tuple[list[Step], Step, Step]:
    """(prepare steps, start step, stop step) of one dhclient on the bridge; `dns` False:
    it does not write /etc/resolv.conf (`no_dns_script`)."""
    files = dhclient_files(state_dir, plan.bridge, family)
    argv = bridge_dhclient_argv(cmd, plan.uplink, plan.bridge, files, family)
    if cmd is None and family == 4 and plan.default_metric:
        # Debian's dhclient-script adds the default route with metric IF_METRIC (else 0):
        # the same metric as the moved route's replaces it rather than adding a second one
        argv[-1:-1] = ["-e", f"IF_METRIC={plan.default_metric}"]
    prep = []
    if not dns and cmd is None:
        script = files["pidfile"][:-len(".pid")] + ".script"
        argv[-1:-1] = ["-sf", script]
        prep.append(Step("write", f"{script}: the system's dhclient script without DNS "
                         "(the previous manager did not write /etc/resolv.conf)",
                         {"path": script, "text": no_dns_script(), "mode": 0o755}))
    prep += [Step("conf", f"dhclient configuration for {plan.bridge}: {files['conffile']}",
                  {"src": cmd.conffile if cmd else SYSTEM_DHCLIENT_CONF,
                   "path": files["conffile"],
                   "uplink": plan.uplink, "bridge": plan.bridge})]
    if family == 4 and dyn4:
        prep.append(Step("write", f"lease file {files['leasefile']} asking for {dyn4[0]}",
                         {"path": files["leasefile"],
                          "text": seed_lease(dyn4[0], plan.bridge, now)}))
    elif family == 6 and cmd is not None:
        prep.append(Step("copy-leases", f"DHCPv6 leases of {plan.uplink} for {plan.bridge}",
                         {"src": cmd.leasefile, "path": files["leasefile"],
                          "uplink": plan.uplink, "bridge": plan.bridge}))
    start = Step("start", f"dhclient -{family} on {plan.bridge}: {shlex.join(argv)}",
                 {"argv": argv, "pidfile": files["pidfile"]})
    stop = Step("stop", f"dhclient -{family} on {plan.bridge} stopped",
                {"argv": argv, "pidfile": files["pidfile"], "pid": 0})
    if family == 4:
        plan.lease_file = files["leasefile"]
    return prep, start, stop


def dhclient_plan(plan: Plan, det: am.Detection, state_dir: str, dyn4: Sequence[Address],
                  sysctls: list[Step], now: float) -> Plan:
    cmds = [c for c in det.dhclients if c.interfaces == (plan.uplink,)]
    if not cmds and det.dhclients:
        raise HandoffRefused(det.problem or "dhclient manages more than the uplink",
                             manual(plan.uplink, plan.bridge))
    if any(c.foreground for c in cmds):
        raise HandoffRefused(det.problem or "dhclient runs in the foreground (-d)",
                             manual(plan.uplink, plan.bridge))
    families = sorted({c.family for c in cmds}) or [4]
    plan.manager = f"dhclient on {plan.bridge} (started by wlbridge setup)"
    setup: list[Step] = []
    lifted = [a for a in det.dynamic if a.family == 4 or (6 in families and a.family == 6
                                                          and not a.flags & 0x100)]
    setup += forever(plan.bridge, lifted, "its DHCP client")
    setup += sysctls
    starts, stops = [], []
    for family in families:
        cmd = next((c for c in cmds if c.family == family), None)
        # no dhclient ran (--address-manager dhclient forced): nothing wrote DNS before
        prep, start, stop = client_steps(plan, cmd, family, state_dir, dyn4, now,
                                         dns=bool(cmds))
        setup += prep
        starts.append(start)
        stops.append(stop)
    for cmd in cmds:     # stop the uplink's clients only once ours are prepared
        setup.append(Step("stop", f"dhclient PID {cmd.pid} on {plan.uplink} stopped (SIGTERM: "
                          "no release)", {"argv": list(cmd.argv), "pidfile": cmd.pidfile,
                                          "pid": cmd.pid}))
    plan.setup = setup + starts
    plan.teardown_before = stops + forever(plan.bridge, lifted, "its DHCP client")
    after = []
    for cmd in cmds:
        if cmd.family == 4:
            after.append(Step("lease-back", f"{plan.bridge}'s lease appended to "
                              f"{cmd.leasefile}", {"src": plan.lease_file,
                                                   "path": cmd.leasefile,
                                                   "from": plan.bridge, "to": plan.uplink}))
        after.append(Step("respawn", f"dhclient on {plan.uplink} started again: "
                          f"{shlex.join(cmd.argv)}", {"argv": list(cmd.argv)}))
    plan.teardown_after = after
    if not cmds:
        plan.notes.append(f"no dhclient ran on {plan.uplink}; wlbridge's dhclient manages "
                          f"{plan.bridge} and teardown starts none on {plan.uplink}")
    return plan
