"""The bridge's internal port (the host's own interface) follows the station MAC.

When the station MAC changes (the core learns it from the uplink), the bridge's internal port
must take it too: through OVSDB ``other_config:hwaddr`` (what `wlbridge setup` set), so that
ovs-vswitchd keeps it; if OVSDB refuses, the interface's MAC is set by netlink instead.

`BridgeMac` is the decision, one small state machine (no I/O, no clock; the shell calls it
under its lock):

    unknown --reported--> known --due--> setting --finished/failed--> known
                                           (failed: the MAC waits for netlink, `take_netlink`)

`set_by_ovsdb` and `set_by_netlink` are the two ways of carrying it out.
"""

from __future__ import annotations

import logging

LOG = logging.getLogger("wlbridge.app")


class BridgeMac:
    """What the switch last reported for the internal port, and a change in progress."""

    def __init__(self) -> None:
        self.local: str | None = None   # the internal port's MAC, as the switch reports it
        self.setting: str | None = None  # being set (in a thread of its own)
        self.netlink: str | None = None  # OVSDB failed: to be set through netlink

    def reported(self, mac: str | None) -> None:
        """The switch reported the internal port's MAC (port description or status)."""
        self.local = mac

    def due(self, station_mac: str | None) -> str | None:
        """The MAC to set now (and it is now being set), or None: nothing to do, the
        internal port's MAC not known yet, or a change already in progress."""
        if (station_mac is None or self.local is None or station_mac == self.local
                or self.setting is not None):
            return None
        self.setting = station_mac
        return station_mac

    def finished(self, ok: bool) -> None:
        """The change ended (`ok`: through OVSDB).  Until the switch reports otherwise, the
        port is taken to have the MAC; a failed change waits for `take_netlink`."""
        mac, self.setting = self.setting, None
        if mac is None:
            return
        self.local = mac
        if not ok:
            self.netlink = mac

    def take_netlink(self) -> str | None:
        """The MAC still to be set through netlink (once), or None."""
        mac, self.netlink = self.netlink, None
        return mac


def set_by_ovsdb(remote: str | None, bridge: str, mac: str, dpid: int) -> None:
    """Set ``other_config:hwaddr`` of `bridge` (pinning its datapath id, which OVS would
    otherwise derive from the new MAC: the bridge would reconnect as another switch).
    Raises whatever went wrong."""
    from wlbridge.host import ovsdb

    with ovsdb.connect(remote, 5.0) as db:
        info = db.bridge_info(bridge)
        updates = {"hwaddr": mac}
        if info is not None and "datapath-id" not in info.other_config:
            updates["datapath-id"] = f"{dpid:016x}"
        db.set_other_config(bridge, updates)


def set_by_netlink(bridge: str, mac: str) -> None:
    """Set the MAC of the interface `bridge` directly (pyroute2: call from one thread)."""
    from wlbridge.host.pyroute2_lazy import IPRoute

    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=bridge)[0], address=mac)
