"""Several guests behind one guest port: a Linux bridge carrying a world's guests, linked to
the OVS bridge by one veth (as a Linux bridge, a VM with nested guests or a container host
would be).

    shared = SharedPort(world, world.guests).create()   # before wlbridge attaches them
    wl = wlbridge_on(world, guests=[shared])            # `.port`: the one OVS port
    ...
    shared.delete()                                     # (teardown also removes it)

The Linux bridge lives in its own namespace ``<prefix>-lb`` (its own, empty netfilter: the
host's br_netfilter rules never see the bridged frames); the guests' host ends move into it.
The OVS-side end ``<prefix>-lbp`` stays in the root namespace, tagged for `cleanup` like the
world's own links.  Nothing on the Linux bridge speaks IPv6 itself (it would be one more MAC
behind the port).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, netns

from . import cleanup
from .procs import run


class SharedPort:
    """`guests` (world `Host`s whose host ends are not attached anywhere yet) behind one
    Linux bridge and one OVS port, `port`."""

    def __init__(self, world: Any, guests: Sequence[Any], name: str = "lb") -> None:
        self.world = world
        self.guests = list(guests)
        self.netns = f"{world.prefix}-{name}"
        self.bridge = "br0"  # inside `netns`
        self.port = f"{world.prefix}-{name}p"  # root namespace: the OVS port
        self.inner = "uplink0"  # inside `netns`: the port's peer on the Linux bridge
        self.name = self.port

    def create(self) -> SharedPort:
        ns = self.netns
        netns.create(ns)
        try:
            run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                     "net.ipv6.conf.default.disable_ipv6=1"])
            with IPRoute() as ipr:
                ipr.link("add", ifname=self.port, kind="veth",
                         peer={"ifname": self.inner, "net_ns_fd": ns})
                idx = ipr.link_lookup(ifname=self.port)[0]
                ipr.link("set", index=idx, ifalias=cleanup.alias_for(self.world.prefix))
                Path(f"/proc/sys/net/ipv6/conf/{self.port}/disable_ipv6").write_text("1")
                ipr.link("set", index=idx, state="up")
                for g in self.guests:
                    ipr.link("set", index=ipr.link_lookup(ifname=g.port)[0], net_ns_fd=ns)
            # Userspace OVS datapath + veth: TCP stalls unless TX checksum offload is off.
            run(None, ["ethtool", "-K", self.port, "tx", "off"])
            with IPRoute(netns=ns) as ipr:
                ipr.link("add", ifname=self.bridge, kind="bridge", br_forward_delay=0,
                         br_stp_state=0, br_mcast_snooping=0)
                br = ipr.link_lookup(ifname=self.bridge)[0]
                for name in [self.inner, *(g.port for g in self.guests)]:
                    idx = ipr.link_lookup(ifname=name)[0]
                    ipr.link("set", index=idx, master=br)
                    ipr.link("set", index=idx, state="up")
                ipr.link("set", index=br, state="up")
            for name in [self.inner, *(g.port for g in self.guests)]:
                run(ns, ["ethtool", "-K", name, "tx", "off"])
        except BaseException:
            self.delete()
            raise
        return self

    def delete(self) -> None:
        """Remove the namespace (the guests' host ends go with it) and the OVS-side end."""
        if self.netns in netns.listnetns():
            cleanup.delete_namespaces([self.netns])
        cleanup.delete_root_links([self.port])
