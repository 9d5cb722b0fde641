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


def test_a_port_carrying_several_guests_shows_each_mac_with_its_own_addresses():
    a, b, c = "02:00:00:00:0a:01", "02:00:00:00:0b:01", "02:00:00:00:0c:01"
    snap = {"bridge": "br-wl", "connected": True, "generation": 1, "uplink": {},
            "counters": {},
            "guests": [{"port": "lb0-ovs", "port_no": 5, "mac": a, "macs": [a, b, c],
                        "confirmed": True,
                        "ips": [{"ip": "10.0.0.61", "mac": a, "source": "dhcp", "expires": None},
                                {"ip": "10.0.0.62", "mac": b, "source": "arp", "expires": None},
                                {"ip": "fd00::a", "mac": a, "source": "nd", "expires": None}]}]}
    lines = render(snap, now=0).splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("lb0-ovs"))
    rows = [line.split() for line in lines[start:start + 4]]
    assert rows[0][:3] == ["lb0-ovs", a, "10.0.0.61"]
    assert rows[1][:1] == ["fd00::a"]  # a's too: its MAC not repeated
    assert rows[2][:2] == [b, "10.0.0.62"]
    assert rows[3][:2] == [c, "-"]  # a guest with no address yet


def test_a_container_port_is_named_by_its_runtime():
    from wlbridge.cli.status_client import name_containers

    snap = {"bridge": "br-wl", "connected": True, "generation": 1, "uplink": {},
            "counters": {}, "guests": [guest("wl-0123456789ab", True), guest("vm-b", True)]}
    name_containers(snap, {"wl-0123456789ab": "web", "wl-gone": "old"})
    lines = {line.split()[0]: line for line in render(snap, now=0).splitlines()
             if line.startswith(("wl-", "vm-"))}
    assert lines["wl-0123456789ab"].endswith("  container web")
    assert "container" not in lines["vm-b"]
    assert [g.get("container") for g in snap["guests"]] == ["web", None]   # --json too


def test_the_lan_line_says_which_lan_and_whether_it_is_confirmed() -> None:
    lan = {"subnet": "10.9.0.0/24", "gateway_mac": "02:b0:00:00:00:01", "ssid": "cafe",
           "since": 1000.0, "confirmed": False, "changes": 2}
    text = render({"uplink": {}, "lan": lan}, now=1060.0)
    assert ("lan      10.9.0.0/24 gateway 02:b0:00:00:00:01 SSID 'cafe', since 60s ago, "
            "2 changes of LAN (the station was away: not confirmed yet)") in text.splitlines()
    assert not [line for line in render({"uplink": {}}, now=0.0).splitlines()
                if line.startswith("lan ")]


def test_a_vm_libvirt_plugged_is_named_on_its_ports_row():
    snap = {"bridge": "br-wl", "connected": True, "generation": 1, "uplink": {}, "counters": {},
            "guests": [{**guest("vnet0", True), "vm": "debian12", "vm_id": "0d9b"},
                       guest("veth1", True)]}
    lines = {line.split()[0]: line for line in render(snap, now=0).splitlines()
             if line.startswith(("vnet0", "veth1"))}
    assert lines["vnet0"].endswith("VM debian12") and "VM" not in lines["veth1"]
