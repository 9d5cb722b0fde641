"""The uplink stops taking IPv6 router advertisements at setup (what they taught it moves to
the bridge) and gets its own RA settings back at teardown and when setup rolls back."""

from __future__ import annotations

import json
import socket

import pytest
from fake_netlink import FakeMsg
from handoff_fakes import FakeSystem
from hostnet_fakes import FakeDb, FakeNet, opts, state
from wlbridge.cli import bridge_setup, bridge_teardown
from wlbridge.errors import UserError
from wlbridge.host import addr_handoff, hostnet, ovsdb
from wlbridge.host.hostnet import Address, HostNet, Route, SavedState

RA_ON = {"accept_ra": "2", "autoconf": "1"}     # what a laptop's wlan0 may have
OFF = {"accept_ra": "0", "autoconf": "0"}


def saved(db: FakeDb) -> SavedState:
    return SavedState.from_json(db.bridges["br-wl"].external_ids[ovsdb.SAVED_KEY])


def order(net: FakeNet, *calls: tuple) -> list[int]:
    return [net.calls.index(c) for c in calls]


@pytest.mark.parametrize("manager", ["auto", "keep"])
def test_setup_turns_ras_off_on_the_uplink_and_teardown_gives_its_own_back(manager) -> None:
    net = FakeNet({"wlan0": {"ipv6": dict(RA_ON)}})
    db = FakeDb(net=net)
    bridge_setup.setup(db, net, opts(address_manager=manager), out=lambda line: None)
    assert saved(db).uplink_ra == RA_ON
    assert net.links["wlan0"]["ipv6"] == OFF
    assert net.links["br-wl"]["ipv6"] == RA_ON          # the bridge takes the RAs now
    # after the addresses moved: RA-learned routes left on the uplink go to the bridge
    positions = order(net, ("move", "wlan0", "br-wl"), ("ipv6", "wlan0", OFF),
                      ("ra_leftovers", "wlan0", "br-wl"))
    assert positions == sorted(positions)

    net.calls.clear()
    bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None)
    assert net.links["wlan0"]["ipv6"] == RA_ON          # exactly what it had
    positions = order(net, ("move", "br-wl", "wlan0"), ("ipv6", "wlan0", RA_ON))
    assert positions == sorted(positions)


def test_setup_again_turns_them_off_again() -> None:
    net = FakeNet({"wlan0": {"ipv6": dict(RA_ON)}})
    db = FakeDb(net=net)
    bridge_setup.setup(db, net, opts(), out=lambda line: None)
    net.links["wlan0"]["ipv6"]["accept_ra"] = "1"        # someone turned RAs back on
    lines: list[str] = []
    bridge_setup.setup(db, net, opts(), out=lines.append)
    assert net.links["wlan0"]["ipv6"] == OFF
    assert saved(db).uplink_ra == RA_ON                   # the saved values stay the first
    bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None)
    assert net.links["wlan0"]["ipv6"] == RA_ON


def test_an_uplink_without_ipv6_is_left_alone() -> None:
    net = FakeNet({"wlan0": {}})
    db = FakeDb(net=net)
    bridge_setup.setup(db, net, opts(), out=lambda line: None)
    assert saved(db).uplink_ra is None
    bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None)
    assert "ipv6" not in net.links["wlan0"]
    assert not any(c[0] in ("ipv6", "ra_leftovers") for c in net.calls)


def test_a_failed_hand_off_gives_the_uplink_its_ra_settings_back() -> None:
    net = FakeNet({"wlan0": {"ipv6": dict(RA_ON)}})
    db = FakeDb(net=net)
    host = FakeSystem(dies_on=["br-wl"])          # the bridge's dhclient does not start
    with pytest.raises(UserError, match="rolled back"):
        bridge_setup.setup(db, net, opts(address_manager="dhclient"), out=lambda line: None,
                           handoff_host=addr_handoff.Handoff(system=host))
    assert any(line.startswith("spawn dhclient") for line in host.log)   # it was tried
    assert net.links["wlan0"]["ipv6"] == RA_ON
    assert "br-wl" not in db.bridges


def test_saved_state_keeps_the_uplink_ra_settings() -> None:
    st = SavedState(uplink="wlan0", mac="02:00:00:00:00:01", allmulticast=False,
                    uplink_ra=dict(RA_ON))
    assert SavedState.from_json(st.to_json()) == st
    old = json.loads(state().to_json())                   # saved before the field existed
    del old["uplink_ra"]
    assert SavedState.from_json(json.dumps(old)).uplink_ra is None


@pytest.mark.parametrize(("route", "learned"), [
    (Route(6, "fd00:1::", 64, proto=2, expires=1700), True),       # RA prefix (on-link)
    (Route(6, None, 0, "fe80::1", 1024, proto=9, expires=1700), True),  # RA default
    (Route(6, "fd00:2::", 48, "fe80::1", proto=9), True),          # RA route information
    (Route(6, "fd00:1::", 64, proto=2), False),                     # an address's prefix
    (Route(6, "fe80::", 64, proto=2, expires=10), False),           # link-local
    (Route(6, "fd00:3::", 64, proto=3), False),                     # `ip route add`
    (Route(4, "10.0.0.0", 24, proto=9), False),
])
def test_ra_learned_routes(route: Route, learned: bool) -> None:
    assert hostnet.is_ra_route(route) is learned


