"""Hand the host's address management from the uplink to the bridge's internal port, and back.

`make_plan` is pure: from what `addr_manager.detect` found, the chosen mode and the uplink's
addresses it computes a `Plan` -- steps for setup, steps for teardown (before the addresses
move back, and after the bridge is gone) -- or refuses (`HandoffRefused`: one line, and the
commands to do it by hand).  The plan is saved in the bridge's ``external_ids:wlbridge-handoff``
(`HANDOFF_KEY`) in the transaction that creates the bridge, so teardown gives management back
from the bridge alone, also after a crash.  `execute` runs steps through `HostOps`; when a step
fails it undoes the ones done, in reverse, and raises `HandoffError`.

Modes (``wlbridge setup --address-manager``):

* ``auto`` (default): detect, hand off as below, refuse when that is not safe;
* ``keep``: today's behaviour before hand-off existed: addresses and routes move, nothing else;
* ``static``, ``dhclient``, ``dhcpcd``, ``networkmanager``, ``networkd``: do the hand-off for
  that manager, whatever detection says (``dhclient`` with no dhclient found: wlbridge only
  starts its own dhclient on the bridge).

Who manages the bridge's addresses afterwards:

* dhclient (ifupdown, or by hand) -> the same dhclient command line on the bridge: its own
  script and configuration (with the bridge in place of the uplink, and patience: it keeps
  asking for its address until the controller forwards), pid and lease files under the state
  directory, daemonised (``-nw``).  Stopped (SIGTERM: no release, no STOP script) on the
  uplink; at teardown the original command line is started again with its lease file
  carrying the bridge's latest lease.
* dhcpcd, one instance for the uplink -> the uplink's stopped (``-x``) before the addresses
  move (a running dhcpcd puts an address taken from its interface back at once), then an
  instance on the bridge asked for the current address (``-r``); its resolv.conf hook off
  (``-C resolv.conf``) unless the uplink's wrote /etc/resolv.conf.  A dhcpcd manager (all
  interfaces) is refused (see `_dhcpcd_plan`).
* NetworkManager -> stops its IP configuration of the uplink for this activation only
  (``nmcli device modify``, not persistent), leaves the bridge unmanaged, and the bridge gets
  wlbridge's dhclient; teardown reapplies the connection.
* systemd-networkd -> runtime ``.network`` files in /run/systemd/network, named to sort before
  the uplink's own: the uplink without IP configuration, the bridge with the uplink's own
  ``.network`` file (plus what `networkd_bridge_text` adds: keep the moved address, the same
  client identifier, no release at teardown); removed at teardown.
* nobody (static) -> nothing to hand over; addresses move with setup and stay.

Why a daemon and not `wlbridge run`: the host must stay on the LAN whether or not the
controller runs (the flows stay in the switch), so its DHCP client cannot live in the
controller.  Setup starts it and records its pid file; teardown (or a failing setup) stops it.
A leased address moved to the bridge gets an unlimited lifetime until its client renews it
there (the client's first renewal sets the lease time again): before the controller first
runs the bridge forwards nothing, and the address must not expire meanwhile.
Every hand-off also copies the uplink's IPv6 RA sysctls (accept_ra, autoconf, ...) to the
bridge, so SLAAC addresses and the default route from router advertisements keep working.
(Turning RAs off on the uplink, and back on at teardown, is setup's in every mode, ``keep``
included: `SavedState.uplink_ra` in `wlbridge.host.hostnet`.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from wlbridge.host import addr_manager as am

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

HANDOFF_KEY = "wlbridge-handoff"
PLAN_VERSION = 1
MODES = ("auto", "keep", am.STATIC, am.DHCLIENT, am.DHCPCD, am.NETWORKMANAGER, am.NETWORKD)
DEFAULT_STATE_DIR = "/var/lib/wlbridge"
HANDOFF_SUBDIR = "handoff"
# dhclient's patience on the bridge: keep asking for the address (REBOOT state) and never
# fall back to "TIMEOUT"/"FAIL" (Debian's dhclient-script flushes the address then).
PATIENCE = 31536000
STOP_TIMEOUT = 5.0
START_TIMEOUT = 5.0
# the configuration `dhclient IFACE` reads: the base of the bridge's when no dhclient ran on
# the uplink (NetworkManager, `--address-manager dhclient` alone), so the bridge's client
# asks for what the distribution's asks (Debian: domain-search, MTU, classless routes, NTP)
# and sends the host name
SYSTEM_DHCLIENT_CONF = "/etc/dhcp/dhclient.conf"
NETWORKD_DIR = "/run/systemd/network"
NETWORKD_PREFIX = "00-wlbridge-"     # sorts before the usual 10-.., 20-.. and 80-.. files
SYSTEM_DHCLIENT_SCRIPT = "/sbin/dhclient-script"
DHCPCD_NOT_RUNNING = "not running"     # `dhcpcd -x IFACE`'s error when no instance runs


class HandoffRefused(Exception):
    """A hand-off that is not safe: `reason` (one line) and `manual` (commands)."""

    def __init__(self, reason: str, manual: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.manual = list(manual)

    def one_line(self) -> str:
        hint = "; ".join(self.manual)
        return (f"{self.reason}; to do it by hand: {hint}" if hint else self.reason)


class HandoffError(Exception):
    """A step failed; the steps done before it were undone (see `undo_errors`)."""

    def __init__(self, message: str, undo_errors: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.undo_errors = list(undo_errors)


@dataclass(frozen=True)
class Step:
    kind: str                  # see HostOps.do_<kind> / undo_<kind>
    text: str                  # one human line
    data: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Plan:
    mode: str                  # the mode that produced it (after "auto" resolved)
    original: str              # who managed the uplink (addr_manager.MANAGERS / unknown)
    detail: str                # addr_manager.Detection.detail
    manager: str               # who manages the host's address afterwards (for status)
    uplink: str
    bridge: str
    setup: list[Step] = field(default_factory=list)
    before_move: list[Step] = field(default_factory=list)   # setup, before addresses move
    teardown_before: list[Step] = field(default_factory=list)   # addresses still on bridge
    teardown_after: list[Step] = field(default_factory=list)    # bridge gone
    notes: list[str] = field(default_factory=list)
    lease_file: str | None = None      # the bridge client's lease file (status)
    default_metric: int | None = None  # the uplink's IPv4 default route's metric (moved)
    version: int = PLAN_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            data = json.loads(text)
            if data.get("version") != PLAN_VERSION:
                raise ValueError(f"unsupported hand-off record version {data.get('version')!r}")
            steps = {k: [Step(**s) for s in data.pop(k, [])]
                     for k in ("setup", "before_move", "teardown_before", "teardown_after")}
            return cls(**data, **steps)
        except (AttributeError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"invalid hand-off record: {exc}") from exc


# ---- pure helpers -------------------------------------------------------------
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


def _sysctl_steps(uplink_sysctls: dict[str, str], bridge: str) -> list[Step]:
    """One step copying the uplink's IPv6 RA settings to the bridge (none if unreadable)."""
    values = {n: uplink_sysctls[n] for n in am.IPV6_SYSCTLS if n in uplink_sysctls}
    if not values:
        return []
    text = " ".join(f"{n}={v}" for n, v in values.items())
    return [Step("sysctl", f"IPv6 RA settings copied to {bridge}: {text}",
                 {"paths": {f"/proc/sys/net/ipv6/conf/{bridge}/{n}": v
                            for n, v in values.items()}})]


