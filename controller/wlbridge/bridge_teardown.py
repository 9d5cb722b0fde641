"""`wlbridge teardown`: put the host back on the uplink and remove the bridge.

Works from the bridge's ``external_ids:wlbridge-saved`` alone, so it is safe
after a crash (controller dead, setup interrupted, internal port gone).  The
bridge is deleted last: if teardown itself is interrupted, running it again
finishes the job.  With no bridge left it reports "nothing to do".  The uplink's
ingress filter is removed only if the saved state says setup added it, and its
clsact qdisc only when nothing but wlbridge's filter was on it.  The filters the
controller put on guest ports (userspace datapath, see `wlbridge.port_isolation`) stay
while the bridge exists, controller stopped or not (the flows keep forwarding); once
the bridge is gone, teardown removes them from its former ports that still exist.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from wlbridge.bridge_setup import Out, add_common_arguments, require_root, saved_state
from wlbridge.errors import UserError

if TYPE_CHECKING:  # imported lazily, see bridge_setup
    from wlbridge import hostnet, ovsdb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)


def teardown(db: ovsdb.Ovsdb, net: hostnet.HostNet, bridge: str, out: Out = print) -> bool:
    """Undo `wlbridge setup` for `bridge`; False when there was nothing to do."""
    from pyroute2.netlink.exceptions import NetlinkError

    from wlbridge import hostnet, ovsdb

    info = db.bridge_info(bridge)
    if info is None:
        out(f"nothing to do: there is no bridge {bridge}")
        return False
    if not info.managed:
        raise UserError(f"bridge {bridge} was not created by wlbridge; not touching it "
                        f"(remove it with `ovs-vsctl del-br {bridge}` if you mean to)")
    uplink = info.external_ids[ovsdb.OWNER_KEY]
    state = saved_state(info)
    guest_ports = [i.name for p in info.ports for i in p.interfaces
                   if i.name not in (bridge, uplink, info.uplink)]
    changes: list[str] = []
    if net.link_index(uplink) is None:
        out(f"warning: uplink {uplink} no longer exists; cannot put back:")
        for line in hostnet.describe(state.addresses, state.routes):
            out(line)
    else:
        try:
            if state.uplink_ingress == hostnet.INGRESS_OURS:
                changes += net.release_uplink(uplink)
            changes += net.move(state, bridge, uplink)
            if net.get_allmulticast(uplink) != state.allmulticast:
                net.set_allmulticast(uplink, state.allmulticast)
                changes.append(f"allmulticast {'on' if state.allmulticast else 'off'} "
                               f"for {uplink}")
            if (state.tx_checksum and net.get_tx_checksum(uplink) != state.tx_checksum
                    and net.set_tx_checksum(uplink, state.tx_checksum)):
                changes.append(f"TX checksum offload of {uplink} restored")
        except (OSError, LookupError, NetlinkError) as exc:
            raise UserError(f"teardown stopped before removing {bridge}: {exc}. Fix the cause "
                            "and run `wlbridge teardown` again (the saved state is kept)") from exc
    db.delete_bridge(bridge)
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


def main(args: argparse.Namespace) -> int:
    from wlbridge import hostnet, ovsdb

    require_root("teardown")
    with ovsdb.connect(args.db, args.timeout) as db, hostnet.HostNet() as net:
        teardown(db, net, args.bridge)
    return 0
