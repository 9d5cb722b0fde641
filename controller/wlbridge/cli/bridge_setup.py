"""`wlbridge setup`: create the OVS bridge over the Wi-Fi uplink and move the host onto it.

The bridge is OpenFlow13-only with ``fail_mode=secure`` (nothing is forwarded
until the controller runs), in-band control disabled and the controller
connection out-of-band (wlbridge's controller runs on the host itself; in-band
hidden flows would only get in the way of the pipeline).  ``controller_rate_limit``
caps the packet-ins OVS sends (default 1000/s, burst a quarter of that) so a
flood from a guest cannot starve the controller; ``--packet-in-rate 0`` removes it.

What was moved is saved in the bridge's ``external_ids:wlbridge-saved`` *before*
the host is touched, so `wlbridge teardown` can undo it after a crash, and a
re-run of setup finishes an interrupted one instead of moving things twice.

With the userspace (netdev) datapath the kernel would also receive every frame
arriving on the uplink (OVS reads it through a packet socket), so setup adds a clsact
qdisc there whose ingress filter hands the host stack only EAPOL (and RSN
pre-auth/TDLS) frames; OVS still sees everything (see `hostnet.HostNet.isolate_uplink`,
also for why clsact).  Someone else's qdisc on the uplink's ingress hook:
a clsact qdisc is left alone with a warning (the bridge works; the host just also
gets every frame), a classic ingress qdisc makes setup refuse, since ovs-vswitchd
would delete it once the uplink is its port.  That choice is saved with the rest,
so teardown removes only what setup added.  A kernel refusing the filter is a
warning: re-running setup retries.

Address management (who renews the host's lease) is handed from the uplink to the internal
port after the addresses moved, and rolled back with the whole setup if that fails: see
`wlbridge.host.addr_handoff` (``--address-manager``).  Its record is saved in the bridge's
``external_ids:wlbridge-handoff`` in the same transaction as ``wlbridge-saved``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from wlbridge.app import config, switch_link
from wlbridge.cli.common import (
    DEFAULT_BRIDGE,
    Out,
    add_bridge_arguments,
    require_root,
    saved_state,
)
from wlbridge.errors import UserError
from wlbridge.host import datapath

if TYPE_CHECKING:  # imported lazily: `wlbridge --help` must not load ovs/pyroute2
    from wlbridge.host import addr_handoff, hostnet, ovsdb

#: the bridge listens on a root-only Unix socket; the controller connects (wlbridge.app.switch_link)
DEFAULT_CONTROLLER = switch_link.passive_target(DEFAULT_BRIDGE)
DEFAULT_PACKET_IN_RATE = 1000
OVS_MODULE_PATH = "/sys/module/openvswitch"
LINK_TIMEOUT = 10.0
ADDRESS_MANAGERS = ("auto", "keep", "static", "dhclient", "dhcpcd", "networkmanager",
                    "networkd")   # addr_handoff.MODES (kept here: --help loads no pyroute2)
DEFAULT_STATE_DIR = config.default("state_dir")



def kernel_datapath_available() -> bool:
    """True when the openvswitch kernel module is loaded."""
    return os.path.isdir(OVS_MODULE_PATH)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--uplink", required=True, metavar="UPLINK",
                        help="the Wi-Fi station interface, e.g. wlan0; auto: the one "
                        "associated managed-mode station (required)")
    add_bridge_arguments(parser)
    parser.add_argument("--datapath", choices=("system", "netdev"), default=None,
                        help="OVS datapath (default: system when the openvswitch kernel module "
                        "is loaded, else netdev, the userspace datapath)")
    parser.add_argument("--controller", default=None, metavar="TARGET",
                        help="OpenFlow controller target (default punix:<OVS run directory>/"
                        "<bridge>.controller: the bridge listens there, root only, and the "
                        "controller connects to it; ptcp:PORT:127.0.0.1 is the TCP variant; "
                        "tcp:IP:PORT makes the bridge connect to the controller instead)")
    parser.add_argument("--packet-in-rate", type=int, default=DEFAULT_PACKET_IN_RATE,
                        metavar="N", help="max packet-ins per second sent to the controller "
                        f"(default {DEFAULT_PACKET_IN_RATE}; 0: no limit; else at least 100)")
    parser.add_argument("--address-manager", choices=ADDRESS_MANAGERS, default="auto",
                        help="who renews the host's address once it lives on the bridge: "
                        "auto (default) finds out who manages the uplink (NetworkManager, "
                        "systemd-networkd, dhcpcd, dhclient, or nobody: static) and hands "
                        "management over to the bridge, refusing when that is not safe; keep "
                        "only moves the addresses (the uplink's manager is left alone); the "
                        "others force that hand-off")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, metavar="STATE_DIR",
                        help="where the DHCP client setup starts on the bridge keeps its pid "
                        f"and lease files (default {DEFAULT_STATE_DIR}, as `wlbridge run`)")
    parser.add_argument("--libvirt-network", default="wlbridge", metavar="NAME",
                        help="when libvirt is installed, the libvirt network defined and "
                        "autostarted for the bridge (removed by teardown); '' for none "
                        "(default: wlbridge)")
    parser.add_argument("--session-bridge", default="", metavar="NAME",
                        help="also make Linux bridge NAME for qemu:///session and GNOME Boxes "
                        "VMs (through qemu-bridge-helper: 'allow NAME' added to "
                        "/etc/qemu/bridge.conf), linked into the bridge by one guest port "
                        "NAME-p; removed by teardown (default: none)")


@dataclass
class SetupOptions:
    uplink: str
    bridge: str = DEFAULT_BRIDGE
    datapath: str = "netdev"
    controller: str = DEFAULT_CONTROLLER
    packet_in_rate: int = DEFAULT_PACKET_IN_RATE
    address_manager: str = "auto"
    state_dir: str = DEFAULT_STATE_DIR


def options_from_args(args: argparse.Namespace,
                      kernel_dp: Callable[[], bool] = kernel_datapath_available) -> SetupOptions:
    """Validate the command line; resolve the default datapath."""
    rate = args.packet_in_rate
    if rate != 0 and rate < 100:
        raise UserError("--packet-in-rate must be 0 (no limit) or at least 100 (OVS minimum)")
    datapath = args.datapath or ("system" if kernel_dp() else "netdev")
    if datapath == "system" and not kernel_dp():
        raise UserError("--datapath system needs the openvswitch kernel module "
                        "(modprobe openvswitch); or use --datapath netdev; nothing changed")
    if not args.uplink or args.uplink == args.bridge:
        raise UserError("--uplink must name the Wi-Fi interface, not the bridge")
    rundir = switch_link.rundir_of(getattr(args, "db", None) or os.environ.get("WLBRIDGE_OVSDB"))
    controller = args.controller or switch_link.passive_target(args.bridge, rundir)
    problem = switch_link.target_problem(controller, args.bridge, rundir)
    if problem:
        raise UserError(f"--controller: {problem}; nothing changed")
    return SetupOptions(uplink=args.uplink, bridge=args.bridge, datapath=datapath,
                        controller=controller, packet_in_rate=rate,
                        address_manager=getattr(args, "address_manager", "auto"),
                        state_dir=getattr(args, "state_dir", DEFAULT_STATE_DIR))


def bridge_spec(opts: SetupOptions, state: hostnet.SavedState,
                handoff: addr_handoff.Plan | None = None) -> ovsdb.BridgeSpec:
    """The whole bridge, created in one OVSDB transaction."""
    from wlbridge.host import ovsdb
    from wlbridge.host.addr_handoff import HANDOFF_KEY

    rate = opts.packet_in_rate or None
    extra = {HANDOFF_KEY: handoff.to_json()} if handoff is not None else {}
    return ovsdb.BridgeSpec(
        name=opts.bridge, datapath_type=opts.datapath, protocols=("OpenFlow13",),
        fail_mode="secure", controller=opts.controller, connection_mode="out-of-band",
        rate_limit=rate, burst_limit=max(25, rate // 4) if rate else None,
        other_config={"hwaddr": state.mac, "disable-in-band": "true"},
        external_ids={ovsdb.OWNER_KEY: opts.uplink, ovsdb.SAVED_KEY: state.to_json(), **extra},
        ports=[ovsdb.PortSpec(opts.uplink,
                              iface_external_ids={ovsdb.ROLE_KEY: ovsdb.ROLE_UPLINK})])


def check(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions) -> ovsdb.BridgeInfo | None:
    """Refuse (UserError) unless setup may proceed; the existing wlbridge bridge, if any."""
    from wlbridge.host.ovsdb import OWNER_KEY

    if net.link_index(opts.uplink) is None:
        raise UserError(f"uplink {opts.uplink} does not exist (see `ip link`); pass the Wi-Fi "
                        "station interface with --uplink; nothing changed")
    owner = db.port_bridge(opts.uplink)
    if owner is not None and owner != opts.bridge:
        raise UserError(f"uplink {opts.uplink} already belongs to Open vSwitch bridge {owner}; "
                        f"remove it there first (ovs-vsctl del-port {owner} {opts.uplink}, or "
                        f"wlbridge teardown --bridge {owner}); nothing changed")
    master = net.master(opts.uplink)
    if master is not None and master[1] != "openvswitch":
        raise UserError(f"uplink {opts.uplink} is enslaved to {master[0]} ({master[1]}); "
                        f"release it first (ip link set {opts.uplink} nomaster); nothing changed")
    existing = db.bridge_info(opts.bridge)
    if existing is None:
        if net.link_index(opts.bridge) is not None:
            raise UserError(f"a network interface named {opts.bridge} exists and is not an Open "
                            "vSwitch bridge; choose another --bridge; nothing changed")
        if (datapath.traits(opts.datapath).isolate_host_stack
                and net.ingress_status(opts.uplink) == "ingress"):
            raise UserError(f"uplink {opts.uplink} has an ingress qdisc, which Open vSwitch "
                            "deletes on its ports (and wlbridge needs that hook to keep the "
                            f"host stack off the uplink); remove it (tc qdisc del dev "
                            f"{opts.uplink} ingress) or move its filters to a clsact qdisc; "
                            "nothing changed")
        return None
    if not existing.managed:
        raise UserError(f"bridge {opts.bridge} exists but was not created by wlbridge; choose "
                        "another --bridge (or remove it); nothing changed")
    if existing.external_ids[OWNER_KEY] != opts.uplink:
        raise UserError(f"bridge {opts.bridge} is already set up for uplink "
                        f"{existing.external_ids[OWNER_KEY]}; run `wlbridge teardown "
                        f"--bridge {opts.bridge}` first; nothing changed")
    return existing


def setup(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions, out: Out = print,
          handoff_host: addr_handoff.Handoff | None = None) -> None:
    """Create (or finish setting up) the bridge; prints a summary through `out`.
    `handoff_host`: what the address hand-off reads and acts on (default: this host)."""
    from wlbridge.host.addr_handoff import Handoff

    host = handoff_host or Handoff()
    existing = check(db, net, opts)
    if existing is not None:
        _resume(db, net, opts, existing, out, host)
        return
    from wlbridge.host.hostnet import ingress_plan

    state = net.snapshot(opts.uplink)
    plan = handoff_plan(net, opts, state, host)       # refuses before anything changed
    dp = datapath.traits(opts.datapath)   # what differs between datapaths: wlbridge.host.datapath
    if dp.tx_checksum_off:
        state.tx_checksum = net.get_tx_checksum(opts.uplink)
    if dp.isolate_host_stack:
        state.uplink_ingress = ingress_plan(net.ingress_status(opts.uplink))
    db.create_bridge(bridge_spec(opts, state, plan))
    for name in (opts.uplink, opts.bridge):
        iface = db.wait_interface(name, LINK_TIMEOUT)
        if iface.error or not iface.ofport or iface.ofport < 0:
            db.delete_bridge(opts.bridge)
            raise UserError(f"Open vSwitch could not add {name} to {opts.bridge} "
                            f"({iface.error or 'no OpenFlow port; is ovs-vswitchd running?'}); "
                            "bridge removed again, nothing changed")
    out(f"created Open vSwitch bridge {opts.bridge} over uplink {opts.uplink}")
    warnings: list[str] = []
    changes = _before_move(db, opts, plan, host)
    changes += _apply_host(net, opts, state, warnings)
    changes += _hand_off(db, net, opts, state, plan, host)
    _report(db, net, opts, state, changes, out, warnings)


def handoff_plan(net: hostnet.HostNet, opts: SetupOptions, state: hostnet.SavedState,
                 host: addr_handoff.Handoff) -> addr_handoff.Plan:
    """Who manages the uplink's addresses, and how setup hands them over (UserError when
    that is not safe: one line with the commands to do it by hand)."""
    from wlbridge.host import addr_handoff, addr_manager

    if opts.address_manager == "keep":
        det = addr_manager.Detection(addr_manager.UNKNOWN, "not checked (keep)")
        facts = addr_manager.HostFacts()
    else:
        facts = host.facts(opts.uplink, net.link_index(opts.uplink) or 0)
        det = addr_manager.detect(facts, opts.uplink, state.addresses)
    try:
        metrics = [r.priority for r in state.routes
                   if r.family == 4 and r.dst is None and r.priority]
        return addr_handoff.make_plan(opts.address_manager, det, opts.uplink, opts.bridge,
                                      opts.state_dir, state.addresses, facts.ipv6_sysctls,
                                      time.time(), metrics[0] if metrics else None)
    except addr_handoff.HandoffRefused as exc:
        raise UserError(f"{exc.one_line()}; or pass --address-manager keep; "
                        "nothing changed") from exc


def _before_move(db: ovsdb.Ovsdb, opts: SetupOptions, plan: addr_handoff.Plan,
                 host: addr_handoff.Handoff) -> list[str]:
    """The plan's steps before the addresses move (a dhcpcd on the uplink stops first: it
    would put them back); when one fails, the bridge is removed again."""
    from wlbridge.host import addr_handoff

    done: list[str] = []
    try:
        addr_handoff.execute(plan.before_move, host.ops(), done.append)
    except addr_handoff.HandoffError as exc:
        db.delete_bridge(opts.bridge)
        undo = f"; undoing: {'; '.join(exc.undo_errors)}" if exc.undo_errors else ""
        raise UserError(f"address hand-off failed ({exc}){undo}; bridge {opts.bridge} "
                        "removed; nothing changed") from exc
    return done


def _hand_off(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions,
              state: hostnet.SavedState, plan: addr_handoff.Plan,
              host: addr_handoff.Handoff) -> list[str]:
    """Run the plan's setup steps; when one fails, undo them and the whole setup (the
    steps before the move last, once the addresses are back on the uplink)."""
    from wlbridge.host import addr_handoff

    done: list[str] = []
    try:
        addr_handoff.execute(plan.setup, host.ops(net), done.append)
    except addr_handoff.HandoffError as exc:
        problems = exc.undo_errors + _rollback(db, net, opts, state)
        ops = host.ops(net)
        for step in reversed(plan.before_move):
            try:
                ops.undo(step)
            except Exception as uexc:  # noqa: BLE001 - reported with the others
                problems.append(f"undoing '{step.text}': {uexc}")
        if problems:
            raise UserError(f"address hand-off failed ({exc}) and rolling back did not "
                            f"finish ({'; '.join(problems)}); run `wlbridge teardown --bridge "
                            f"{opts.bridge}`") from exc
        raise UserError(f"address hand-off failed ({exc}); rolled back: the host's addresses "
                        f"and their manager are back on {opts.uplink}, bridge {opts.bridge} "
                        "removed; nothing changed") from exc
    return done


def _restart_clients(info: ovsdb.BridgeInfo, net: hostnet.HostNet,
                     host: addr_handoff.Handoff) -> list[str]:
    """Start again the DHCP client setup started on the bridge, if it died."""
    from wlbridge.host import addr_handoff

    text = info.external_ids.get(addr_handoff.HANDOFF_KEY)
    if not text:
        return []
    try:
        plan = addr_handoff.Plan.from_json(text)
    except ValueError:
        return []        # _report_handoff says so
    ops, done = host.ops(net), []
    try:
        addr_handoff.execute(addr_handoff.missing_clients(plan, ops), ops, done.append)
    except addr_handoff.HandoffError as exc:
        raise UserError(f"could not start the bridge's DHCP client again: {exc}") from exc
    return done


def _rollback(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions,
              state: hostnet.SavedState) -> list[str]:
    """Undo `_apply_host` and the bridge (as teardown would); the problems met."""
    from wlbridge.host.hostnet import INGRESS_OURS

    up, problems = opts.uplink, []
    try:
        if state.uplink_ingress == INGRESS_OURS:
            net.release_uplink(up)
        net.move(state, opts.bridge, up)
        if state.uplink_ra:
            net.set_ipv6_conf(up, state.uplink_ra)
        net.set_allmulticast(up, state.allmulticast)
        if state.tx_checksum:
            net.set_tx_checksum(up, state.tx_checksum)
    except Exception as exc:  # noqa: BLE001 - reported, the bridge keeps the saved state
        return [f"putting the host back on {up}: {exc}"]
    db.delete_bridge(opts.bridge)
    return problems


def _resume(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions,
            info: ovsdb.BridgeInfo, out: Out, host: addr_handoff.Handoff) -> None:
    from wlbridge.host import ovsdb

    state = saved_state(info)
    changes = []
    if info.uplink != opts.uplink:   # uplink port removed by hand: put it back
        db.add_port(opts.bridge, ovsdb.PortSpec(
            opts.uplink, iface_external_ids={ovsdb.ROLE_KEY: ovsdb.ROLE_UPLINK}))
        changes.append(f"uplink {opts.uplink} added back to {opts.bridge}")
    targets = [c.target for c in info.controllers]
    if targets != [opts.controller]:   # e.g. a bridge set up before the passive target
        rate = opts.packet_in_rate or None
        db.set_controller(opts.bridge, opts.controller, connection_mode="out-of-band",
                          rate_limit=rate, burst_limit=max(25, rate // 4) if rate else None)
        changes.append(f"controller target set to {opts.controller} (was "
                       f"{', '.join(targets) or 'none'})")
    warnings: list[str] = []
    changes += _apply_host(net, opts, state, warnings)
    changes += _restart_clients(info, net, host)
    done = "; finished what an interrupted setup left undone, brought it up to date"
    out(f"bridge {opts.bridge} was already set up by wlbridge"
        + (done if changes else "; nothing changed"))
    info = db.bridge_info(opts.bridge) or info
    if info.datapath_type != opts.datapath:
        out(f"  note: keeping datapath {info.datapath_type}; run `wlbridge teardown` first "
            "to change it")
    _report(db, net, opts, state, changes, out, warnings)


def _apply_host(net: hostnet.HostNet, opts: SetupOptions, state: hostnet.SavedState,
                warnings: list[str]) -> list[str]:
    """Idempotently move the host onto the internal port; the changes made.

    What could not be done but does not stop the bridge working goes to `warnings`.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    from wlbridge.host.hostnet import IFF_UP
    from wlbridge.host.uplink_care import prepare_uplink
    br, up = opts.bridge, opts.uplink
    changes: list[str] = []
    try:
        net.wait_for_link(br, LINK_TIMEOUT)
        if net.get_mac(br).lower() != state.mac.lower():
            net.set_mac(br, state.mac)
            changes.append(f"MAC of {br} set to {state.mac}")
        if not net.flags(br) & IFF_UP:
            net.set_up(br)
            changes.append(f"{br} brought up")
        changes += net.move(state, up, br, nodad=True)
        if state.uplink_ra:     # the bridge takes the RAs the uplink took (the uplink stops)
            changes += net.set_ipv6_conf(br, state.uplink_ra)
        isolation: list[str] = []
        changes += prepare_uplink(net, state, up, isolation, bridge=br)
        warnings += [f"{line}; rerun `wlbridge setup --uplink {up} --bridge {br}` to retry"
                     for line in isolation]
    except (OSError, LookupError, NetlinkError) as exc:
        raise UserError(f"setup stopped half-way: {exc}. What it was moving is saved in the "
                        f"bridge: rerun `wlbridge setup --uplink {up} --bridge {br}` to finish, "
                        f"or `wlbridge teardown --bridge {br}` to undo") from exc
    return changes