def _forever(iface: str, addrs: Sequence[Address], why: str) -> list[Step]:
    if not addrs:
        return []
    return [Step("forever", f"{', '.join(map(str, addrs))} on {iface}: no expiry until "
                 f"{why} renews it", {"iface": iface, "addresses": [asdict(a) for a in addrs]})]


def _manual(uplink: str, bridge: str) -> list[str]:
    return [(f"stop the DHCP client on {uplink} (e.g. `kill $(cat PIDFILE)` for dhclient, "
             f"`nmcli device modify {uplink} ipv4.method disabled`)"),
            f"start one on {bridge} (`dhclient {bridge}`)",
            "see docs/troubleshooting.md"]


def make_plan(mode: str, det: am.Detection, uplink: str, bridge: str, state_dir: str,
              addresses: Sequence[Address], uplink_sysctls: dict[str, str],
              now: float, default_metric: int | None = None) -> Plan:
    """The hand-off for `mode` given detection `det`; HandoffRefused when not safe.
    `default_metric`: the metric of the uplink's IPv4 default route (it moves to the bridge
    with the addresses; a DHCP client wlbridge starts there adds its own with this metric,
    so that it replaces the moved one instead of standing beside it)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if mode == "keep":
        return Plan("keep", det.manager, det.detail, f"{det.manager} (not handed off: keep)",
                    uplink, bridge, notes=["--address-manager keep: the addresses moved; "
                                           "whoever managed them still watches " + uplink])
    if mode == "auto":
        if det.problem:
            raise HandoffRefused(f"cannot hand {uplink}'s addresses over safely: "
                                 f"{det.problem}", _manual(uplink, bridge))
        if det.manager == am.UNKNOWN:
            raise HandoffRefused(f"cannot tell who manages {uplink}'s addresses",
                                 _manual(uplink, bridge))
        mode = det.manager
    sysctls = _sysctl_steps(uplink_sysctls, bridge)
    dyn4 = [a for a in det.dynamic if a.family == 4]
    if len(dyn4) > 1 and mode != am.STATIC:
        raise HandoffRefused(f"{uplink} has {len(dyn4)} leased IPv4 addresses "
                             f"({', '.join(map(str, dyn4))}); a DHCP client keeps one",
                             _manual(uplink, bridge))
    plan = Plan(mode, det.manager, det.detail, "", uplink, bridge)
    if mode == am.STATIC:
        plan.manager = "static (nobody renews)"
        plan.setup = sysctls
        if dyn4:
            plan.notes.append(f"{dyn4[0]} has a lease lifetime but --address-manager static: "
                              "nobody renews it, it expires")
        return plan
    plan.default_metric = default_metric
    if mode == am.DHCLIENT:
        return _dhclient_plan(plan, det, state_dir, dyn4, sysctls, now)
    if mode == am.DHCPCD:
        return _dhcpcd_plan(plan, det, dyn4, sysctls)
    if mode == am.NETWORKMANAGER:
        return _nm_plan(plan, det, state_dir, dyn4, sysctls, now)
    return _networkd_plan(plan, det, dyn4, sysctls)


def no_dns_script(system_script: str = SYSTEM_DHCLIENT_SCRIPT) -> str:
    """A dhclient script that runs the system's without the DNS options (Debian's
    ``make_resolv_conf`` writes /etc/resolv.conf only when the server sent some)."""
    return ("#!/bin/sh\n# wlbridge setup: the host's previous address manager did not run a "
            "DHCP client, so\n# this one leaves /etc/resolv.conf alone: the system's script "
            "without DNS options\nunset new_domain_name_servers new_domain_name "
            "new_domain_search new_dhcp6_name_servers \\\n  new_dhcp6_domain_search\n"
            f"exec {system_script} \"$@\"\n")


def _client_steps(plan: Plan, cmd: am.DhclientCmd | None, family: int, state_dir: str,
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


def _dhclient_plan(plan: Plan, det: am.Detection, state_dir: str, dyn4: Sequence[Address],
                   sysctls: list[Step], now: float) -> Plan:
    cmds = [c for c in det.dhclients if c.interfaces == (plan.uplink,)]
    if not cmds and det.dhclients:
        raise HandoffRefused(det.problem or "dhclient manages more than the uplink",
                             _manual(plan.uplink, plan.bridge))
    if any(c.foreground for c in cmds):
        raise HandoffRefused(det.problem or "dhclient runs in the foreground (-d)",
                             _manual(plan.uplink, plan.bridge))
    families = sorted({c.family for c in cmds}) or [4]
    plan.manager = f"dhclient on {plan.bridge} (started by wlbridge setup)"
    setup: list[Step] = []
    lifted = [a for a in det.dynamic if a.family == 4 or (6 in families and a.family == 6
                                                          and not a.flags & 0x100)]
    setup += _forever(plan.bridge, lifted, "its DHCP client")
    setup += sysctls
    starts, stops = [], []
    for family in families:
        cmd = next((c for c in cmds if c.family == family), None)
        # no dhclient ran (--address-manager dhclient forced): nothing wrote DNS before
        prep, start, stop = _client_steps(plan, cmd, family, state_dir, dyn4, now,
                                          dns=bool(cmds))
        setup += prep
        starts.append(start)
        stops.append(stop)
    for cmd in cmds:     # stop the uplink's clients only once ours are prepared
        setup.append(Step("stop", f"dhclient PID {cmd.pid} on {plan.uplink} stopped (SIGTERM: "
                          "no release)", {"argv": list(cmd.argv), "pidfile": cmd.pidfile,
                                          "pid": cmd.pid}))
    plan.setup = setup + starts
    plan.teardown_before = stops + _forever(plan.bridge, lifted, "its DHCP client")
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


def _dhcpcd_plan(plan: Plan, det: am.Detection, dyn4: Sequence[Address],
                 sysctls: list[Step]) -> Plan:
    """A per-interface dhcpcd instance only: stopped through its own control socket, a new
    one started on the bridge (default configuration: dhcpcd's command line cannot be read
    back, it rewrites its process title).  A dhcpcd manager is refused: its control commands
    for one interface (``dhcpcd -n IFACE``) replace the manager's options with the command's
    own, seen here to turn a manager limited to some interfaces into one managing every
    interface of the host."""
    d = det.dhcpcd
    up, br = plan.uplink, plan.bridge
    if d is None:
        raise HandoffRefused(f"--address-manager dhcpcd: no dhcpcd manages {up}",
                             _manual(up, br))
    if not d.interfaces:
        raise HandoffRefused(
            f"dhcpcd (PID {d.pid}) manages every interface and cannot be told to move one "
            f"without replacing its options; not handed over automatically",
            ["run setup with --address-manager keep", (
                f"then add `denyinterfaces {up}` to /etc/dhcpcd.conf and restart dhcpcd: it "
                f"manages {br} by itself (if its allowinterfaces let it)")])
    fam = [] if d.families == (4, 6) else [f"-{d.families[0]}"]
    request = ["-r", dyn4[0].address] if dyn4 else []
    # the bridge's instance writes /etc/resolv.conf only if the uplink's did
    nohook = [] if det.writes_dns else ["-C", "resolv.conf"]
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.manager = f"dhcpcd on {br}"
    stop_up = ["dhcpcd", *fam, "-x", up]
    stop_br = ["dhcpcd", *fam, "-x", br]
    start = ["dhcpcd", *fam, "-b", *nohook, *request, br]
    restart = ["dhcpcd", *fam, "-b", *nohook, *request, up]
    # stopped before the addresses move: dhcpcd puts an address removed from its interface
    # back at once (seen: setup's route move then failed, "Network is unreachable")
    plan.before_move = [Step("command", f"dhcpcd stops managing {up}: {shlex.join(stop_up)}",
                             {"argv": stop_up, "undo": restart})]
    plan.setup = (_forever(br, lifted, "dhcpcd") + sysctls + [
        Step("command", f"dhcpcd manages {br}: {shlex.join(start)}",
             {"argv": start, "undo": stop_br, "done_if": DHCPCD_NOT_RUNNING})])
    plan.teardown_before = [Step("command", f"dhcpcd stops managing {br}: "
                                 f"{shlex.join(stop_br)}",
                                 {"argv": stop_br, "undo": start,
                                  "done_if": DHCPCD_NOT_RUNNING})]
    plan.teardown_before += _forever(br, lifted, "dhcpcd")
    plan.teardown_after = [Step("command", f"dhcpcd manages {up} again: {shlex.join(restart)}",
                                {"argv": restart, "undo": None})]
    plan.notes.append("dhcpcd's own command line cannot be read back (it rewrites its process "
                      "title): the instances wlbridge starts read dhcpcd's default "
                      "configuration file (/etc/dhcpcd.conf)")
    if not det.writes_dns:
        plan.notes.append("the uplink's dhcpcd did not write /etc/resolv.conf: the bridge's "
                          "runs without its resolv.conf hook (-C resolv.conf)")
    return plan


def nm_kernel_ra(sysctls: list[Step], bridge: str) -> list[Step]:
    """`sysctls` with ``accept_ra`` 1 on the bridge: NetworkManager with ``ipv6.method auto``
    processes router advertisements in user space and sets the uplink's ``accept_ra`` to 0
    (seen with 1.42), so the copied value would leave nobody renewing the SLAAC addresses
    and the IPv6 default route on the bridge."""
    path = f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra"
    if sysctls:
        paths = {**sysctls[0].data["paths"], path: "1"}
    else:
        paths = {path: "1"}
    text = " ".join(f"{p.rsplit('/', 1)[1]}={v}" for p, v in paths.items())
    return [Step("sysctl", f"IPv6 RA settings for {bridge} (NetworkManager did RAs on the "
                 f"uplink itself): {text}", {"paths": paths})]


def nm_modify_argv(uplink: str) -> list[str]:
    """`nmcli device modify`: no IP configuration on the uplink for this activation.
    The profile's manual addresses, gateway and routes go too: NetworkManager 1.42 adds a
    profile's manual routes again with ``ipv4.method disabled`` (seen: the route moved to the
    bridge came back on the uplink at the modify), and refuses manual addresses with it (a
    static profile)."""
    argv = ["nmcli", "device", "modify", uplink, "ipv4.method", "disabled"]
    for prop in ("addresses", "gateway", "routes"):
        argv += [f"ipv4.{prop}", ""]
    argv += ["ipv6.method", "ignore"]
    for prop in ("addresses", "gateway", "routes"):
        argv += [f"ipv6.{prop}", ""]
    return argv


def _nm_plan(plan: Plan, det: am.Detection, state_dir: str, dyn4: Sequence[Address],
             sysctls: list[Step], now: float) -> Plan:
    up, br = plan.uplink, plan.bridge
    plan.manager = f"dhclient on {br} (started by wlbridge setup; NetworkManager keeps Wi-Fi)"
    if det.nm_ipv6_method == "auto":
        sysctls = nm_kernel_ra(sysctls, br)
        plan.notes.append(f"NetworkManager handled {up}'s router advertisements itself "
                          f"(accept_ra 0 there); the kernel accepts them on {br}")
    elif det.nm_ipv6_method not in (None, "ignore", "disabled", "link-local"):
        plan.notes.append(f"NetworkManager's ipv6.method {det.nm_ipv6_method} on {up} is not "
                          f"handed over: only IPv4 (DHCP) and router advertisements are "
                          f"managed on {br}")
    prep, start, stop = _client_steps(plan, None, 4, state_dir, dyn4, now)
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.setup = _forever(br, lifted, "its DHCP client") + sysctls + [
        Step("command", f"NetworkManager leaves {br} alone",
             {"argv": ["nmcli", "device", "set", br, "managed", "no"], "undo": None}),
        Step("command", f"NetworkManager stops configuring addresses and routes on {up} "
             "(this activation only)",
             {"argv": nm_modify_argv(up), "undo": ["nmcli", "device", "reapply", up]}),
        *prep, start]
    plan.teardown_before = [stop] + _forever(br, lifted, "its DHCP client")
    plan.teardown_after = [Step("command", f"NetworkManager configures {up} again "
                                f"(connection {det.nm_connection})",
                                {"argv": ["nmcli", "device", "reapply", up], "undo": None})]
    return plan


def networkd_files(uplink: str, bridge: str, original: str | None = None) -> tuple[str, str]:
    """The runtime .network files for the uplink and the bridge.  systemd-networkd applies
    the first file (by name, whatever its directory) matching a link, so ours must sort
    before the uplink's `original` file; ValueError if they would not."""
    files = (os.path.join(NETWORKD_DIR, f"{NETWORKD_PREFIX}{uplink}.network"),
             os.path.join(NETWORKD_DIR, f"{NETWORKD_PREFIX}{bridge}.network"))
    if original is not None:
        name = os.path.basename(original)
        late = [f for f in files if os.path.basename(f) >= name]
        if late:
            raise ValueError(f"{os.path.basename(late[0])} would not sort before {name}")
    return files


