"""`wlbridge teardown`: put the host back on the uplink and remove the bridge.

Works from the bridge's ``external_ids:wlbridge-saved`` alone, so it is safe
after a crash (controller dead, setup interrupted, internal port gone).  The
bridge is deleted last: if teardown itself is interrupted, running it again
finishes the job.  With no bridge left it reports "nothing to do".  The uplink's
ingress filter is removed only if the saved state says setup added it, and its
clsact qdisc only when nothing but wlbridge's filter was on it.  The filters the
controller put on guest ports (userspace datapath, see `wlbridge.host.port_isolation`) stay
while the bridge exists, controller stopped or not (the flows keep forwarding); once
the bridge is gone, teardown removes them from its former ports that still exist.
Address management goes back to the uplink's original manager from the bridge's hand-off
record (`wlbridge.host.addr_handoff`): the bridge's client stops before the addresses move back
(its steps are undone if moving them fails), the original manager starts once the bridge is
gone.

It refuses while a controller is connected to the bridge (OVSDB's ``Controller``
``is_connected``): stopping a service is the service manager's job, and a controller
left running would wait for a bridge that is gone, then save its state over the file.
The controller's state file (``<state_dir>/<bridge>.json``) is kept, and teardown says
where: `wlbridge run` for the same bridge restores its guests from it.
``--remove-state`` deletes it as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wlbridge.cli.common import Out, add_bridge_arguments, require_root, saved_state
from wlbridge.errors import UserError

if TYPE_CHECKING:  # imported lazily, see cli.common
    from wlbridge.host import addr_handoff, hostnet, ovsdb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wlbridge.app import config

    add_bridge_arguments(parser)
    parser.add_argument("--state-dir", metavar="STATE_DIR", default=config.default("state_dir"),
                        help="the controller's state_dir, where it keeps BRIDGE.json")
    parser.add_argument("--remove-state", action="store_true",
                        help="also delete STATE_DIR/BRIDGE.json (default: kept, so a later "
                        "`wlbridge run` restores the guests)")


def listening(target: str) -> bool | None:
    """Whether something listens on a ``tcp:``/``ssl:`` controller target of this host
    (None: not a local address, cannot tell).  OVSDB's ``is_connected`` lags a stopped
    controller by a moment; a target nobody listens on any more has no controller."""
    import ipaddress
    import socket

    from pyroute2 import DiagSocket

    kind, _, rest = target.partition(":")
    host, sep, port = rest.rpartition(":")
    if kind not in ("tcp", "ssl") or not sep:
        return None
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
        port_no = int(port)
    except ValueError:
        return None
    if not addr.is_loopback:
        return None
    family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
    with DiagSocket() as diag:
        diag.bind()
        sockets = diag.get_sock_stats(family=family, states=1 << 10)  # TCP_LISTEN
    return any(s["idiag_sport"] == port_no
               and ipaddress.ip_address(s["idiag_src"]) in (addr, ipaddress.ip_address(
                   "0.0.0.0" if addr.version == 4 else "::")) for s in sockets)


def teardown(db: ovsdb.Ovsdb, net: hostnet.HostNet, bridge: str, out: Out = print,
             state_dir: str | None = None, handoff_host: addr_handoff.Handoff | None = None
             ) -> bool:
    """Undo `wlbridge setup` for `bridge`; False when there was nothing to do.
    `handoff_host`: what the address hand-back acts on (default: this host)."""
    from pyroute2.netlink.exceptions import NetlinkError

    from wlbridge.host import hostnet, ovsdb

    info = db.bridge_info(bridge)
    if info is None:
        out(f"nothing to do: there is no bridge {bridge}")
        return False
    if not info.managed:
        raise UserError(f"bridge {bridge} was not created by wlbridge; not touching it "
                        f"(remove it with `ovs-vsctl del-br {bridge}` if you mean to)")
    from wlbridge.app import config, instance_lock

    holder = instance_lock.running(state_dir or config.default("state_dir"), bridge)
    if holder is not None:  # a controller holds its lock (whatever its connection model)
        path, pid = holder
        who = f"pid {pid}, holding {path}" if pid else f"holding {path}"
        raise UserError(f"the controller of {bridge} is still running ({who}); stop it "
                        "first (`systemctl stop wlbridge`, or Ctrl-C on `wlbridge run`), then "
                        "run teardown again; nothing changed")
    connected = [c.target for c in info.controllers
                 if c.is_connected and listening(c.target) is not False]
    if connected:
        raise UserError(f"the controller of {bridge} is still running (connected through "
                        f"{connected[0]}); stop it first (`systemctl stop wlbridge`, or Ctrl-C "
                        "on `wlbridge run`), then run teardown again; nothing changed")
    uplink = info.external_ids[ovsdb.OWNER_KEY]
    state = saved_state(info)
    guest_ports = [i.name for p in info.ports for i in p.interfaces
                   if i.name not in (bridge, uplink, info.uplink)]
    changes: list[str] = []
    handoff = _handoff_record(info, out)
    from wlbridge.host.addr_handoff import Handoff

    ops = (handoff_host or Handoff()).ops(net)
    before = _hand_back(handoff, "teardown_before", ops, changes, bridge)  # the bridge's client
    if net.link_index(uplink) is None:
        out(f"warning: uplink {uplink} no longer exists; cannot put back:")
        for line in hostnet.describe(state.addresses, state.routes):
            out(line)
    else:
        try:
            if state.uplink_ingress == hostnet.INGRESS_OURS:
                changes += net.release_uplink(uplink)
            changes += net.move(state, bridge, uplink)
            if state.uplink_ra:     # the uplink takes router advertisements again
                changes += net.set_ipv6_conf(uplink, state.uplink_ra)
            if net.get_allmulticast(uplink) != state.allmulticast:
                net.set_allmulticast(uplink, state.allmulticast)
                changes.append(f"allmulticast {'on' if state.allmulticast else 'off'} "
                               f"for {uplink}")
            if (state.tx_checksum and net.get_tx_checksum(uplink) != state.tx_checksum
                    and net.set_tx_checksum(uplink, state.tx_checksum)):
                changes.append(f"TX checksum offload of {uplink} restored")
        except (OSError, LookupError, NetlinkError) as exc:
            _undo(before, ops)
            raise UserError(f"teardown stopped before removing {bridge}: {exc}. Fix the cause "
                            "and run `wlbridge teardown` again (the saved state is kept)") from exc
    from wlbridge.host import attach, libvirt_net, session_bridge

    changes += libvirt_net.before_teardown(info) + attach.detach_all(info, db, net)
    changes += session_bridge.remove(info, db, net)
    db.delete_bridge(bridge)
    if net.link_index(uplink) is not None:
        _hand_back(handoff, "teardown_after", ops, changes, bridge)
    out(f"removed bridge {bridge}; host configuration is back on {uplink}")
    for line in changes:
        out(f"  {line}")
    for name in guest_ports:   # after the deletion: OVS no longer reads them
        try:
            for line in net.release_guest_port(name):
                out(f"  {line}")
        except (OSError, NetlinkError) as exc:
            out(f"  warning: could not remove wlbridge's ingress filter from {name} ({exc}); "
                f"remove it with: tc filter del dev {name} ingress pref "
                f"{hostnet.GUEST_ISOLATION_PRIO}")
    return True


def _handoff_record(info: ovsdb.BridgeInfo, out: Out) -> Any:
    from wlbridge.host.addr_handoff import HANDOFF_KEY, Plan

    text = info.external_ids.get(HANDOFF_KEY)
    try:
        return Plan.from_json(text) if text else None
    except ValueError as exc:
        out(f"warning: {exc}; address management is not handed back (check who manages "
            "the uplink's addresses)")
        return None


def _hand_back(plan: Any, phase: str, ops: addr_handoff.HostOps, changes: list[str],
               bridge: str) -> list[Any]:
    """Run one phase of the plan's teardown steps; the steps done.  A step this wlbridge
    cannot run (a record written by another version) is left out, with one error line
    saying what to do by hand; the others run."""
    from wlbridge.host import addr_handoff

    if plan is None:
        return []
    steps, skipped = getattr(plan, phase), []
    try:
        addr_handoff.execute(steps, ops, changes.append, skipped.append)
    except addr_handoff.HandoffError as exc:
        if phase == "teardown_before":
            raise UserError(f"teardown stopped before removing {bridge}: {exc} (undone). Fix "
                            "the cause and run `wlbridge teardown` again") from exc
        changes.append(f"warning: {exc}; do that by hand")
        return []
    finally:
        if skipped:
            changes.append("error: the address hand-off record has steps this wlbridge "
                           f"cannot run, left out (do them by hand): {'; '.join(skipped)}")
    return list(steps)


def _undo(steps: list[Any], ops: addr_handoff.HostOps) -> None:
    for step in reversed(steps):
        try:
            ops.undo(step)
        except Exception:  # noqa: BLE001,S110 - best effort; the UserError says what failed
            pass
def state_file(state_dir: str, bridge: str, remove: bool, out: Out = print) -> None:
    """Say where the controller's state file is kept, or remove it."""
    from wlbridge.app.persist import StateStore

    path = Path(StateStore(state_dir, bridge).path)
    if not path.exists():
        return
    if not remove:
        out(f"state file {path} kept: `wlbridge run --bridge {bridge}` restores its guests "
            "from it; `wlbridge teardown --remove-state` (or rm) forgets them")
        return
    try:
        path.unlink()
    except OSError as exc:
        raise UserError(f"cannot remove state file {path} ({exc.strerror}); remove it by "
                        "hand") from exc
    out(f"removed state file {path}")


def main(args: argparse.Namespace) -> int:
    from wlbridge.host import hostnet, ovsdb

    require_root("teardown")
    with ovsdb.connect(args.db, args.timeout) as db, hostnet.HostNet() as net:
        teardown(db, net, args.bridge, state_dir=args.state_dir)
    state_file(args.state_dir, args.bridge, args.remove_state)
    return 0
