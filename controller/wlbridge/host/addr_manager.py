"""Who manages the uplink's addresses: NetworkManager, systemd-networkd, dhcpcd, dhclient
(ifupdown or by hand), or nobody (static).

Read-only host integration.  `read_facts` gathers what can be told without changing
anything: the process table (``/proc/*/cmdline``, parent, name), NetworkManager's view of the
uplink (``nmcli``, with a timeout: a manager that is running but not answering is reported
as such), systemd-networkd's per-link state file (``/run/systemd/netif/links/<ifindex>``,
readable without D-Bus), ``/etc/network/interfaces`` and the uplink's IPv6 sysctls.
`detect` is pure: from those facts and the uplink's addresses it names the manager, or says
why it cannot tell (`Detection.problem`).

Lease files are never needed: the lease wlbridge asks to keep is the kernel's address
(address, prefix, remaining valid lifetime), whoever wrote it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # no pyroute2 import for `wlbridge --help`
    from wlbridge.host.hostnet import Address

STATIC = "static"
DHCLIENT = "dhclient"
DHCPCD = "dhcpcd"
NETWORKMANAGER = "networkmanager"
NETWORKD = "networkd"
UNKNOWN = "unknown"
MANAGERS = (DHCLIENT, DHCPCD, NETWORKMANAGER, NETWORKD, STATIC)

NMCLI_TIMEOUT = 5.0
IPV6_SYSCTLS = ("accept_ra", "autoconf", "accept_ra_defrtr", "accept_ra_pinfo", "use_tempaddr")

# dhclient's options that take a value (dhclient(8), ISC 4.4)
DHCLIENT_VALUE_OPTS = {"-p", "-D", "-df", "-e", "-lf", "-pf", "-cf", "-sf", "-s", "-g",
                        "--decline-wait-time", "--address-prefix-len", "--dad-wait-time",
                        "--prefix-len-hint"}
# dhcpcd's options that take a value (dhcpcd(8), 9.x)
DHCPCD_VALUE_OPTS = {"-c", "--script", "-e", "--env", "-f", "--config", "-h", "--hostname",
                      "-i", "--vendorclassid", "-j", "--logfile", "-l", "--leasetime",
                      "-m", "--metric", "-O", "--nooption", "-o", "--option", "-Q",
                      "--require", "-r", "--request", "-S", "--static", "-s", "--inform",
                      "-t", "--timeout", "-u", "--userclass", "-v", "--vendor", "-y",
                      "--reboot", "-z", "--allowinterfaces", "-Z", "--denyinterfaces",
                      "-F", "--fqdn", "-I", "--clientid", "-X", "--whitelist",
                      "--blacklist", "--inactive"}


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    name: str                       # /proc/PID/comm
    argv: tuple[str, ...]           # /proc/PID/cmdline


@dataclass(frozen=True)
class DhclientCmd:
    """One running ISC dhclient, from its command line."""

    pid: int
    argv: tuple[str, ...]
    family: int                     # 4 or 6
    interfaces: tuple[str, ...]     # () = every interface
    pidfile: str
    leasefile: str
    conffile: str
    script: str | None
    foreground: bool                # -d: someone supervises it (systemd unit, NetworkManager)


@dataclass(frozen=True)
class DhcpcdProc:
    """A running dhcpcd: a manager for all interfaces, or an instance for some."""

    pid: int
    interfaces: tuple[str, ...]     # () = manager mode (all interfaces)
    families: tuple[int, ...]       # (4, 6) unless started with -4 or -6


@dataclass(frozen=True)
class NmDevice:
    """NetworkManager's view of one device (`nmcli device show`)."""

    state: str = ""                 # e.g. "100 (connected)", "10 (unmanaged)"
    connection: str = ""            # the active connection's name
    error: str | None = None        # NetworkManager running but not answering, ...
    ipv6_method: str = ""           # the connection's ipv6.method ("auto", "ignore", ...)

    @property
    def managed(self) -> bool:
        return self.error is None and not self.state.startswith(("10 ", "10(")) \
            and "unmanaged" not in self.state