def networkd_uplink_text(uplink: str) -> str:
    return ("# wlbridge setup: the uplink is an Open vSwitch port; its addresses live on the "
            "bridge\n[Match]\nName=" + uplink + "\n\n[Network]\nDHCP=no\nIPv6AcceptRA=no\n"
            "LinkLocalAddressing=no\nKeepConfiguration=yes\n")


def _assigned(text: str, section: str, key: str) -> str | None:
    """The last ``KEY=value`` of `section` in a .network file (None when not set)."""
    found, current = None, ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.lower()
        elif current == f"[{section.lower()}]" and "=" in stripped \
                and not stripped.startswith(("#", ";")):
            name, value = stripped.split("=", 1)
            if name.strip() == key:
                found = value.strip()
    return found


def networkd_bridge_text(original: str, bridge: str, iaid: int | None = None) -> str:
    """The uplink's .network file for the bridge: its [Match] section replaced, and

    * ``KeepConfiguration=static`` (unless the file sets it): systemd-networkd removes the
      addresses it did not configure from a link it starts managing, the host's address
      moved there included -- and before the controller runs the bridge forwards no DHCP, so
      the host would be without its address until then (seen with systemd 252);
    * ``IAID=`` the uplink's (`iaid`, from its lease's client identifier), unless the file
      sets IAID= or ClientIdentifier=mac: networkd derives the IAID from the interface's
      persistent name (udev's ID_NET_NAME_*, e.g. a PCI Wi-Fi's) or else its MAC, so the
      bridge (virtual: no such name) would send another client identifier, and a server
      keying leases on it (dnsmasq, ISC dhcpd) would offer another address;
    * ``SendRelease=no``: at teardown networkd stops the bridge's client just before the
      uplink's asks for the same lease again; a release (networkd's default) would free it
      in between (seen with systemd 252)."""
    head = f"# wlbridge setup: copied from the uplink's .network file\n[Match]\nName={bridge}\n"
    out, skip = [head], False
    for line in original.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            skip = stripped.lower() == "[match]"
            if skip:
                continue
        if not skip:
            out.append(line + "\n")
    added = []
    if _assigned(original, "Network", "KeepConfiguration") is None:
        added.append("\n[Network]\nKeepConfiguration=static\n")
    dhcp4 = "SendRelease=no\n"
    if iaid is not None and _assigned(original, "DHCPv4", "IAID") is None \
            and _assigned(original, "DHCPv4", "ClientIdentifier") != "mac":
        dhcp4 += f"IAID={iaid}\n"
    added.append("\n[DHCPv4]\n" + dhcp4)
    out.append("\n# added by wlbridge setup (see wlbridge.host.addr_handoff)" + "".join(added))
    return "".join(out)


