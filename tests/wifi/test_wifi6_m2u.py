"""An AP with `multicast_to_unicast=1`: it delivers broadcast and multicast frames to the
station as unicast to the station MAC.  DHCP and ARP for guests must still work."""

from __future__ import annotations

import pytest
from conftest import BRIDGE

from topologies.procs import wait_for
from topologies.wifibed.bed import PEER_IP


@pytest.fixture(scope="module")
def m2u_ap(bed, guests, wlbridge):
    """Only AP 1, restarted with multicast_to_unicast=1; the station reconnects to it."""
    bed.stop_ap("wlan2")
    bed.hostapd_extra["multicast_to_unicast"] = "1"
    bed.start_ap("wlan0")
    assert bed.wait_associated(60) == bed.ap_macs["wlan0"]
    assert "multicast_to_unicast=1" in bed.hostapd_conf("wlan0").read_text()
    return bed


@pytest.mark.parametrize("client", ["dhclient", "udhcpc"])
def test_new_dhcp_guest_gets_a_lease_and_reaches_the_lan(m2u_ap, client):
    g = m2u_ap.add_guest(f"m2u-{client[:2]}", BRIDGE)
    ip = g.dhcp(client, timeout=90)
    assert ip, f"{client} got no lease through a multicast-to-unicast AP"
    assert wait_for(lambda: g.ping(PEER_IP), 30)
    # The peer's ARP request for the guest is a broadcast the AP turns into unicast.
    m2u_ap.run_in_peer("ip", "neigh", "flush", "all")
    assert wait_for(lambda: m2u_ap.peer_ping(ip), 30)


@pytest.mark.parametrize("name", ["static", "dhclient", "udhcpc"])
def test_existing_guests_reach_the_lan_again(m2u_ap, guests, name):
    g = guests[name]
    assert wait_for(lambda: g.ping(PEER_IP), 30)
    m2u_ap.run_in_peer("ip", "neigh", "flush", "all")
    assert wait_for(lambda: m2u_ap.peer_ping(g.ip()), 30)