@dataclass
class HostFacts:
    """What `read_facts` found; built by hand in unit tests."""

    processes: list[Process] = field(default_factory=list)
    nm: NmDevice | None = None                  # None: NetworkManager not running
    networkd_link: dict[str, str] | None = None  # None: networkd not running / no state file
    networkd_lease: dict[str, str] | None = None  # the link's DHCP_LEASE file, if any
    interfaces_file: str | None = None          # /etc/network/interfaces, if readable
    ipv6_sysctls: dict[str, str] = field(default_factory=dict)
    resolv_conf_head: str = ""                  # /etc/resolv.conf's first lines
    resolvconf_records: tuple[str, ...] = ()    # /run/resolvconf/interface/* (resolvconf)


@dataclass(frozen=True)
class Detection:
    """Who manages the uplink's addresses."""

    manager: str                    # one of MANAGERS, or UNKNOWN
    detail: str                     # one human line
    dhclients: tuple[DhclientCmd, ...] = ()
    dhcpcd: DhcpcdProc | None = None
    nm_connection: str | None = None
    nm_ipv6_method: str | None = None   # NetworkManager's ipv6.method for the uplink
    networkd_file: str | None = None
    networkd_iaid: int | None = None    # the uplink's DHCPv4 IAID (from its lease's client id)
    ifupdown: str | None = None     # the uplink's method in /etc/network/interfaces
    dynamic: tuple[Address, ...] = ()   # addresses with a finite lifetime (leased / SLAAC)
    writes_dns: bool = False        # the manager's hooks wrote /etc/resolv.conf (dhcpcd)
    problem: str | None = None      # why a hand-off is not safe (one line), None if it is


# ---- pure parsing -----------------------------------------------------------
def parse_dhclient(proc: Process) -> DhclientCmd | None:
    """A dhclient's command line; None unless `proc` is a (non -r/-x) dhclient."""
    if not proc.argv or os.path.basename(proc.argv[0]) != "dhclient":
        return None
    family, foreground, ifaces = 4, False, []
    values: dict[str, str] = {}
    args = list(proc.argv[1:])
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in DHCLIENT_VALUE_OPTS:
            if i + 1 < len(args):
                values[arg] = args[i + 1]
            i += 2
            continue
        if arg in ("-r", "-x"):
            return None                         # a one-shot release/stop, not the manager
        if arg == "-6":
            family = 6
        elif arg == "-4":
            family = 4
        elif arg == "-d":
            foreground = True
        elif not arg.startswith("-"):
            ifaces.append(arg)
        i += 1
    suffix = "6" if family == 6 else ""
    return DhclientCmd(
        pid=proc.pid, argv=proc.argv, family=family, interfaces=tuple(ifaces),
        pidfile=values.get("-pf", f"/run/dhclient{suffix}.pid"),
        leasefile=values.get("-lf", f"/var/lib/dhcp/dhclient{suffix}.leases"),
        conffile=values.get("-cf", "/etc/dhcp/dhclient.conf"),
        script=values.get("-sf"), foreground=foreground)


_DHCPCD_TITLE = re.compile(r"^dhcpcd: (?P<rest>.*)$")


def parse_dhcpcd(proc: Process) -> DhcpcdProc | None:
    """A dhcpcd's main process, from its command line or process title (dhcpcd 9 sets
    ``dhcpcd: [manager] [ip4] [ip6]`` or ``dhcpcd: wlan0 [ip4]``); None for its helper
    processes (privileged/network/control proxies, BPF) and other programs."""
    if not proc.argv:
        return None
    title = _DHCPCD_TITLE.match(" ".join(proc.argv))
    if title:
        words = title.group("rest").split()
        if any(w in ("[privileged", "[network", "[control", "[BPF", "[DHCP6", "[launcher]")
               for w in words):
            return None
        families = tuple(f for f, tag in ((4, "[ip4]"), (6, "[ip6]")) if tag in words)
        ifaces = tuple(w for w in words if not w.startswith("["))
        return DhcpcdProc(proc.pid, ifaces, families or (4, 6))
    if os.path.basename(proc.argv[0]) != "dhcpcd" or proc.name != "dhcpcd":
        return None
    args, ifaces, families = list(proc.argv[1:]), [], [4, 6]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in DHCPCD_VALUE_OPTS:
            i += 2
            continue
        if arg in ("-x", "--exit", "-k", "--release", "-n", "--rebind", "-U", "--dumplease"):
            return None
        if arg in ("-4", "--ipv4only"):
            families = [4]
        elif arg in ("-6", "--ipv6only"):
            families = [6]
        elif not arg.startswith("-"):
            ifaces.append(arg)
        i += 1
    return DhcpcdProc(proc.pid, tuple(ifaces), tuple(families))