def _networkd_plan(plan: Plan, det: am.Detection, dyn4: Sequence[Address],
                   sysctls: list[Step]) -> Plan:
    up, br = plan.uplink, plan.bridge
    if not det.networkd_file:
        raise HandoffRefused(f"--address-manager networkd: systemd-networkd does not "
                             f"configure {up}", _manual(up, br))
    try:
        up_file, br_file = networkd_files(up, br, det.networkd_file)
    except ValueError as exc:
        raise HandoffRefused(f"systemd-networkd applies the first matching .network file by "
                             f"name, and {exc}: rename {det.networkd_file} (e.g. to "
                             f"10-{up}.network)", _manual(up, br)) from exc
    reload_ = ["networkctl", "reload"]
    lifted = [a for a in det.dynamic if a.family == 4]
    plan.manager = f"systemd-networkd on {br}"
    plan.setup = _forever(br, lifted, "systemd-networkd") + sysctls + [
        Step("command", "(systemd-networkd reloaded if this is undone)",
             {"argv": None, "undo": reload_}),
        Step("write", f"{up_file}: no IP configuration on {up}",
             {"path": up_file, "text": networkd_uplink_text(up)}),
        Step("networkd-copy", f"{br_file}: {det.networkd_file} for {br}",
             {"src": det.networkd_file, "path": br_file, "bridge": br,
              "iaid": det.networkd_iaid}),
        Step("command", "systemd-networkd reloaded",
             {"argv": reload_, "undo": None})]
    plan.teardown_before = [Step("remove", f"{br_file} removed", {"path": br_file}),
                            Step("command", "systemd-networkd reloaded",
                                 {"argv": reload_, "undo": None})]
    plan.teardown_before += _forever(br, lifted, "systemd-networkd")
    plan.teardown_after = [Step("remove", f"{up_file} removed", {"path": up_file}),
                           Step("command", "systemd-networkd reloaded",
                                {"argv": reload_, "undo": None}),
                           Step("command", f"systemd-networkd configures {up} again",
                                {"argv": ["networkctl", "reconfigure", up], "undo": None})]
    if det.networkd_iaid is None:
        plan.notes.append(f"systemd-networkd derives its DHCP client identity per interface and "
                          f"{up}'s was not found (no DHCPv4 lease file): a server keying "
                          f"leases on it may offer {br} another address")
    plan.notes.append(f"systemd-networkd releases {up}'s lease when it stops managing it, "
                      f"unless {det.networkd_file} sets SendRelease=no; {br} then asks for a "
                      "lease with the same client identity")
    return plan


