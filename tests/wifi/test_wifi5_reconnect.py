"""Reassociation (the AP deauthenticates the station) and roaming to a second AP of the same
SSID: the station comes back by itself and guests are reachable again.  How long that takes is
measured and recorded, not asserted (software emulation; see docs/wifibed.md)."""

from __future__ import annotations

import time

from conftest import record

from topologies.procs import wait_for
from topologies.wifibed.bed import PEER_IP, ping


def recovery(bed, guest, since: float, bssid: str, timeout: float = 60) -> dict:
    """Seconds from `since` until the station is associated with `bssid`, the guest reaches
    the peer and the peer reaches the guest (short pings), or None for what never happened."""
    ip = guest.ip()
    result = {}
    for what, pred in (("associated", lambda: bed.associated() == bssid),
                       ("guest_to_peer", lambda: guest.ping(PEER_IP, wait=0.3)),
                       ("peer_to_guest", lambda: ping(ip, "wf-peer", wait=0.3))):
        ok = wait_for(pred, max(0.1, since + timeout - time.monotonic()), 0.05)
        result[what] = round(time.monotonic() - since, 2) if ok else None
    return result


def test_guests_come_back_after_the_ap_deauthenticates_the_station(bed, guests, wlbridge):
    assert bed.wait_associated(30)
    assert wait_for(lambda: guests["udhcpc"].ping(PEER_IP), 20)
    t0 = time.monotonic()
    assert "OK" in bed.hostapd_cli("wlan0", "deauthenticate", bed.station_mac)
    wait_for(lambda: not bed.associated(), 5, 0.05)
    took = recovery(bed, guests["udhcpc"], t0, bed.ap_macs["wlan0"])
    record("reassociation_after_deauth", **took)
    assert None not in took.values(), took
    assert wlbridge.connected()


def test_guests_come_back_after_roaming_to_a_second_ap(bed, guests, wlbridge):
    bed.start_ap("wlan2")
    bssid2 = bed.ap_macs["wlan2"]
    assert bed.wait_associated(30)
    first = bed.associated()
    assert first != bssid2

    def scanned():
        bed.wpa_cli("scan")
        return bssid2 in bed.wpa_cli("scan_results")

    assert wait_for(scanned, 30, 2), "the station never saw the second AP"
    t0 = time.monotonic()
    assert "OK" in bed.wpa_cli("roam", bssid2)
    took = recovery(bed, guests["static"], t0, bssid2)
    record("roaming", from_bssid=first, to_bssid=bssid2, **took)
    assert None not in took.values(), took
    assert bed.wait_associated(30) == bssid2
    assert wait_for(lambda: guests["dhclient"].ping(PEER_IP), 20)
