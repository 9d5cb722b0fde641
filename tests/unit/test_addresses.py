"""One MAC predicate for the DHCP code, the binding table and the state file (issue 14)."""

from __future__ import annotations

import pytest
from wlbridge.model import state
from wlbridge.model.addresses import is_unicast_mac
from wlbridge.proto import dhcp


@pytest.mark.parametrize("mac,unicast", [
    ("02:00:00:00:00:01", True), ("02:00:00:00:00:00", True), ("AA:BB:CC:DD:EE:F0", True),
    ("02-00-00-00-00-01", True),
    ("00:00:00:00:00:00", False), ("01:00:5e:00:00:01", False), ("ff:ff:ff:ff:ff:ff", False),
    ("33:33:00:00:00:01", False),
    ("2:0:0:0:0:1", False), ("02:00:00:00:00", False), ("02:00:00:00:00:00:00", False),
    ("zz:00:00:00:00:01", False), ("0200.0000.0001", False), ("", False), (None, False),
    (b"\x02\x00\x00\x00\x00\x01", False),
])
def test_every_layer_agrees_on_what_a_unicast_mac_is(mac, unicast):
    assert is_unicast_mac(mac) is unicast
    # the DHCP code and the binding table use this one predicate, not look-alikes
    assert dhcp.is_unicast_mac is is_unicast_mac and state.is_unicast_mac is is_unicast_mac