@pytest.mark.parametrize(("addr", "made"), [
    (Address(6, "fd00:1::211:22ff:fe33:4455", 64, flags=0x100, valid_lft=86400), True),  # SLAAC
    (Address(6, "fd00:1::abcd", 64, flags=0x01, valid_lft=3600), True),     # temporary
    (Address(6, "fd00:1::5", 64, flags=0x80), False),                       # static
    (Address(6, "fe80::1", 64, flags=0x80), False),
    (Address(4, "10.0.0.2", 24), False),
])
def test_ra_made_addresses(addr: Address, made: bool) -> None:
    assert hostnet.is_ra_address(addr) is made


class Ipr:
    """Routes and addresses of two links (wlan0: 2, br-wl: 7) as netlink messages."""

    def __init__(self, routes: list[tuple[int, Route]], addrs: list[tuple[int, Address]]):
        self.routes = routes
        self.addrs = addrs
        self.calls: list[tuple] = []

    def link_lookup(self, ifname: str) -> list[int]:
        return [{"wlan0": 2, "br-wl": 7}[ifname]]

    def get_routes(self, family: int, table: int) -> list[FakeMsg]:
        return [FakeMsg({"family": socket.AF_INET6, "dst_len": r.dst_len, "proto": r.proto,
                         "scope": 0, "type": 1, "table": 254, "tos": 0, "flags": 0},
                        {"RTA_DST": r.dst, "RTA_GATEWAY": r.gateway, "RTA_OIF": oif,
                         "RTA_TABLE": 254, "RTA_PRIORITY": r.priority,
                         "RTA_CACHEINFO": {"rta_expires": (r.expires or 0) * 100}})
                for oif, r in self.routes if family == socket.AF_INET6]

    def get_addr(self, index: int, family: int) -> list[FakeMsg]:
        return [FakeMsg({"family": socket.AF_INET6, "prefixlen": a.prefixlen, "scope": 0,
                         "flags": 0},
                        {"IFA_ADDRESS": a.address, "IFA_FLAGS": a.flags,
                         "IFA_CACHEINFO": {"ifa_valid": a.valid_lft or 0xFFFFFFFF,
                                           "ifa_preferred": a.valid_lft or 0xFFFFFFFF}})
                for i, a in self.addrs if i == index]

    def route(self, cmd: str, **kw) -> None:
        self.calls.append(("route", cmd, kw["oif"], kw.get("dst"), kw.get("gateway")))

    def addr(self, cmd: str, **kw) -> None:
        self.calls.append(("addr", cmd, kw["index"], kw["address"]))


def test_what_ras_left_on_the_uplink_moves_to_the_bridge() -> None:
    prefix = Route(6, "fd00:1::", 64, proto=2, priority=256, expires=1700)
    other = Route(6, "fd00:9::", 64, proto=2, priority=256, expires=1700)
    default = Route(6, None, 0, "fe80::1", 1024, proto=9, expires=1700)
    link_local = Route(6, "fe80::", 64, proto=2, priority=256)
    slaac = Address(6, "fd00:1::211:22ff:fe33:4455", 64, flags=0x100, valid_lft=86400)
    static = Address(6, "fd00:1::5", 64, flags=0x80)
    ipr = Ipr(routes=[(2, prefix), (2, other), (2, default), (2, link_local),
                      (7, Route(6, "fd00:1::", 64, proto=2, priority=256))],  # the bridge's own
              addrs=[(2, slaac), (2, static)])
    net = HostNet(ipr)
    lines = net.move_ra_leftovers("wlan0", "br-wl")
    assert ("route", "del", 2, "fd00:1::", None) in ipr.calls
    assert ("route", "replace", 7, "fd00:1::", None) not in ipr.calls  # the bridge has one
    assert ("route", "replace", 7, "fd00:9::", None) in ipr.calls
    assert ("route", "replace", 7, None, "fe80::1") in ipr.calls
    assert not any(c[3] == "fe80::" for c in ipr.calls if c[0] == "route")
    assert ("addr", "del", 2, slaac.address) in ipr.calls
    assert not any(c[3] == static.address for c in ipr.calls if c[0] == "addr")
    assert len(lines) == 4
    # without a bridge (a re-created uplink): removed only
    ipr.calls.clear()
    net.move_ra_leftovers("wlan0", None)
    assert not any(c[1] == "replace" for c in ipr.calls)


def test_ipv6_sysctls_are_read_and_written_only_when_they_differ(tmp_path, monkeypatch):
    monkeypatch.setattr(hostnet, "IPV6_CONF", str(tmp_path))
    (tmp_path / "wlan0").mkdir()
    (tmp_path / "wlan0" / "accept_ra").write_text("1\n")
    (tmp_path / "wlan0" / "autoconf").write_text("0\n")
    net = HostNet(Ipr([], []))
    assert net.ipv6_conf("wlan0") == {"accept_ra": "1", "autoconf": "0"}
    assert net.ipv6_conf("nope") == {}                    # IPv6 off (or no such link)
    assert net.set_ipv6_conf("wlan0", OFF) == ["IPv6 accept_ra=0 on wlan0"]
    assert net.ipv6_conf("wlan0") == OFF
    assert net.set_ipv6_conf("wlan0", OFF) == []
