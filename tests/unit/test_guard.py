"""`guard`'s causes are counter labels (``refused.<cause>`` in `wlbridge status`) and log
words: each check, its cause and its limits exactly."""

from __future__ import annotations

import pytest
from wlbridge.model.state import Binding, GuestPort
from wlbridge.policy import guard

STATION = "02:11:22:33:44:55"
GUEST = "52:54:00:12:34:56"


@pytest.mark.parametrize("mac,cause", [
    (GUEST, None),
    ("01:00:5e:00:00:01", "bad-mac"),          # multicast
    ("ff:ff:ff:ff:ff:ff", "bad-mac"),
    ("00:00:00:00:00:00", "bad-mac"),
    (STATION, "station-mac"),
    ("52:54:00:00:00:09", "duplicate-mac"),
])
def test_guest_mac(mac, cause):
    assert guard.check_guest_mac(mac, STATION, {"52:54:00:00:00:09"}) == cause


def bindings(n: int, port_no: int = 9) -> dict[str, Binding]:
    return {f"10.0.1.{i}": Binding(f"10.0.1.{i}", port_no, GUEST, "arp", 0.0)
            for i in range(1, n + 1)}


@pytest.mark.parametrize("ip,cause", [
    ("10.0.0.5", None),
    ("0.0.0.0", "bad-ip"), ("127.0.0.1", "bad-ip"), ("224.0.0.1", "bad-ip"),
    ("255.255.255.255", "bad-ip"), ("10.0.0", "bad-ip"),
    ("10.0.0.1", "host-ip"),
    ("10.0.1.1", "ip-in-use"),                 # another port's
])
def test_claim_causes(ip, cause):
    guest = GuestPort(2, "vm1", GUEST)
    assert guard.check_claim(ip, guest, bindings(1), {"10.0.0.1"}, 16, 4096) == cause


def test_claim_limits_are_exact():
    guest = GuestPort(2, "vm1", GUEST, ips={"10.0.2.1", "10.0.2.2"})
    assert guard.check_claim("10.0.0.5", guest, {}, set(), 3, 100) is None
    assert guard.check_claim("10.0.0.5", guest, {}, set(), 2, 100) == "port-limit"
    assert guard.check_claim("10.0.0.5", GuestPort(2, "vm1"), bindings(4), set(), 16, 5) is None
    assert guard.check_claim("10.0.0.5", GuestPort(2, "vm1"), bindings(5), set(), 16,
                             5) == "global-limit"
    # an address the guest holds already is no other's (the limits are for new ones)
    own = bindings(1, port_no=2)
    assert guard.check_claim("10.0.1.1", GuestPort(2, "vm1"), own, set(), 16, 4096) is None
