"""`wlbridge attach` / `detach`: a network namespace (``ip netns``'s, or a container's by PID)
wired to the bridge by a veth pair, as a guest port.

What attach does is decided first, as data (`make_plan`: names, OVSDB ``external_ids``, the
steps), then carried out step by step (`execute`); when a step fails, the steps done are undone
in reverse order and nothing is left behind (`AttachError` says what failed and whether the
rollback finished).

* Names: the host end of the pair is ``wl-NAME`` (`port_name`): NAME when it fits in an
  interface name, else its first 7 characters and 4 hex digits of its SHA-1, so two names never
  share a port silently (a port of that name attached for another guest is refused anyway).
  The other end is created in the root namespace as ``wp-…``, gets its offloads set, and is
  then moved into the guest's namespace under ``--ifname`` (``eth0``).  Its MAC is derived
  from NAME (`guest_mac`, locally administered) unless ``--mac`` is given: attached again (a
  container restarted), the guest keeps its MAC, so its DHCP lease and the controller's
  memory of that port's MAC stay right.
* OVSDB: the port's Interface carries ``external_ids`` like libvirt's: ``attached-mac`` (the
  guest end's MAC), ``wlbridge-guest`` (NAME), ``wlbridge-netns`` (``netns:NS`` or
  ``pid:PID``), ``wlbridge-addressing`` (``dhcp`` or the static addresses) and, with DHCP, the
  DHCP keeper's pid (``wlbridge-dhcp-pid``).
* Userspace (netdev) datapath: TX checksum offload off on both ends (TCP stalls otherwise, see
  `wlbridge.host.datapath`).
* DNS: only the namespace's own resolv.conf is written: ``/etc/netns/NS/resolv.conf`` (which
  ``ip netns exec`` bind-mounts over /etc/resolv.conf) for a named namespace, the container's
  ``/proc/PID/root/etc/resolv.conf`` for a PID, unless that is the host's file (a process
  sharing the host's /etc) or a symlink (it would resolve in the host's tree): then nothing
  (`guest_dhcp.resolv_writable`; checked again at every write).
* DHCP: busybox udhcpc in the namespace, with a script of ours (`guest_dhcp`), kept by a
  keeper process in the root namespace (`wlbridge.host.guest_dhcp`) for the guest's life: it
  renews the lease, and stops the client when the namespace is gone (a client left inside
  would keep a dead container's namespace, and so its port, alive).
* A port whose guest end vanished (namespace deleted, container stopped) is removed from OVSDB
  by the controller (`remove_guest`, called from `wlbridge.host.port_isolation`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wlbridge.errors import UserError

GUEST_KEY = "wlbridge-guest"
MAC_KEY = "attached-mac"            # as libvirt writes it
NETNS_KEY = "wlbridge-netns"
ADDRESSING_KEY = "wlbridge-addressing"
DHCP_PID_KEY = "wlbridge-dhcp-pid"
RESOLV_KEY = "wlbridge-resolv"      # a resolv.conf attach created (removed by detach)
CONTAINER_KEY = "wlbridge-container"  # the container's name as its runtime tells it (status)
PORT_PREFIX, PEER_PREFIX = "wl-", "wp-"
IFNAMSIZ = 15
NETNS_DIR = "/run/netns"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
IFNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


class AttachError(UserError):
    """A step failed; the message says which, and what the rollback did."""


# ---- names ------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise UserError(f"guest name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                        "(starting with a letter or digit); nothing changed")
    return name


def _ifname(prefix: str, name: str) -> str:
    if len(prefix) + len(name) <= IFNAMSIZ:
        return prefix + name
    digest = hashlib.sha1(name.encode()).hexdigest()[:4]
    return f"{prefix}{name[:IFNAMSIZ - len(prefix) - 5]}-{digest}"


def port_name(name: str) -> str:
    """The OVS port (host end of the veth pair) of guest `name`: stable, at most 15 chars."""
    return _ifname(PORT_PREFIX, name)


def guest_mac(name: str) -> str:
    """The guest end's MAC for guest `name`: stable, unicast, locally administered."""
    digest = hashlib.sha1(f"wlbridge-guest:{name}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def peer_name(name: str) -> str:
    """The guest end's name while it is still in the root namespace."""
    return _ifname(PEER_PREFIX, name)


# ---- the request and its plan -----------------------------------------------------------
@dataclass(frozen=True)
class Request:
    name: str
    bridge: str
    netns: str | None = None          # an `ip netns` name
    pid: int | None = None            # or a process whose network namespace is the guest's
    ifname: str = "eth0"
    dhcp: bool = False
    addresses: tuple[str, ...] = ()   # ADDR/PLEN, IPv4 or IPv6
    gateways: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    mac: str | None = None            # the guest end's MAC (None: `guest_mac(name)`)
    nspath: str | None = None         # or a namespace by path (a container runtime's, CNI)
    labels: tuple[tuple[str, str], ...] = ()   # more external_ids (a plugin's endpoint id)
    need_controller: bool = False     # refuse when no controller is connected to the bridge
    runtime_moves: bool = False       # no namespace: the runtime moves the guest end (Docker's
                                      # remote driver), addresses and DHCP come later


@dataclass(frozen=True)
class Facts:
    """What the plan depends on, read from the host (`read_facts`)."""

    bridge_exists: bool
    netdev: bool                                      # TX checksum offload off on both ends
    netns_ok: bool                                    # the namespace exists
    shares_host_mounts: bool = False                  # --pid: its resolv.conf is not its own
    port_ids: Mapping[str, str] | None = None         # the port's Interface external_ids
    port_bridge: str | None = None                    # the bridge that has the port
    link_exists: bool = False                         # an interface named like the port
    lan: tuple[str, ...] = ()                         # the bridge's networks (ADDR/PLEN)
    controller: bool = False       # a controller runs for the bridge (told by the caller:
                                   # its instance lock is the app's, above this layer)


@dataclass(frozen=True)
class Plan:
    request: Request
    port: str
    peer: str
    netns_path: str
    resolv: str | None                 # the namespace's resolv.conf (None: not ours to write)
    external_ids: dict[str, str]
    steps: tuple[str, ...]
    already: bool = False              # attached before, as asked: only missing pieces


STEPS = ("veth", "offload", "move", "addresses", "resolv", "port", "dhcp")


def netns_spec(req: Request) -> str:
    if req.runtime_moves:
        return "runtime"
    if req.nspath is not None:
        return f"path:{req.nspath}"
    return f"netns:{req.netns}" if req.netns is not None else f"pid:{req.pid}"


def netns_path(req: Request) -> str:
    if req.runtime_moves:
        return ""
    if req.nspath is not None:
        return req.nspath
    return f"{NETNS_DIR}/{req.netns}" if req.netns is not None else f"/proc/{req.pid}/ns/net"


def where(req: Request) -> str:
    if req.nspath is not None:
        return f"namespace {req.nspath}"
    return f"--netns {req.netns}" if req.netns is not None else f"--pid {req.pid}"


def addressing(req: Request) -> str:
    return "dhcp" if req.dhcp else ",".join(req.addresses) or "none"


def check_request(req: Request) -> Request:
    """Refuse (UserError, one line) what cannot be right whatever the host has."""
    check_name(req.name)
    if req.runtime_moves:
        if req.netns is not None or req.pid is not None or req.nspath is not None \
                or req.dhcp or req.addresses or req.gateways:
            raise UserError("a guest the runtime moves has no namespace, addresses or DHCP "
                            "at attach; nothing changed")
    elif sum(x is not None for x in (req.netns, req.pid, req.nspath)) != 1:
        raise UserError("give exactly one of --netns NS and --pid PID; nothing changed")
    if req.nspath is not None and not os.path.isabs(req.nspath):
        raise UserError(f"network namespace path {req.nspath!r} is not absolute; "
                        "nothing changed")
    if req.netns is not None and not NAME_RE.fullmatch(req.netns):
        raise UserError(f"--netns {req.netns!r} is not a namespace name; nothing changed")
    if req.pid is not None and req.pid <= 1:
        raise UserError(f"--pid {req.pid}: give a container's process, not {req.pid}; "
                        "nothing changed")
    if not IFNAME_RE.fullmatch(req.ifname):
        raise UserError(f"--ifname {req.ifname!r} is not an interface name; nothing changed")
    if req.dhcp and req.addresses:
        raise UserError("--dhcp and --address exclude each other; nothing changed")
    for text in req.addresses:
        if "/" not in text:
            raise UserError(f"--address {text!r}: want ADDR/PLEN (e.g. 192.168.1.60/24 or "
                            "fd00::60/64); nothing changed")
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            raise UserError(f"--address {text!r} is not an IPv4 or IPv6 address with a "
                            "prefix length; nothing changed") from None
        if iface.ip.is_multicast or iface.ip.is_unspecified or iface.ip.is_loopback:
            raise UserError(f"--address {text!r} cannot be a guest's address; nothing changed")
    for what, values in (("--gateway", req.gateways), ("--dns", req.dns)):
        for text in values:
            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise UserError(f"{what} {text!r} is not an IP address; nothing changed") from None
    if req.mac is not None:
        from wlbridge.model.addresses import is_unicast_mac, mac_to_bytes

        try:
            ok = is_unicast_mac(mac_to_bytes(req.mac).hex(":"))
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"--mac {req.mac!r} is not a unicast MAC address; nothing changed")
    families = [ipaddress.ip_address(g).version for g in req.gateways]
    if len(set(families)) != len(families):
        raise UserError("--gateway: at most one IPv4 and one IPv6 gateway; nothing changed")
    return req


