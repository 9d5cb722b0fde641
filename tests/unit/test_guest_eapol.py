"""EAPOL is the station's: whatever a guest sends with ethertype 0x888e (EAPOL-Start or
-Logoff, to the AP, to the PAE group, as its first frame, with its own MAC or the station's)
goes nowhere.  A guest's Logoff on the air would unauthorize the station (802.1X); a Start
would restart its authentication.  The Wi-Fi test bed checks the same on a real AP
(tests/wifi/test_wifi10_security.py)."""

from __future__ import annotations

import pytest
from ofsim import ether
from rig import LOCAL, ROUTER, STATION, UP, Rig, mac

G1, G2 = 2, 3
ETH_EAPOL = 0x888E
PAE_GROUP = "01:80:c2:00:00:03"
REFUSED = {"guest": "refused.eapol", "station": "refused.station-mac"}


@pytest.mark.parametrize("dst", [ROUTER, PAE_GROUP, "ff:ff:ff:ff:ff:ff"])
@pytest.mark.parametrize("src", ["guest", "station"])
def test_a_new_guests_eapol_goes_nowhere(dst, src):
    rig = Rig()
    eth_src = mac(G1) if src == "guest" else STATION
    for _ in range(3):                  # first frame on the port, then once it is known
        d = rig.send(G1, ether(eth_src, dst, ETH_EAPOL))
        assert d.outputs == [], d
    # each one reached the controller and was refused: as EAPOL, or for the station's MAC
    assert rig.core.counters[REFUSED[src]] == 3
    # the station's own EAPOL still goes out, and the AP's still reaches the host
    assert rig.send(LOCAL, ether(STATION, PAE_GROUP, ETH_EAPOL)).ports() == {UP}
    assert rig.send(UP, ether(ROUTER, STATION, ETH_EAPOL)).ports() == {LOCAL}


def test_a_learned_guests_eapol_is_refused_every_time():
    rig = Rig()
    rig.send(G1, ether(mac(G1), ROUTER, 0x88B5))         # learns the guest's MAC
    for _ in range(5):
        assert rig.send(G1, ether(mac(G1), ROUTER, ETH_EAPOL)).outputs == []
    assert rig.core.counters["refused.eapol"] == 5
    assert rig.send(G2, ether(mac(G2), PAE_GROUP, ETH_EAPOL)).outputs == []