def _report(db: ovsdb.Ovsdb, net: hostnet.HostNet, opts: SetupOptions,
            state: hostnet.SavedState, changes: list[str], out: Out,
            warnings: list[str] | None = None) -> None:
    from wlbridge.host.hostnet import INGRESS_FOREIGN, INGRESS_OURS, describe

    info = db.bridge_info(opts.bridge)
    if info is None:
        return
    for line in changes:
        out(f"  {line}")
    out(f"  bridge {info.name}: datapath {info.datapath_type}, "
        f"{'/'.join(info.protocols)}, fail_mode {info.fail_mode}")
    for ctl in info.controllers:
        limit = f"{ctl.rate_limit} packet-ins/s" if ctl.rate_limit else "no packet-in limit"
        out(f"  controller {ctl.target} ({ctl.connection_mode or 'in-band'}, {limit}, "
            f"{'connected' if ctl.is_connected else 'not connected yet'})")
    out(f"  internal port {info.name}: MAC {net.get_mac(info.name)}")
    _report_handoff(info, out)
    _report_supplicant(net, opts, info.datapath_type, out)
    out(f"  host configuration moved from {opts.uplink} (saved for teardown):")
    for line in describe(state.addresses, state.routes) or ["  (no addresses)"]:
        out(f"  {line}")
    up = opts.uplink
    if state.uplink_ingress == INGRESS_OURS and net.ingress_status(up) == "ours":
        out(f"  uplink {up}: ingress filter gives the host stack only EAPOL/pre-auth/TDLS "
            "frames (OVS still reads every frame); removed by teardown")
    elif state.uplink_ingress == INGRESS_FOREIGN:
        out(f"  warning: {up} already had a clsact qdisc that is not wlbridge's; left "
            "alone, so the host stack also gets every frame arriving on it (duplicate ping "
            "replies, guests' traffic in its counters, routed if forwarding is on). To let "
            f"wlbridge filter it: remove that qdisc (tc qdisc del dev {up} clsact), then "
            "`wlbridge teardown` and `wlbridge setup` again")
    for line in warnings or ():
        out(f"  warning: {line}")
    if datapath.traits(opts.datapath).tx_checksum_off and state.tx_checksum is None:
        out(f"  note: could not read TX checksum offload of {opts.uplink}; if TCP stalls, "
            f"run `ethtool -K {opts.uplink} tx off`")
    if not any(c.is_connected for c in info.controllers):
        out("  the bridge forwards nothing until the controller runs: `wlbridge run`")