def make_plan(req: Request, facts: Facts) -> Plan:
    """What attach will do (pure): refuses (UserError) when it must not."""
    check_request(req)
    port = port_name(req.name)
    if not facts.bridge_exists:
        raise UserError(f"bridge {req.bridge} does not exist (run `wlbridge setup` first, or "
                        "pass --bridge); nothing changed")
    if not facts.netns_ok and not req.runtime_moves:
        raise UserError(f"{where(req)}: no such network namespace"
                        + (" (see `ip netns list`)" if req.netns is not None else
                           " (is the process running?)" if req.pid is not None else "")
                        + "; nothing changed")
    if req.need_controller and not facts.controller:
        raise UserError(f"no controller is connected to bridge {req.bridge} (is `wlbridge "
                        "run` running?); nothing changed")
    outside = outside_lan(req.addresses, facts.lan)
    if outside:
        raise UserError(f"address {outside} is outside the LAN ("
                        + ", ".join(facts.lan) + f" on {req.bridge}); nothing changed")
    ids = {GUEST_KEY: req.name, NETNS_KEY: netns_spec(req), ADDRESSING_KEY: addressing(req),
           **dict(req.labels)}
    resolv = resolv_path(req, facts.shares_host_mounts)
    if facts.port_ids is not None:
        owner = facts.port_ids.get(GUEST_KEY)
        if owner != req.name:
            raise UserError(f"port {port} is already on bridge {facts.port_bridge} and "
                            + (f"belongs to guest {owner}" if owner else
                               "was not attached by wlbridge")
                            + "; choose another name; nothing changed")
        if facts.port_bridge != req.bridge:
            raise UserError(f"guest {req.name} is attached to bridge {facts.port_bridge}; "
                            f"`wlbridge detach {req.name} --bridge {facts.port_bridge}` "
                            "first; nothing changed")
        same = all(facts.port_ids.get(k) == v for k, v in ids.items())
        if not same or not facts.link_exists:
            was = (f"{facts.port_ids.get(NETNS_KEY)}, "
                   f"{facts.port_ids.get(ADDRESSING_KEY)}")
            raise UserError(f"guest {req.name} is already attached otherwise ({was}"
                            + ("" if facts.link_exists else ", its interface is gone")
                            + f"); `wlbridge detach {req.name}` first; nothing changed")
        steps = ("dhcp",) if req.dhcp else ()
        return Plan(req, port, peer_name(req.name), netns_path(req), resolv,
                    dict(facts.port_ids), steps, already=True)
    if facts.link_exists:
        raise UserError(f"an interface named {port} exists and is not a wlbridge guest port; "
                        "choose another name; nothing changed")
    steps = [s for s in STEPS
             if (s != "offload" or facts.netdev)
             and (s != "addresses" or req.addresses or req.gateways)
             and (s != "resolv" or (resolv and (req.dhcp or req.dns)))
             and (s != "dhcp" or req.dhcp)
             and (s in ("veth", "offload", "port") or not req.runtime_moves)]
    if resolv and "resolv" in steps and req.netns is not None:
        ids[RESOLV_KEY] = resolv        # ours (a container's own file is never removed)
    ids[MAC_KEY] = (req.mac or guest_mac(req.name)).lower()
    return Plan(req, port, peer_name(req.name), netns_path(req), resolv, ids, tuple(steps))


