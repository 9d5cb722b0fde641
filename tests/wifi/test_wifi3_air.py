"""No guest MAC ever reaches the AP: hostapd's own view, and every frame on the air.

hwsim0 is mac80211_hwsim's monitor of the shared medium: it sees each radio's frames as
transmitted.  The capture runs from before the station associated (beacons excluded).
"""

from __future__ import annotations

from conftest import STATION_IP

from topologies.wifibed.bed import PEER_IP, air_frames


def test_every_frame_on_the_air_carries_only_the_station_and_ap_macs(bed, guests):
    for g in guests.values():          # fresh traffic from each guest, both ways
        assert g.ping(PEER_IP, count=2) and g.ping(STATION_IP)
    guest_macs = {g.mac for g in guests.values()}
    allowed_tx = {bed.station_mac, *bed.ap_macs.values()}
    from_station = 0
    for f in air_frames(bed.logs / "air.pcap"):
        assert not guest_macs & f.addrs, f"a guest MAC on the air: {f}"
        if f.ta is not None:
            assert f.ta in allowed_tx, f"unknown transmitter: {f}"
        if f.to_ds:
            assert not f.from_ds, f"a 4-address frame: {f}"
            assert f.ta == bed.station_mac, f"to-DS frame not from the station: {f}"
            from_station += 1
    # Positive control: at least this test's echo requests to the peer went over the air.
    assert from_station >= 2 * len(guests), "the station's data frames were not captured"


def test_hostapd_never_saw_a_foreign_station(bed, guests):
    log = bed.hostapd_log()
    assert "Class 3 frame received from nonassociated STA" not in log
    for g in guests.values():
        assert g.mac not in log.lower()
    stations = [line for line in bed.hostapd_cli("wlan0", "all_sta").splitlines()
                if line.count(":") == 5 and "=" not in line]
    assert stations == [bed.station_mac]
