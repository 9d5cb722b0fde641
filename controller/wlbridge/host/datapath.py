"""Everything wlbridge does differently on Open vSwitch's two datapaths, in one place.

* ``netdev`` (userspace; what this project's test machines have): ovs-vswitchd reads each
  port through an AF_PACKET socket, so the host's network stack *also* receives every frame
  arriving on the uplink and on guest ports (duplicate ping replies, the host answering a
  guest's ARP with its own MAC).  Setup therefore puts an eBPF ingress filter on the uplink
  (only EAPOL/pre-auth/TDLS reach the host stack) and the controller one on each guest port
  (`wlbridge.host.port_isolation`).  Veth pairs need TX checksum offload off (TCP stalls
  otherwise), so setup turns it off on the uplink where it was on.  An interface deleted and
  re-created under it (a driver reload) is never read again until its port is re-plugged.
* ``system`` (the openvswitch kernel module): a port's frames go to the datapath through the
  device's rx_handler and never reach the host stack, so no ingress filters are needed; no
  offload change is needed.  Whether ovs-vswitchd re-adds a re-created interface by itself
  was not checked here (no kernel module on these machines): the controller re-plugs it
  anyway, which costs a moment's flap at most.
* Both: the bridge's internal port (the host's interface) takes the station MAC through
  ``other_config:hwaddr``, which ovs-vswitchd keeps across its restarts (an ``ip link set
  address`` would be reverted at its next reconfiguration); OVS derives the datapath id from
  it, so the controller pins ``other_config:datapath-id`` before changing it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Traits:
    name: str
    isolate_host_stack: bool        # eBPF ingress filters on the uplink and guest ports
    tx_checksum_off: bool           # TX checksum offload off on the uplink (veth)
    replug_recreated_port: bool     # re-plug a port whose interface was re-created
    mac_via_hwaddr: bool = True     # internal port MAC through other_config:hwaddr


NETDEV = Traits("netdev", isolate_host_stack=True, tx_checksum_off=True,
                replug_recreated_port=True)
SYSTEM = Traits("system", isolate_host_stack=False, tx_checksum_off=False,
                replug_recreated_port=True)


def traits(datapath_type: str | None) -> Traits:
    """The traits of a bridge's ``datapath_type`` (empty: OVS's default, ``system``)."""
    return NETDEV if datapath_type == "netdev" else SYSTEM