def outside_lan(addresses: tuple[str, ...], lan: tuple[str, ...]) -> str | None:
    """The first of `addresses` outside every network of `lan` of its family (the bridge's
    own, global ones); None when all are in, or the bridge has none of that family."""
    nets = [ipaddress.ip_interface(n).network for n in lan]
    for text in addresses:
        ip = ipaddress.ip_interface(text).ip
        mine = [n for n in nets if n.version == ip.version]
        if ip.is_link_local or not mine:
            continue
        if not any(ip in n for n in mine):
            return text
    return None


def resolv_path(req: Request, shares_host_mounts: bool) -> str | None:
    """The namespace's own resolv.conf, never the host's (None: there is none to write; a
    runtime's namespace by path: the runtime writes it, from the plugin's result)."""
    if req.nspath is not None or req.runtime_moves:
        return None
    if req.netns is not None:
        return f"/etc/netns/{req.netns}/resolv.conf"
    if shares_host_mounts:
        return None
    return f"/proc/{req.pid}/root/etc/resolv.conf"


# ---- carrying it out --------------------------------------------------------------------
@dataclass
class Done:
    """What `execute` did (steps in order) and learned (the guest's MAC, the keeper's pid)."""

    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def execute(plan: Plan, ops: Any, done: Done | None = None) -> Done:
    """Run the plan's steps through `ops` (``ops.do(step, plan, done)`` and
    ``ops.undo(step, plan, done)``); on a failure undo what was done, newest first, and raise
    `AttachError` saying so."""
    done = done if done is not None else Done()
    for step in plan.steps:
        try:
            ops.do(step, plan, done)
        except Exception as exc:
            problems = []
            for prev in reversed(done.steps):
                try:
                    ops.undo(prev, plan, done)
                except Exception as uexc:  # noqa: BLE001 - reported
                    problems.append(f"undoing {prev}: {uexc}")
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if problems:
                raise AttachError(f"attaching {plan.request.name} failed at {step} ({reason}) "
                                  f"and rolling back did not finish ({'; '.join(problems)})"
                                  ) from exc
            raise AttachError(f"attaching {plan.request.name} failed at {step} ({reason}); "
                              "rolled back, nothing changed") from exc
        done.steps.append(step)
    return done


