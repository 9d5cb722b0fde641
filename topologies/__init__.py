"""Emulated Wi-Fi LANs for wlbridge's tests and demo (test tooling, not product code).

A topology is a `networkx.Graph` (see `topologies.graph`); `World` realises it with network
namespaces, veth pairs, an AP (Linux bridge + nftables 802.11 one-MAC rule) and a DHCP server.
"""

from .apfilter import Counter
from .capture import Capture, capture_lines, tcpdump_lines
from .cleanup import cleanup_leftovers, free_prefix
from .dhcp import Lease
from .graph import (
    SUPERNET,
    SUPERNET6,
    TopologyError,
    basic_lan,
    describe,
    guest_port,
    lan_ifname,
    make_mac,
    new_prefix,
    nodes_with_role,
    second_lan,
    slaac_address,
    station_uplink,
    subnet6_for,
    subnet_for,
    the,
    validate,
)
from .host import Host
from .ovs import OvsBridge, OvsError, ovs_problem
from .procs import Proc
from .shared_port import SharedPort
from .world import World, build

__all__ = [
    "SUPERNET", "SUPERNET6", "Capture", "Counter", "Host", "Lease", "OvsBridge", "OvsError", "Proc", "SharedPort",
    "TopologyError", "World", "basic_lan", "build", "capture_lines", "cleanup_leftovers", "describe", "free_prefix", "guest_port",
    "lan_ifname", "make_mac", "new_prefix", "nodes_with_role", "ovs_problem", "second_lan", "slaac_address",
    "station_uplink", "subnet6_for", "subnet_for", "tcpdump_lines", "the", "validate",
]
