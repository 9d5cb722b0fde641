"""The host's view of the LAN (wlbridge.host.lan_watch): the identity from the bridge's
address, default gateway and the gateway's neighbour entry; after a reassociation a MAC
cached from the last LAN is never reported, only one resolved again."""

from __future__ import annotations

from wlbridge.host.lan_watch import LanWatch, lan_of, ssid_of

IW_LINK = """Connected to 02:00:00:00:01:00 (on wlan0)
\tSSID: cafe wifi
\tfreq: 2412
"""


def test_the_identity_is_the_subnet_holding_the_gateway_and_the_gateways_mac() -> None:
    assert lan_of(["10.9.0.5/24"], "10.9.0.1", "02:B0:00:00:00:01") == \
        ("10.9.0.0/24", "02:b0:00:00:00:01")
    assert lan_of(["10.0.0.2/24", "10.9.0.5/24"], "10.9.0.1", "x") == ("10.9.0.0/24", "x")
    assert lan_of(["10.0.0.2/24"], "10.9.0.1", "x") is None     # old address, new gateway
    assert lan_of(["10.9.0.5/24"], "10.9.0.1", None) is None    # gateway not resolved
    assert lan_of(["10.9.0.5/24"], None, "x") is None           # no default route
    assert lan_of(["10.9.0.5"], "10.9.0.5", "x") is None        # no prefix length
    assert lan_of(["fe80::1/64"], "10.9.0.1", "x") is None


def test_the_ssid_is_read_from_iw() -> None:
    assert ssid_of(IW_LINK) == "cafe wifi"
    assert ssid_of("Not connected.\n") is None


class Tables:
    """The host's tables as a script: each `read` the next state (the last one stays)."""

    def __init__(self, states: list[tuple[list[str], str | None, str | None]]) -> None:
        self.states = states
        self.forgotten: list[str] = []
        self.probed: list[str] = []
        self.cache: dict[str, str] = {}

    def read(self):
        addresses, gateway, mac = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if gateway and mac:
            self.cache[gateway] = mac
        return addresses, gateway, self.cache.get(gateway) if gateway else None

    def forget(self, gateway: str) -> None:
        self.forgotten.append(gateway)
        self.cache.pop(gateway, None)

    def probe(self, gateway: str) -> None:
        self.probed.append(gateway)


def watch(tables: Tables, ssid: str | None = "home", **kw) -> tuple[LanWatch, list]:
    seen: list = []
    clock = [0.0]

    def sleep(s: float) -> None:
        clock[0] += s

    w = LanWatch("br-wl", "wlan0", on_lan=lambda *a: seen.append(("lan", *a)),
                 on_associated=lambda s: seen.append(("associated", s)),
                 spawn=lambda fn: fn(), tables=tables, ssid=lambda _: ssid, sleep=sleep,
                 monotonic=lambda: clock[0], **kw)
    return w, seen


def test_the_lan_is_reported_at_the_start_once_the_gateway_resolves() -> None:
    tables = Tables([(["10.0.0.2/24"], "10.0.0.1", None)] * 3
                    + [(["10.0.0.2/24"], "10.0.0.1", "02:10:00:00:00:01")])
    w, seen = watch(tables)
    w.start()
    assert seen == [("lan", "10.0.0.0/24", "02:10:00:00:00:01", "home")]
    assert tables.probed == ["10.0.0.1"] * 3 and tables.forgotten == []


def test_after_a_reassociation_the_gateways_cached_mac_is_not_taken() -> None:
    """The old address and its gateway's cached MAC are still there: nothing is reported
    until the host has its new address and the new gateway answered."""
    tables = Tables([(["10.0.0.2/24"], "10.0.0.1", "02:10:00:00:00:01")])
    w, seen = watch(tables, ssid="cafe")
    w.start()
    tables.states = [(["10.0.0.2/24"], "10.0.0.1", None)] * 5 + [
        (["10.9.0.5/24"], "10.9.0.1", None),
        (["10.9.0.5/24"], "10.9.0.1", "02:b0:00:00:00:01")]
    seen.clear()
    w.reassociated()
    assert seen == [("associated", "cafe"), ("lan", "10.9.0.0/24", "02:b0:00:00:00:01", "cafe")]
    assert tables.forgotten == ["10.0.0.1", "10.9.0.1"]


def test_a_lan_never_found_gives_up_after_its_patience() -> None:
    tables = Tables([(["10.0.0.2/24"], None, None)])     # an address, no default route
    w, seen = watch(tables, patience=2.0)
    w.start()
    assert seen == [] and not w.running


def test_a_bridge_without_an_address_is_not_polled_and_its_address_triggers_a_fresh_look():
    """No IPv4 address: one look, and the worker ends (no 0.2 s polling for `patience`: the
    idle controller's wake-ups, and a thread outliving a switch's connection).  After a
    reassociation the gateway's cached MAC is still not taken once the address comes."""
    looks = []
    tables = Tables([([], None, None)])
    read = tables.read
    tables.read = lambda: looks.append(1) or read()
    w, seen = watch(tables, patience=60.0)
    w.start()
    assert len(looks) == 1 and seen == [] and not w.running
    w.reassociated()                                     # the station is back, no lease yet
    assert len(looks) == 2 and not w.running
    tables.cache["10.9.0.1"] = "02:00:00:0d:0d:01"        # an old LAN's gateway MAC, cached
    tables.states = [(["10.9.0.5/24"], "10.9.0.1", None),
                     (["10.9.0.5/24"], "10.9.0.1", "02:b0:00:00:00:01")]
    w.addresses_changed()
    assert seen[-1] == ("lan", "10.9.0.0/24", "02:b0:00:00:00:01", "home")
    assert tables.forgotten == ["10.9.0.1"]
