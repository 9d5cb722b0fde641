"""What the uplink interface itself needs, at setup and again whenever it comes back.

`wlbridge setup` prepares the uplink (`prepare_uplink`: allmulticast on, TX checksum offload
off where setup turned it off, IPv6 router advertisements off with what they left there moved
to the bridge (see `wlbridge.host.hostnet`), the ingress filter that keeps the host stack off it
on the userspace datapath).  Those are properties of the *interface*: when the Wi-Fi driver is
reloaded (or the interface is deleted and created again) they are gone, and on the
userspace datapath ovs-vswitchd keeps reading the old interface and never receives on the
new one (checked with OVS 3.1: the port keeps its OpenFlow number and sends, but receives
nothing, even after a ``del-port``/``add-port`` in one transaction).  `repair_uplink`, run by
the controller when netlink reports the uplink under a new interface index, re-plugs the
port in Open vSwitch (same OpenFlow port number, same marks) and prepares the interface
again.  Which of these a datapath needs: `wlbridge.host.datapath`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wlbridge.host import datapath

if TYPE_CHECKING:
    from wlbridge.host.hostnet import HostNet, SavedState


def prepare_uplink(net: HostNet, state: SavedState, name: str,
                   warnings: list[str], bridge: str | None = None) -> list[str]:
    """Idempotently give interface `name` what setup gave the uplink; one line per change.
    What could not be done but does not stop the bridge working goes to `warnings`.
    RA-learned routes left on `name` move to `bridge` (removed when it is None)."""
    from wlbridge.host.hostnet import INGRESS_OURS, RA_OFF, IsolationError

    changes: list[str] = []
    if not net.get_allmulticast(name):
        net.set_allmulticast(name, True)
        changes.append(f"allmulticast on for {name}")
    current = net.get_tx_checksum(name) or {} if state.tx_checksum else {}
    if (any(current.get(feature) for feature in state.tx_checksum or ())
            and net.set_tx_checksum(name, dict.fromkeys(state.tx_checksum, False))):
        changes.append(f"TX checksum offload off on {name}")
    if state.uplink_ra:        # IPv6 on: the uplink stops taking router advertisements
        changes += net.set_ipv6_conf(name, {k: RA_OFF[k] for k in state.uplink_ra
                                            if k in RA_OFF})
        changes += net.move_ra_leftovers(name, bridge)
    if state.uplink_ingress == INGRESS_OURS:
        try:
            changes += net.isolate_uplink(name)
        except IsolationError as exc:
            warnings.append(f"could not filter what the host receives on {name}: {exc}; "
                            "the host stack also gets every frame arriving there "
                            "(duplicate ping replies, guests' traffic in its counters)")
    return changes


def repair_uplink(bridge: str, uplink: str, remote: str | None) -> tuple[list[str], list[str]]:
    """After the uplink interface was re-created: re-plug its port (where the datapath needs
    it) and prepare the interface again.  (changes, warnings); raises on OVSDB/netlink
    failures (the caller logs them)."""
    from wlbridge.host import ovsdb
    from wlbridge.host.hostnet import HostNet, SavedState

    changes: list[str] = []
    warnings: list[str] = []
    with ovsdb.connect(remote, 5.0) as db:
        info = db.bridge_info(bridge)
        if info is None:
            return changes, [f"bridge {bridge} is gone"]
        saved = info.external_ids.get(ovsdb.SAVED_KEY)
        if saved:
            with HostNet() as net:
                changes += prepare_uplink(net, SavedState.from_json(saved), uplink, warnings,
                                          bridge=bridge)
        if datapath.traits(info.datapath_type).replug_recreated_port and \
                db.replug_port(bridge, uplink):
            changes.append(f"port {uplink} re-plugged in Open vSwitch (same OpenFlow port)")
    return changes, warnings
