"""The station stays associated through group rekeys and a PTK rekey with wlbridge running
(the AP runs with `HOSTAPD_REKEYS` for the whole session; EAPOL goes over nl80211's control
port while wlan1 is an OVS port)."""

from __future__ import annotations

from conftest import HOSTAPD_REKEYS, log_since, record

from topologies.procs import Proc, wait_for
from topologies.wifibed.bed import PEER_IP

GROUP_DONE = "WPA: Group rekeying completed"
PTK_DONE = "WPA: Key negotiation completed"
DISCONNECTED = "CTRL-EVENT-DISCONNECTED"


def test_station_stays_associated_through_group_and_ptk_rekeys(bed, guests, wlbridge):
    supplicant = bed.procs["wpa_supplicant"]
    mark = len(supplicant.output())
    g = guests["dhclient"]
    window = 2 * int(HOSTAPD_REKEYS["wpa_ptk_rekey"]) + 10
    pinger = Proc("rekey-ping", g.netns, ["ping", "-n", "-i", "0.5", "-W", "1", "-w",
                                          str(window), PEER_IP], bed.logs / "rekey-ping.out")

    def rekeyed():
        log = log_since(supplicant, mark)
        return log.count(GROUP_DONE) >= 2 and log.count(PTK_DONE) >= 1

    try:
        done = wait_for(rekeyed, window, 1)
    finally:
        pinger.stop()
    log = log_since(supplicant, mark)
    assert done, f"rekeys in {window} s: group {log.count(GROUP_DONE)}, PTK {log.count(PTK_DONE)}"
    assert DISCONNECTED not in log
    assert bed.associated()
    assert wlbridge.connected()
    out = pinger.output()
    sent, received = out.count("icmp_seq="), out.count("bytes from")
    record("rekey_ping", group_rekeys=log.count(GROUP_DONE), ptk_rekeys=log.count(PTK_DONE),
           sent=sent, received=received)
    assert received > 0
    assert wait_for(lambda: g.ping(PEER_IP), 20)