class HostOps:
    """The steps on the real host: pyroute2 (netlink, ethtool ioctls) and OVSDB."""

    def __init__(self, db: Any, net: Any, run_dir: str) -> None:
        self.db, self.net, self.run_dir = db, net, run_dir

    # -- do
    def do(self, step: str, plan: Plan, done: Done) -> None:
        getattr(self, f"_do_{step}")(plan, done)

    def undo(self, step: str, plan: Plan, done: Done) -> None:
        getattr(self, f"_undo_{step}", lambda plan, done: None)(plan, done)

    def _do_veth(self, plan: Plan, done: Done) -> None:
        self.net.ipr.link("add", ifname=plan.port, kind="veth",
                          peer={"ifname": plan.peer, "address": plan.external_ids[MAC_KEY]})

    def _undo_veth(self, plan: Plan, done: Done) -> None:
        index = self.net.link_index(plan.port)
        if index is not None:      # deleting one end deletes both, wherever the other is
            self.net.ipr.link("del", index=index)

    def _do_offload(self, plan: Plan, done: Done) -> None:
        for name in (plan.port, plan.peer):
            features = self.net.get_tx_checksum(name) or {}
            if features and not self.net.set_tx_checksum(name, dict.fromkeys(features, False)):
                raise OSError(f"cannot turn TX checksum offload off on {name}")

    def _do_move(self, plan: Plan, done: Done) -> None:
        fd = os.open(plan.netns_path, os.O_RDONLY)
        try:
            self.net.ipr.link("set", index=self.net.link_index(plan.peer), net_ns_fd=fd)
        finally:
            os.close(fd)
        with _guest_ipr(plan.netns_path) as ipr:
            index = _index(ipr, plan.peer)
            if _index(ipr, plan.request.ifname, required=False) is not None:
                raise OSError(f"the namespace already has an interface {plan.request.ifname} "
                              "(pass --ifname)")
            ipr.link("set", index=index, ifname=plan.request.ifname)
            ipr.link("set", index=index, state="up")
            lo = _index(ipr, "lo", required=False)
            if lo is not None:
                ipr.link("set", index=lo, state="up")
        self.net.set_up(plan.port)

    def _do_addresses(self, plan: Plan, done: Done) -> None:
        with _guest_ipr(plan.netns_path) as ipr:
            index = _index(ipr, plan.request.ifname)
            for text in plan.request.addresses:
                iface = ipaddress.ip_interface(text)
                ipr.addr("replace", index=index, address=str(iface.ip),
                         prefixlen=iface.network.prefixlen)
            for gw in plan.request.gateways:
                ipr.route("replace", dst="::/0" if ":" in gw else "0.0.0.0/0", gateway=gw,
                          oif=index)

    def _do_resolv(self, plan: Plan, done: Done) -> None:
        assert plan.resolv is not None
        from wlbridge.host.guest_dhcp import write_resolv

        if plan.request.netns is not None:
            os.makedirs(os.path.dirname(plan.resolv), exist_ok=True)
        text = "".join(f"nameserver {d}\n" for d in plan.request.dns)
        if text or plan.request.netns is not None:   # with --dhcp, the DHCP client fills it in
            write_resolv(plan.resolv, text or "# wlbridge attach: filled in by the guest's "
                         "DHCP client\n")

    def _undo_resolv(self, plan: Plan, done: Done) -> None:
        remove_resolv(plan.resolv)

    def _do_port(self, plan: Plan, done: Done) -> None:
        from wlbridge.host.ovsdb import PortSpec

        self.db.add_port(plan.request.bridge, PortSpec(plan.port,
                                                       iface_external_ids=plan.external_ids))
        iface = self.db.wait_interface(plan.port, 10.0)
        if iface.error or not iface.ofport or iface.ofport < 0:
            raise OSError(f"Open vSwitch could not add {plan.port}: "
                          f"{iface.error or 'no OpenFlow port'}")
        if plan.request.runtime_moves:      # no move step: the host end is set up here
            self.net.set_up(plan.port)

    def _undo_port(self, plan: Plan, done: Done) -> None:
        self.db.delete_port(plan.request.bridge, plan.port)

    def _do_dhcp(self, plan: Plan, done: Done) -> None:
        from wlbridge.host import guest_dhcp

        pid = plan.external_ids.get(DHCP_PID_KEY)
        if pid and guest_dhcp.is_keeper(int(pid), plan.request.name):
            return
        pid = guest_dhcp.start(plan.request.name, plan.netns_path, plan.request.ifname,
                               plan.resolv, self.run_dir, port=plan.port)
        plan.external_ids[DHCP_PID_KEY] = str(pid)
        self.db.set_interface_external_ids(plan.port, {DHCP_PID_KEY: str(pid)})
        done.notes.append(f"DHCP client started (keeper pid {pid})")

    def _undo_dhcp(self, plan: Plan, done: Done) -> None:
        from wlbridge.host import guest_dhcp

        pid = plan.external_ids.get(DHCP_PID_KEY)
        if pid:
            guest_dhcp.stop(int(pid), plan.request.name)