def interfaces_method(text: str, iface: str) -> str | None:
    """The ``iface IFACE inet METHOD`` method in /etc/network/interfaces ("dhcp", "static",
    "manual", ...); None when the file does not configure `iface` for IPv4."""
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 4 and words[0] == "iface" and words[1] == iface and words[2] == "inet":
            return words[3]
    return None


def parse_networkd_state(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a /run/systemd/netif/links/N file."""
    found = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found[key.strip()] = value.strip()
    return found


def networkd_iaid(lease: dict[str, str] | None) -> int | None:
    """The IAID in a networkd lease's ``CLIENTID`` (RFC 4361: 0xff, IAID, DUID), or None
    (no lease, or a client identifier of another kind, e.g. 01 + MAC)."""
    cid = (lease or {}).get("CLIENTID", "")
    if len(cid) < 10 or not cid.lower().startswith("ff"):
        return None
    try:
        return int(cid[2:10], 16)
    except ValueError:
        return None


def parse_nmcli_device(text: str) -> NmDevice:
    """``nmcli -t -f GENERAL.STATE,GENERAL.CONNECTION device show IFACE`` output."""
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return NmDevice(state=fields.get("GENERAL.STATE", ""),
                    connection=fields.get("GENERAL.CONNECTION", "").strip())


# ---- detection (pure) -------------------------------------------------------
def _names(procs: Iterable[Process], pid: int) -> str:
    for p in procs:
        if p.pid == pid:
            return p.name
    return ""


def detect(facts: HostFacts, uplink: str, addresses: Sequence[Address]) -> Detection:
    """Who manages `uplink`'s `addresses` (the movable ones, as `HostNet.addresses` gives)."""
    dynamic = tuple(a for a in addresses if a.valid_lft is not None)
    dyn4 = [a for a in dynamic if a.family == 4]
    method = interfaces_method(facts.interfaces_file or "", uplink)
    common = {"dynamic": dynamic, "ifupdown": method}
    procs = facts.processes

    dhclients, others = [], []
    for p in procs:
        cmd = parse_dhclient(p)
        if cmd is None:
            continue
        if not cmd.interfaces or uplink in cmd.interfaces:
            (dhclients if uplink in cmd.interfaces else others).append(cmd)
    nm_children = [c for c in dhclients if _names(procs, _ppid(procs, c.pid)) == "NetworkManager"
                   or (c.script or "").endswith("nm-dhcp-helper")]

    if facts.nm is not None and facts.nm.error:
        return Detection(UNKNOWN, f"NetworkManager is running but not answering "
                         f"({facts.nm.error})",
                         problem=f"NetworkManager is running but not answering "
                         f"({facts.nm.error}); cannot tell whether it manages {uplink}",
                         **common)
    if (facts.nm is not None and facts.nm.managed and facts.nm.connection) or nm_children:
        conn = facts.nm.connection if facts.nm is not None else ""
        return Detection(NETWORKMANAGER, f"NetworkManager (connection {conn or '?'})",
                         nm_connection=conn or None,
                         nm_ipv6_method=(facts.nm.ipv6_method or None) if facts.nm else None,
                         **common,
                         problem=None if conn else
                         f"NetworkManager runs a DHCP client on {uplink} but does not "
                         "say which connection")
    if facts.networkd_link and facts.networkd_link.get("ADMIN_STATE") in (
            "configured", "configuring"):
        nfile = facts.networkd_link.get("NETWORK_FILE", "")
        return Detection(NETWORKD, f"systemd-networkd ({nfile or 'no .network file'})",
                         networkd_file=nfile or None,
                         networkd_iaid=networkd_iaid(facts.networkd_lease), **common,
                         problem=None if nfile else
                         f"systemd-networkd configures {uplink} but names no .network file")
    if others:
        pids = ", ".join(str(c.pid) for c in others)
        return Detection(DHCLIENT, f"dhclient (PID {pids}) on every interface",
                         dhclients=tuple(others), **common,
                         problem=f"dhclient PID {pids} runs on every interface, {uplink} "
                         "included; wlbridge cannot stop it for one interface")
    if dhclients:
        pids = ", ".join(str(c.pid) for c in dhclients)
        shared = [c for c in dhclients if set(c.interfaces) - {uplink}]
        supervised = [c for c in dhclients if c.foreground]
        problem = None
        if shared:
            problem = (f"dhclient PID {shared[0].pid} manages {', '.join(shared[0].interfaces)} "
                       f"together; wlbridge cannot stop it for {uplink} alone")
        elif supervised:
            parent = _names(procs, _ppid(procs, supervised[0].pid)) or "?"
            problem = (f"dhclient PID {supervised[0].pid} runs in the foreground (-d) under "
                       f"{parent} (PID {_ppid(procs, supervised[0].pid)}), which would "
                       "restart it or lose track of it")
        how = " (ifupdown)" if method == "dhcp" else ""
        return Detection(DHCLIENT, f"dhclient{how} (PID {pids})", dhclients=tuple(dhclients),
                         problem=problem, **common)
    dhcpcds = [d for d in (parse_dhcpcd(p) for p in procs) if d is not None]
    mine = [d for d in dhcpcds if not d.interfaces or uplink in d.interfaces]
    if mine:
        d = mine[0]
        what = "manager for all interfaces" if not d.interfaces else uplink
        problem = None
        if d.interfaces and set(d.interfaces) - {uplink}:
            problem = (f"dhcpcd PID {d.pid} manages {', '.join(d.interfaces)} together; "
                       f"wlbridge cannot stop it for {uplink} alone")
        return Detection(DHCPCD, f"dhcpcd ({what}, PID {d.pid})", dhcpcd=d, problem=problem,
                         writes_dns=dhcpcd_writes_dns(facts, uplink), **common)
    if dyn4:
        return Detection(UNKNOWN, f"nobody wlbridge knows ({dyn4[0]} has a lease lifetime)",
                         problem=f"{uplink}'s address {dyn4[0]} is leased (valid for "
                         f"{dyn4[0].valid_lft}s) but no DHCP client wlbridge knows "
                         "(dhclient, dhcpcd, NetworkManager, systemd-networkd) manages it",
                         **common)
    detail = "nobody (static addresses)" if addresses else "nobody (no addresses)"
    if dynamic:
        detail += "; IPv6 from router advertisements (kernel)"
    return Detection(STATIC, detail, **common)


def dhcpcd_writes_dns(facts: HostFacts, uplink: str) -> bool:
    """Whether the uplink's dhcpcd runs its resolv.conf hook: /etc/resolv.conf written by
    dhcpcd (its hook's header) or a resolvconf record dhcpcd's hook made for the uplink
    (``UPLINK.dhcp``, ``UPLINK.dhcp6``, ``UPLINK.ra``)."""
    if "generated by dhcpcd" in facts.resolv_conf_head.lower():
        return True
    return any(r.rsplit(".", 1)[0] == uplink and r.rsplit(".", 1)[-1] in ("dhcp", "dhcp6", "ra")
               for r in facts.resolvconf_records)


def _ppid(procs: Iterable[Process], pid: int) -> int:
    for p in procs:
        if p.pid == pid:
            return p.ppid
    return 0


# ---- reading the host -------------------------------------------------------
def read_processes(proc_root: str = "/proc") -> list[Process]:
    """Every process whose command line can be read (kernel threads have none)."""
    found = []
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        base = os.path.join(proc_root, entry)
        try:
            with open(os.path.join(base, "cmdline"), "rb") as f:
                raw = f.read()
            with open(os.path.join(base, "stat")) as f:
                stat = f.read()
            with open(os.path.join(base, "comm")) as f:
                name = f.read().strip()
        except OSError:
            continue
        if not raw:
            continue
        argv = tuple(a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0"))
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(Process(int(entry), ppid, name, argv))
    return found


def nm_buses(processes: Sequence[Process], proc_root: str = "/proc",
             ours: str | None = None) -> list[str | None]:
    """The system D-Bus each running NetworkManager talks on, once each: None for the
    system bus this process uses (`ours`: its ``DBUS_SYSTEM_BUS_ADDRESS``, else the
    default), else the address from the daemon's environment (a sandboxed instance: a test,
    a container sharing the PID namespace)."""
    ours = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") if ours is None else ours
    buses: list[str | None] = []
    for p in processes:
        if p.name != "NetworkManager":
            continue
        bus: str | None = None
        try:
            with open(os.path.join(proc_root, str(p.pid), "environ"), "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"DBUS_SYSTEM_BUS_ADDRESS="):
                        bus = item.split(b"=", 1)[1].decode(errors="replace") or None
        except OSError:
            pass
        if bus == (ours or None):
            bus = None
        if bus not in buses:
            buses.append(bus)
    return buses


def read_nm(uplink: str, processes: Sequence[Process], timeout: float = NMCLI_TIMEOUT,
            buses: Sequence[str | None] | None = None,
            ask: Callable[[str, float, str | None], NmDevice] | None = None
            ) -> NmDevice | None:
    """NetworkManager's view of `uplink`; None when NetworkManager does not run.  Each
    running NetworkManager is asked on its own bus (`nm_buses`): one on another bus that
    does not manage `uplink` (a test's, a sandbox's, told to leave other devices alone)
    changes nothing; one there that manages it, or does not answer, is reported as an error
    (wlbridge's hand-off speaks to the system bus's)."""
    buses = nm_buses(processes) if buses is None else buses
    if not buses:
        return None
    ask = ask or _ask_nm
    views = [(bus, ask(uplink, timeout, bus)) for bus in buses]
    for bus, dev in views:
        if bus is not None and (dev.error or dev.managed):
            return NmDevice(error=f"a NetworkManager on another D-Bus ({bus}) "
                            + (f"manages {uplink}" if dev.managed else f"says: {dev.error}"))
    return next((dev for bus, dev in views if bus is None), views[0][1])


def _ask_nm(uplink: str, timeout: float, bus: str | None) -> NmDevice:
    """`nmcli`'s view of `uplink`, asked on `bus` (None: the system bus)."""
    env = None if bus is None else {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus}
    argv = ["nmcli", "-t", "-f", "GENERAL.STATE,GENERAL.CONNECTION", "device", "show", uplink]
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             check=False, env=env)
    except FileNotFoundError:
        return NmDevice(error="nmcli is not installed")
    except subprocess.TimeoutExpired:
        return NmDevice(error=f"`{shlex.join(argv)}` did not answer within {timeout:g}s")
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[0]
        if "not found" in err.lower():             # the device is unknown to NM
            return NmDevice(state="10 (unmanaged)")
        return NmDevice(error=err)
    dev = parse_nmcli_device(res.stdout)
    if dev.connection:
        argv = ["nmcli", "-g", "ipv6.method", "connection", "show", dev.connection]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                 check=False, env=env)
        except subprocess.TimeoutExpired:
            return NmDevice(error=f"`{shlex.join(argv)}` did not answer within {timeout:g}s")
        if res.returncode == 0:
            dev = NmDevice(dev.state, dev.connection, None, res.stdout.strip())
    return dev


def read_facts(uplink: str, ifindex: int, run_dir: str = "/run",
               etc: str = "/etc", sys_dir: str = "/proc/sys") -> HostFacts:
    processes = read_processes()
    networkd = networkd_lease = None
    if any(p.name in ("systemd-network", "systemd-networkd") for p in processes):
        try:
            with open(f"{run_dir}/systemd/netif/links/{ifindex}") as f:
                networkd = parse_networkd_state(f.read())
        except OSError:
            networkd = None
        try:
            with open((networkd or {}).get("DHCP_LEASE") or
                      f"{run_dir}/systemd/netif/leases/{ifindex}") as f:
                networkd_lease = parse_networkd_state(f.read())
        except OSError:
            networkd_lease = None
    try:
        with open(f"{etc}/network/interfaces") as f:
            interfaces = f.read()
    except OSError:
        interfaces = None
    sysctls = {}
    for name in IPV6_SYSCTLS:
        try:
            with open(f"{sys_dir}/net/ipv6/conf/{uplink}/{name}") as f:
                sysctls[name] = f.read().strip()
        except OSError:
            pass
    try:
        with open(f"{etc}/resolv.conf", errors="replace") as f:
            resolv_head = f.read(512)
    except OSError:
        resolv_head = ""
    try:
        records = tuple(sorted(os.listdir(f"{run_dir}/resolvconf/interface")))
    except OSError:
        records = ()
    return HostFacts(processes=processes, nm=read_nm(uplink, processes),
                     networkd_link=networkd, networkd_lease=networkd_lease,
                     interfaces_file=interfaces, ipv6_sysctls=sysctls,
                     resolv_conf_head=resolv_head, resolvconf_records=records)
