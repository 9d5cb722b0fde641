"""A supplicant on the packet-socket path (`-p control_port=0`), the way wpa_supplicant < 2.10
and drivers without nl80211's control port receive EAPOL: through the netdev, which OVS's
rx handler takes once wlan1 is a port.  With `-b br-wl` it reads EAPOL on the bridge's
internal port instead, where wlbridge's flows deliver it (uplink EAPOL -> LOCAL)."""

from __future__ import annotations

import time

import pytest
from conftest import BRIDGE, record

from topologies.procs import wait_for
from topologies.wifibed.bed import PEER_IP

#: Seconds to wait for a handshake that should complete (1-17 s seen under emulation), and
#: to conclude one never will (the normal one completes in under 4 s).
COMPLETES, NEVER = 90, 30


def handshake(bed, driver_param, bridge=None, timeout=COMPLETES) -> float | None:
    bed.start_station(driver_param=driver_param, bridge=bridge)
    t0 = time.monotonic()
    ok = bed.wait_associated(timeout)
    return round(time.monotonic() - t0, 2) if ok else None


@pytest.fixture(scope="module")
def restore_station(bed):
    yield
    bed.start_station()
    bed.wait_associated(60)


def test_packet_socket_supplicant_with_bridge_option(bed, guests, wlbridge, restore_station):
    took = handshake(bed, "control_port=0", BRIDGE)
    record("control_port0_with_b_br_wl", associated_after=took)
    assert took is not None, "4-way handshake over br-wl never completed"
    assert wait_for(lambda: guests["static"].ping(PEER_IP), 30)


def test_packet_socket_supplicant_without_bridge_option(bed, guests, wlbridge,
                                                        restore_station):
    took = handshake(bed, "control_port=0", timeout=NEVER)
    record("control_port0_without_b", associated_after=took)
    assert took is None, "expected: EAPOL read on wlan1 never arrives while it is an OVS port"