def keep_dhcp(db: Any, name: str, netns_path: str, ifname: str, run_dir: str,
              address: str = "") -> int:
    """Start guest `name`'s DHCP keeper on `ifname` in the namespace (a runtime moved the
    interface there after attach, with `address`, leased before: asked for again and kept
    meanwhile), its pid in OVSDB so that detach stops it; its pid."""
    from wlbridge.host import guest_dhcp

    pid = guest_dhcp.start(name, netns_path, ifname, None, run_dir, keep=address,
                           port=port_name(name))
    db.set_interface_external_ids(port_name(name), {DHCP_PID_KEY: str(pid)})
    return pid


def stop_dhcp(db: Any, bridge: str, name: str) -> bool:
    """Stop guest `name`'s DHCP keeper (its client releases the lease), the port kept: a
    runtime's Leave, while the interface is still in the container; False: none ran."""
    from wlbridge.host import guest_dhcp

    info = db.bridge_info(bridge)
    iface = info.interface(port_name(name)) if info is not None else None
    pid = iface.external_ids.get(DHCP_PID_KEY, "") if iface is not None else ""
    return pid.isdigit() and guest_dhcp.stop(int(pid), name)


def name_container(db: Any, name: str, container: str) -> None:
    """Record on guest `name`'s port the name its runtime gives the container (shown by
    `wlbridge status`): a runtime that tells it only after attach (Docker, after Join)."""
    db.set_interface_external_ids(port_name(name), {CONTAINER_KEY: container})