def _report_handoff(info: ovsdb.BridgeInfo, out: Out) -> None:
    from wlbridge.host.addr_handoff import HANDOFF_KEY, Plan

    text = info.external_ids.get(HANDOFF_KEY)
    if not text:
        return
    try:
        plan = Plan.from_json(text)
    except ValueError as exc:
        out(f"  warning: bridge {info.name}: {exc}")
        return
    out(f"  address manager: {plan.manager} (was: {plan.detail})")
    for note in plan.notes:
        out(f"  note: {note}")


def _report_supplicant(net: hostnet.HostNet, opts: SetupOptions, datapath: str,
                       out: Out) -> None:
    from wlbridge.host import supplicant

    path = supplicant.check(opts.uplink, net.link_index(opts.uplink) or 0, opts.bridge,
                            datapath, net.link_index(opts.bridge))
    out(f"  EAPOL: {path.detail}")
    if path.advice:
        out(f"  warning: {path.advice}")


def main(args: argparse.Namespace) -> int:
    from wlbridge.host import hostnet, ovsdb, session_bridge

    require_root("setup")
    opts = options_from_args(args)
    if args.session_bridge:
        session_bridge.check_name(args.session_bridge)
    with ovsdb.connect(args.db, args.timeout) as db, hostnet.HostNet() as net:
        if args.session_bridge:
            session_bridge.check_free(db.bridge_info(opts.bridge), net, args.session_bridge)
        setup(db, net, opts)
        from wlbridge.host import libvirt_net

        libvirt_net.after_setup(db, opts.bridge, args.libvirt_network, print)
        info = db.bridge_info(opts.bridge)
        netdev = info is not None and info.datapath_type == "netdev"
        session_bridge.after_setup(db, net, opts.bridge, args.session_bridge, netdev, print)
    return 0