# ---- executing ----------------------------------------------------------------
def missing_clients(plan: Plan, ops: HostOps) -> list[Step]:
    """The plan's client starts whose client no longer runs (setup run again restarts them)."""
    return [s for s in plan.setup
            if s.kind == "start" and ops.find(s.data["argv"], s.data["pidfile"]) is None]


def execute(steps: Sequence[Step], ops: HostOps, out: Callable[[str], None]) -> None:
    """Run `steps`; on a failure undo the done ones in reverse and raise HandoffError."""
    done: list[Step] = []
    for step in steps:
        try:
            ops.do(step)
        except Exception as exc:  # any failure means: roll back
            errors = []
            for prev in reversed(done):
                try:
                    ops.undo(prev)
                except Exception as uexc:  # noqa: BLE001
                    errors.append(f"undoing '{prev.text}': {uexc}")
            raise HandoffError(f"{step.text}: {exc}", errors) from exc
        done.append(step)
        if step.kind not in ("command",) or step.data.get("argv"):
            out(step.text)


class HostOps:
    """Runs steps on the host (processes, files, sysctls, commands, address lifetimes)."""

    def __init__(self, net: Any = None, now: Callable[[], float] = time.time) -> None:
        self.net = net          # a hostnet.HostNet, for "forever"
        self.now = now

    def do(self, step: Step) -> None:
        getattr(self, "do_" + step.kind.replace("-", "_"))(**step.data)

    def undo(self, step: Step) -> None:
        fn = getattr(self, "undo_" + step.kind.replace("-", "_"), None)
        if fn is not None:
            fn(**step.data)

    # processes
    @staticmethod
    def cmdline(pid: int) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        return [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")] if raw \
            else None

    @staticmethod
    def read_pid(pidfile: str | None) -> int | None:
        if not pidfile:
            return None
        try:
            with open(pidfile) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def find(self, argv: Sequence[str], pidfile: str | None, pid: int = 0) -> int | None:
        """The live process running exactly `argv` (from its pid file, else `pid`)."""
        for candidate in (self.read_pid(pidfile), pid):
            if candidate and self.cmdline(candidate) == list(argv):
                return candidate
        return None

    def do_stop(self, argv: list[str], pidfile: str | None, pid: int = 0) -> None:
        found = self.find(argv, pidfile, pid)
        if found is None:
            return          # already gone
        os.kill(found, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.cmdline(found) == list(argv):
            if time.monotonic() > deadline:
                os.kill(found, signal.SIGKILL)
                break
            time.sleep(0.05)

    def undo_stop(self, argv: list[str], pidfile: str | None, pid: int = 0) -> None:
        if self.find(argv, pidfile, 0) is None:
            self.spawn(argv)

    @staticmethod
    def spawn(argv: Sequence[str]) -> int:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, close_fds=True)
        return proc.pid

    def do_rebind(self, iface: str) -> None:
        """Tell the dhcpcd instance of `iface` alone (found by its process title, ``dhcpcd:
        IFACE [ip4]``) to rebind at once: SIGHUP, what ``dhcpcd -n IFACE`` sends it (seen:
        RECONFIGURE, then a RENEW of its address).  Signalled directly: ``dhcpcd -n IFACE``
        may reach a dhcpcd manager's control socket instead, and a
        manager replaces its options with the command's."""
        found = [d.pid for d in (am.parse_dhcpcd(p) for p in am.read_processes())
                 if d is not None and d.interfaces == (iface,)]
        if not found:
            raise RuntimeError(f"no dhcpcd instance runs on {iface}")
        for pid in found:
            os.kill(pid, signal.SIGHUP)

    def do_start(self, argv: list[str], pidfile: str) -> None:
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        if self.find(argv, pidfile) is not None:
            return          # already running (setup run again)
        self.spawn(argv)
        deadline = time.monotonic() + START_TIMEOUT
        while self.find(argv, pidfile) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start (no live process in {pidfile})")
            time.sleep(0.05)

    def undo_start(self, argv: list[str], pidfile: str) -> None:
        self.do_stop(argv, pidfile)

    def do_respawn(self, argv: list[str]) -> None:
        if not any(p.argv == tuple(argv) for p in am.read_processes()):
            self.spawn(argv)    # not twice: teardown may be run again

    # files
    @staticmethod
    def do_write(path: str, text: str, mode: int | None = None) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)

    @staticmethod
    def undo_write(path: str, text: str, mode: int | None = None) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def do_remove(self, path: str) -> None:
        try:
            with open(path) as f:
                self._removed = (path, f.read())
            os.unlink(path)
        except FileNotFoundError:
            self._removed = None

    def undo_remove(self, path: str) -> None:
        saved = getattr(self, "_removed", None)
        if saved and saved[0] == path:
            self.do_write(path, saved[1])

    @staticmethod
    def _read(path: str | None) -> str:
        if not path:
            return ""
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def do_conf(self, src: str | None, path: str, uplink: str, bridge: str) -> None:
        self.do_write(path, patient_conf(self._read(src), uplink, bridge))

    def undo_conf(self, src: str | None, path: str, uplink: str, bridge: str) -> None:
        self.undo_write(path, "")

    def do_copy_leases(self, src: str, path: str, uplink: str, bridge: str) -> None:
        text = self._read(src).replace(f'interface "{uplink}"', f'interface "{bridge}"')
        self.do_write(path, text)

    def undo_copy_leases(self, src: str, path: str, uplink: str, bridge: str) -> None:
        self.undo_write(path, "")

    def do_lease_back(self, src: str | None, path: str, **names: str) -> None:
        block = last_lease(self._read(src), names["from"])
        if block is None:
            return          # nothing to carry back: the client asks for its own last lease
        block = block.replace(f'interface "{names["from"]}"', f'interface "{names["to"]}"')
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a") as f:
            f.write("\n" + block + "\n")

    def do_networkd_copy(self, src: str, path: str, bridge: str,
                         iaid: int | None = None) -> None:
        with open(src) as f:
            self.do_write(path, networkd_bridge_text(f.read(), bridge, iaid))

    def undo_networkd_copy(self, src: str, path: str, bridge: str,
                           iaid: int | None = None) -> None:
        self.undo_write(path, "")

    # sysctls and commands
    def do_sysctl(self, paths: dict[str, str]) -> None:
        for path, value in paths.items():
            with open(path, "w") as f:
                f.write(value)

    @staticmethod
    def run(argv: Sequence[str]) -> None:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=30,
                             check=False)
        if res.returncode != 0:
            err = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
            raise RuntimeError(f"`{shlex.join(argv)}` failed: {err}")

    def do_command(self, argv: list[str] | None, undo: list[str] | None,
                   done_if: str | None = None) -> None:
        if argv:
            self._run_unless(argv, done_if)

    def undo_command(self, argv: list[str] | None, undo: list[str] | None,
                     done_if: str | None = None) -> None:
        if undo:
            self._run_unless(undo, done_if)

    def _run_unless(self, argv: Sequence[str], done_if: str | None) -> None:
        """`run`, except that a failure saying `done_if` (e.g. a client to stop is not
        running) is what was wanted."""
        try:
            self.run(argv)
        except RuntimeError as exc:
            if not done_if or done_if not in str(exc) or "-x" not in argv:   # stops only
                raise

    # address lifetimes
    def do_forever(self, iface: str, addresses: list[dict[str, Any]]) -> None:
        from wlbridge.host.hostnet import Address, address_kwargs

        index = self.net.link_index(iface)
        if index is None:
            return          # gone (e.g. the internal port after an OVS restart): nothing to do
        present = {a.key() for a in self.net.addresses(iface)}
        for data in addresses:
            addr = Address(**{**data, "valid_lft": None, "preferred_lft": None})
            if addr.key() in present:
                kw = address_kwargs(addr, index)
                self.net.ipr.addr("replace", **kw)


