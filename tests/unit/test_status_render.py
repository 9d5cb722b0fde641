"""`wlbridge status` (text): guests the switch has not confirmed yet say so (issue 13/15)."""

from __future__ import annotations

from wlbridge.cli.status_client import render


def guest(name: str, confirmed: bool) -> dict:
    return {"port": name, "port_no": 5 if confirmed else None, "mac": "02:00:00:00:00:05",
            "confirmed": confirmed, "ips": [{"ip": "10.0.0.5", "source": "dhcp",
                                             "expires": None}]}


def test_unconfirmed_guests_are_marked_and_confirmed_ones_are_not():
    snap = {"bridge": "br-wl", "connected": False, "generation": 3, "uplink": {},
            "guests": [guest("vm-a", False), guest("vm-b", True)], "counters": {}}
    lines = {line.split()[0]: line for line in render(snap, now=0).splitlines()
             if line.startswith("vm-")}
    assert "not confirmed" in lines["vm-a"]
    assert "not confirmed" not in lines["vm-b"]