def container_names(info: Any) -> dict[str, str]:
    """Port -> container name, for the guest ports of the bridge `info` describes that a
    runtime's plugin named (`CONTAINER_KEY`)."""
    return {iface.name: iface.external_ids[CONTAINER_KEY] for port in info.ports
            for iface in port.interfaces if iface.external_ids.get(CONTAINER_KEY)}


def remove_resolv(path: str | None) -> None:
    """Remove the resolv.conf attach made for a named namespace (a container's is left)."""
    if not path or not path.startswith("/etc/netns/"):
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        os.rmdir(os.path.dirname(path))
    except OSError:
        pass      # not empty: someone else's files too


def _guest_ipr(path: str) -> Any:
    from wlbridge.host.pyroute2_lazy import IPRoute

    return IPRoute(netns=path, flags=0)


def _index(ipr: Any, name: str, required: bool = True) -> int | None:
    found = ipr.link_lookup(ifname=name)
    if not found and required:
        raise LookupError(f"interface {name} is not in the guest's namespace")
    return found[0] if found else None


def read_facts(req: Request, db: Any, net: Any) -> Facts:
    from wlbridge.host.datapath import traits

    info = db.bridge_info(req.bridge)
    port = port_name(req.name)
    owner = db.port_bridge(port)
    ids = None
    if owner is not None:
        other = db.bridge_info(owner)
        iface = other.interface(port) if other is not None else None
        ids = dict(iface.external_ids) if iface is not None else {}
    path = netns_path(req)
    netns_ok = _is_netns(path)
    shares = False
    if req.pid is not None and netns_ok:
        from wlbridge.host.guest_dhcp import resolv_writable

        shares = not resolv_writable(f"/proc/{req.pid}/root/etc/resolv.conf")
    return Facts(bridge_exists=info is not None,
                 netdev=info is not None and traits(info.datapath_type).tx_checksum_off,
                 netns_ok=netns_ok, shares_host_mounts=shares, port_ids=ids,
                 port_bridge=owner, link_exists=net.link_index(port) is not None,
                 lan=lan_networks(net, req.bridge) if info is not None else ())


def lan_networks(net: Any, bridge: str) -> tuple[str, ...]:
    """The bridge interface's global addresses (the LAN's networks, once the station's
    address is on the bridge), as ADDR/PLEN."""
    index = net.link_index(bridge)
    if index is None:
        return ()
    found = []
    for msg in net.ipr.get_addr(index=index):
        ip = ipaddress.ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        if not ip.ip.is_link_local:
            found.append(str(ip))
    return tuple(found)


def _is_netns(path: str) -> bool:
    """`path` is a network namespace other than ours (an `ip netns` mount, /proc/PID/ns/net)."""
    try:
        other = os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False
    # an `ip netns` name is a bind mount; a plain file left there is no namespace
    return other and (not path.startswith(NETNS_DIR) or os.path.ismount(path))


# ---- the commands -----------------------------------------------------------------------
def attach(req: Request, db: Any, net: Any, run_dir: str,
           out: Callable[[str], None] = print, lease_timeout: float = 15.0) -> Done:
    plan = make_plan(req, read_facts(req, db, net))
    done = execute(plan, HostOps(db, net, run_dir))
    what = "already attached" if plan.already else "attached"
    out(f"{req.name} {what}: port {plan.port} on {req.bridge}, {req.ifname} in "
        f"{netns_spec(req).replace(':', ' ')} (MAC {plan.external_ids.get(MAC_KEY, '?')})")
    for note in done.notes:
        out(f"  {note}")
    if req.dhcp:
        lease = wait_address(plan.netns_path, req.ifname, lease_timeout)
        out(f"  IPv4 by DHCP: {lease}" if lease else
            f"  no DHCP lease within {lease_timeout:g}s; the client keeps trying "
            "(is `wlbridge run` running?)")
    if plan.resolv is None and (req.dhcp or req.dns):
        out(f"  note: process {req.pid}'s /etc/resolv.conf is the host's (or a symlink): its "
            "DNS servers are not written")
    return done