# ---- status -------------------------------------------------------------------
def status_fields(plan_json: str | None, bridge_addresses: Sequence[Address],
                  now: float) -> dict[str, Any]:
    """``address_manager`` and ``lease_ends`` (epoch seconds, None when nothing expires)
    for `wlbridge status`, from the bridge's hand-off record and its current addresses
    (a DHCP client sets the kernel lifetime to its lease: no lease file needs parsing)."""
    manager = "unknown (set up before address hand-off existed)"
    if plan_json:
        try:
            manager = Plan.from_json(plan_json).manager
        except ValueError:
            manager = "unknown (unreadable hand-off record)"
    finite = [a.valid_lft for a in bridge_addresses if a.family == 4 and a.valid_lft is not None]
    return {"address_manager": manager,
            "lease_ends": round(now + min(finite)) if finite else None}


_RECORDS: dict[tuple[str, str | None], str | None] = {}


def host_address_status(bridge: str, remote: str | None, now: float) -> dict[str, Any]:
    """`status_fields` for the running controller: the bridge's hand-off record (read from
    OVSDB once, it does not change while the bridge exists) and its addresses (netlink, a
    socket of its own: safe from the status thread).  Never raises."""
    key = (bridge, remote)
    try:
        if key not in _RECORDS:
            from wlbridge.host import ovsdb

            with ovsdb.connect(remote, 2.0) as db:
                info = db.bridge_info(bridge)
            _RECORDS[key] = info.external_ids.get(HANDOFF_KEY) if info else None
        from wlbridge.host.hostnet import HostNet

        with HostNet() as net:
            addresses = net.addresses(bridge) if net.link_index(bridge) else []
    except Exception as exc:  # noqa: BLE001 - status must answer anyway
        return {"address_manager": f"unknown ({exc})", "lease_ends": None}
    return status_fields(_RECORDS[key], addresses, now)


def render_line(snap: dict[str, Any], now: float) -> str | None:
    """The `wlbridge status` line for ``snap["host_address"]``, if the controller sent it."""
    host = snap.get("host_address")
    if not host:
        return None
    ends = host.get("lease_ends")
    lease = "no lease to renew" if ends is None else (
        f"lease ends in {max(0, int(ends - now))}s" if ends > now else "lease ended")
    return f"address  managed by {host.get('address_manager')}; {lease}"