def guest_ipv4(path: str, ifname: str) -> tuple[list[str], str | None]:
    """The IPv4 addresses (ADDR/PLEN) on `ifname` in the namespace and its IPv4 default
    gateway (None: none)."""
    with _guest_ipr(path) as ipr:
        index = _index(ipr, ifname)
        addrs = [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
                 for m in ipr.get_addr(index=index, family=2)]
        gws = [r.get_attr("RTA_GATEWAY") for r in ipr.get_routes(family=2, oif=index)
               if r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")]
    return addrs, (gws[0] if gws else None)


def wait_address(path: str, ifname: str, timeout: float) -> str | None:
    """The first IPv4 address on `ifname` in the namespace, waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _guest_ipr(path) as ipr:
                index = _index(ipr, ifname)
                addrs = [f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}"
                         for m in ipr.get_addr(index=index, family=2)]
        except (OSError, LookupError):
            addrs = []
        if addrs or time.monotonic() >= deadline:
            return addrs[0] if addrs else None
        time.sleep(0.1)


def detach(name: str, bridge: str, db: Any, net: Any,
           out: Callable[[str], None] = print) -> bool:
    """Remove guest `name`'s port, veth pair, DHCP client and resolv.conf; False when it was
    not attached (nothing to do)."""
    check_name(name)
    port = port_name(name)
    info = db.bridge_info(bridge)
    if info is None:
        raise UserError(f"bridge {bridge} does not exist; nothing changed")
    iface = info.interface(port)
    if iface is None or iface.external_ids.get(GUEST_KEY) != name:
        if iface is not None:
            raise UserError(f"port {port} on {bridge} was not attached by `wlbridge attach "
                            f"{name}`; nothing changed")
        return False
    for line in remove_guest(bridge, port, iface.external_ids, db, net):
        out(line)
    return True


def remove_guest(bridge: str, port: str, ids: Mapping[str, str], db: Any,
                 net: Any | None) -> list[str]:
    """Stop the DHCP keeper, remove our resolv.conf, delete the OVSDB port and the veth pair."""
    from wlbridge.host import guest_dhcp

    lines = []
    name = ids.get(GUEST_KEY, "")
    pid = ids.get(DHCP_PID_KEY)
    if pid and pid.isdigit() and guest_dhcp.stop(int(pid), name):
        lines.append(f"{name}: DHCP client stopped")
        index = net.link_index(port) if net is not None else None
        if index is not None and not wait_drained(index):
            lines.append(f"{name}: Open vSwitch had not read all the guest's last packets")
    remove_resolv(ids.get(RESOLV_KEY))    # before the port: its absence means "all gone"
    if db.delete_port(bridge, port):
        lines.append(f"{name}: port {port} removed from {bridge}")
    index = net.link_index(port) if net is not None else None
    if index is not None:
        net.ipr.link("del", index=index)
        lines.append(f"{name}: veth pair {port} deleted")
    return lines


PACKET_SOCKETS = "/proc/net/packet"


def wait_drained(ifindex: int, timeout: float = 1.0, table: str = PACKET_SOCKETS) -> bool:
    """Wait (up to `timeout`) until no packet socket on interface `ifindex` has packets
    queued (``Rmem`` 0 in /proc/net/packet): the userspace datapath reads a port through
    one, and a port deleted before it read the guest's last packet (its DHCPRELEASE) drops
    that packet.  False: still queued."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(table) as f:
                rows = [line.split() for line in f.read().splitlines()[1:]]
        except OSError:
            return True                      # no such table: nothing to wait for
        queued = [r for r in rows if len(r) > 6 and r[4] == str(ifindex) and r[6] != "0"]
        if not queued or time.monotonic() >= deadline:
            return not queued
        time.sleep(0.01)


def detach_all(info: Any, db: Any, net: Any) -> list[str]:
    """Detach every guest `wlbridge attach` put on the bridge `info` describes (teardown)."""
    return [line for port in info.ports for iface in port.interfaces
            if GUEST_KEY in iface.external_ids
            for line in remove_guest(info.name, port.name, iface.external_ids, db, net)]


def parse_pid(text: str) -> int:
    if not text.isdigit():
        raise UserError(f"--pid {text!r} is not a process id; nothing changed")
    return int(text)

