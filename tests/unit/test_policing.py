"""Address policing (issue 25 item 3): every bound guest address re-announced from the station
MAC on a bounded, spread schedule and at (re)association; the station's IPv6 budget with its
overflow refused (and shown), and privacy-address churn kept within it.  Packet fate through
the simulated switch and the real core."""

from __future__ import annotations

import ipaddress

from ofsim import arp_request, udp
from rig import HOST_IP, ROUTER, STATION, UP, Rig, ip, mac
from v6frames import dad, ll, options, udp6
from wlbridge.cli.status_client import render
from wlbridge.core import CoreConfig
from wlbridge.model.state import Port

G1, G2, G3 = 2, 3, 4
LAN_IP = "10.0.0.1"
LAN6 = "2001:db8:9::1"


def rig(*guests: int, **config) -> Rig:
    return Rig(guests=guests or (G1, G2), config=CoreConfig(uplink="wlan0", **config))


def eui64(port: int) -> str:
    """The guest's SLAAC address from its MAC (modified EUI-64): its stable address."""
    b = bytes.fromhex(mac(port).replace(":", ""))
    iid = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return str(ipaddress.IPv6Address(b"\x20\x01\x0d\xb8\x00\x01" + b"\0" * 2 + iid))


def temp(port: int, n: int) -> str:
    """A temporary (privacy) address of the guest: a random-looking interface identifier."""
    return str(ipaddress.IPv6Address(f"2001:db8:1:0:{0x5a00 + port:x}:{n:x}:9e3:{0x7100 + n:x}"))


def announcements(outputs: list) -> list[tuple[str, dict]]:
    """(address, frame) of every announcement the uplink got: gratuitous ARPs and
    unsolicited NAs, each checked to come from the station MAC."""
    got = []
    for port, h in outputs:
        if port != UP:
            continue
        if h.get("arp_op") == 1 and h.get("arp_spa") == h.get("arp_tpa"):
            assert h["eth_src"] == STATION and h["arp_sha"] == STATION
            assert h["eth_dst"] == "ff:ff:ff:ff:ff:ff"
            got.append((h["arp_spa"], h))
        elif h.get("icmpv6_type") == 136:
            assert h["eth_src"] == STATION and options(h) == {"tll": STATION}
            got.append((h["ipv6_nd_target"], h))
    return got


def run(r: Rig, seconds: int, step: float = 1.0) -> list[tuple[float, str]]:
    """Let `seconds` pass in ticks of `step`: (when, address) of every announcement."""
    seen = []
    for _ in range(int(seconds / step)):
        d = r.advance(step)
        seen += [(r.now, a) for a, _ in announcements(d.outputs)]
    return seen


def bind_many(r: Rig, port: int, count: int, v6: int = 0) -> list[str]:
    """The guest behind `port` uses `count` IPv4 addresses (gratuitous ARP each) and `v6`
    IPv6 ones (DAD each)."""
    ips = [f"10.{port}.{1 + i // 200}.{10 + i % 200}" for i in range(count)]
    for a in ips:
        r.send(port, arp_request(mac(port), a, a))
    six = [f"2001:db8:1::{port}:{n + 1:x}" for n in range(v6)]
    for a in six:
        r.send(port, dad(mac(port), a))
    assert set(ips + six) <= set(r.core.bindings)
    return ips + six


# ------------------------------------------------------------------ re-announcement
def test_every_bound_address_is_announced_again_once_per_interval_one_at_a_time():
    r = rig(reannounce_interval=20)
    bound = bind_many(r, G1, 3, v6=1) + bind_many(r, G2, 1)
    start = r.now
    seen = run(r, 65)
    # newly bound: each at once, one a second
    first = [a for t, a in seen if t <= start + len(bound)]
    assert sorted(first) == sorted(bound)
    # then every address, every interval
    for a in bound:
        times = [t for t, x in seen if x == a]
        assert len(times) in (3, 4), (a, times)
        assert all(19 <= b - t <= 21 for t, b in zip(times[1:], times[2:])), (a, times)
    # spread: never two in one tick
    assert len({t for t, _ in seen}) == len(seen)
    later = [t for t, _ in seen if t > start + len(bound)]
    assert all(b - a >= 4 for a, b in zip(later, later[1:])), later
    counters = r.core.counters
    assert counters["station.reannounced"] + counters["station.announced_new"] == len(seen)


def test_a_newly_bound_address_is_announced_within_a_second_even_mid_round():
    r = rig(reannounce_interval=600)
    bind_many(r, G1, 1)
    run(r, 5)
    r.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    assert [a for _, a in run(r, 1)] == [ip(G2)]


def test_the_host_addresses_are_not_part_of_the_round():
    r = rig(reannounce_interval=10)
    bind_many(r, G1, 1)
    assert {a for _, a in run(r, 30)} == {"10.2.1.10"}  # never HOST_IP
    assert HOST_IP in r.core.host_ips


def test_fifty_addresses_at_the_default_interval_stay_under_one_frame_a_second():
    r = rig(G1, max_ips_per_port=64, idle_timeout=3600)  # (quiet guests keep their bindings)
    bound = bind_many(r, G1, 50)
    seen = run(r, 600, step=0.5)
    assert len(seen) / 600 <= 1.0
    counts = {a: sum(1 for _, x in seen if x == a) for a in bound}
    assert min(counts.values()) >= 9  # each about every 60 s
    windows = {}
    for t, _ in seen:
        windows[int(t)] = windows.get(int(t), 0) + 1
    assert max(windows.values()) == 1  # never a burst


def test_the_rate_bound_stretches_the_round_when_many_addresses_are_bound():
    r = rig(G1, max_ips_per_port=64, reannounce_interval=10, reannounce_rate=2,
            idle_timeout=3600)
    bind_many(r, G1, 40)
    seen = run(r, 60, step=0.25)
    assert 100 <= len(seen) <= 120  # 2 frames/s, not 4
    assert r.core.status(r.now)["policing"]["reannounce_every"] == 20


def test_re_announcement_adds_no_packet_in_to_data_traffic():
    r = rig(reannounce_interval=5)
    bind_many(r, G1, 1)
    r.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    before = r.packet_ins
    for n in range(1000):
        if n % 50 == 0:
            r.advance(2)  # the round goes on meanwhile
        src, dst = (G1, "10.2.1.10") if n % 2 else (G2, ip(G2))
        d = r.send(src, udp(mac(src), ROUTER, dst, LAN_IP, 4000, 7))
        assert d.out(UP) is not None
        d = r.send(UP, udp(ROUTER, STATION, LAN_IP, dst, 7, 4000))
        assert d.out(src)["eth_dst"] == mac(src)
    assert r.packet_ins == before
    assert r.core.counters["station.reannounced"] >= 12


def test_zero_turns_the_round_off_but_a_reassociation_still_announces_everything():
    r = rig(reannounce_interval=0)
    bound = bind_many(r, G1, 2, v6=1)
    assert run(r, 120, step=5) == []
    assert r.core.next_due() is None or r.core.next_due() > r.now
    # the uplink loses its carrier and gets it back (reassociation): all at once
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=False), r.now))
    d = r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=True), r.now))
    assert {a for a, _ in announcements(d.outputs)} >= set(bound)


def test_nothing_is_sent_while_the_uplink_is_down_and_the_round_goes_on_after():
    r = rig(reannounce_interval=4)
    bind_many(r, G1, 2)
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=False), r.now))
    assert run(r, 10) == []
    assert r.core.counters["station.reannounced"] >= 2  # (the round went on, unsent)
    r.apply(r.core.port_modified(Port(UP, "wlan0", STATION, up=True), r.now))
    r.advance(5)  # (the reassociation's own announcements, repeated twice, are over)
    assert {a for _, a in run(r, 8)} == {"10.2.1.10", "10.2.1.11"}


def test_the_shell_is_woken_for_the_round():
    r = rig(reannounce_interval=30)
    bind_many(r, G1, 1)
    r.advance(0)
    due = r.core.next_due()
    assert due is not None and r.now < due <= r.now + 30


# ------------------------------------------------------------------------ IPv6 budget
def reaches(r: Rig, port: int, addr: str) -> bool:
    return port in r.send(UP, udp6(ROUTER, STATION, LAN6, addr)).ports()


def goes_out(r: Rig, port: int, addr: str) -> bool:
    return r.send(port, udp6(mac(port), ROUTER, addr, LAN6)).out(UP) is not None


def test_the_station_budget_counts_all_guests_and_refuses_the_overflow_by_name():
    r = rig(G1, G2, G3, max_ipv6_per_station=4)
    for port in (G1, G2):
        r.send(port, dad(mac(port), ll(port)))
        r.send(port, dad(mac(port), eui64(port)))
    r.send(G3, dad(mac(G3), ll(G3)))
    assert ll(G3) not in r.core.bindings
    assert not goes_out(r, G3, ll(G3)) and not reaches(r, G3, ll(G3))
    assert all(reaches(r, p, eui64(p)) for p in (G1, G2))
    assert r.core.counters["refused.ipv6-station-limit"] >= 1
    policing = r.core.status(r.now)["policing"]
    assert policing["ipv6_used"] == 4 and policing["ipv6_budget"] == 4
    assert [(x["ip"], x["port"], x["mac"]) for x in policing["ipv6_refused"]] == \
        [(ll(G3), "g4", mac(G3))]
    assert f"refused over it: {ll(G3)} (g4" in render(r.core.status(r.now), now=r.now)
    # IPv4 is not counted: the guest still gets its IPv4 address
    r.send(G3, arp_request(mac(G3), ip(G3), ip(G3)))
    assert r.core.bindings[ip(G3)].port_no == G3
    # room again (an address of another guest ends): the refused one binds, leaves the list
    r.apply(r.core.port_deleted(G2, r.now))
    r.send(G3, dad(mac(G3), ll(G3)))
    assert reaches(r, G3, ll(G3))
    assert r.core.status(r.now)["policing"]["ipv6_refused"] == []


def test_privacy_address_churn_releases_the_guests_oldest_temporary_address_first():
    r = rig(G1, G2, max_ipv6_per_station=5)
    for a in (ll(G1), eui64(G1), temp(G1, 1), temp(G1, 2)):
        r.send(G1, dad(mac(G1), a))
        r.now += 10
    r.send(G2, dad(mac(G2), ll(G2)))  # the budget is full
    for n in (3, 4, 5):  # a new temporary address a day, the oldest one goes
        r.now += 10
        assert goes_out(r, G1, temp(G1, n))
        assert reaches(r, G1, temp(G1, n))
        assert temp(G1, n - 2) not in r.core.bindings
        assert not reaches(r, G1, temp(G1, n - 2))
        assert reaches(r, G1, temp(G1, n - 1))
    # the stable and link-local addresses and the other guest's were never touched
    assert all(reaches(r, G1, a) for a in (ll(G1), eui64(G1)))
    assert reaches(r, G2, ll(G2))
    assert r.core.counters["bindings.removed.ipv6-budget"] == 3
    assert r.core.counters["refused.ipv6-station-limit"] == 0
    # a guest without a temporary address of its own takes none of another's: refused
    r.send(G2, dad(mac(G2), eui64(G2)))
    assert eui64(G2) not in r.core.bindings
    assert len([a for a in r.core.bindings if ":" in a]) == 5


def test_without_an_eui64_address_the_first_learned_stands_for_the_stable_one():
    r = rig(G1, max_ipv6_per_station=3)
    for n in (1, 2, 3):  # stable-privacy (RFC 7217) first, then a temporary one
        r.send(G1, dad(mac(G1), temp(G1, n) if n > 1 else ll(G1)))
        r.now += 5
    # ll + temp2 (standing in as stable) + temp3: the next replaces temp3, not temp2
    r.send(G1, dad(mac(G1), temp(G1, 4)))
    assert {temp(G1, 2), temp(G1, 4)} <= set(r.core.bindings)
    assert temp(G1, 3) not in r.core.bindings


def test_metrics_show_the_budget_and_the_refused_addresses():
    from wlbridge.app.status_server import MetricsCollector

    r = rig(G1, G2, max_ipv6_per_station=1)
    r.send(G1, dad(mac(G1), ll(G1)))
    r.send(G2, dad(mac(G2), ll(G2)))
    families = {f.name: f for f in MetricsCollector(lambda: r.core.status(r.now)).collect()}
    used = {s.labels["kind"]: s.value for s in families["wlbridge_ipv6_station_budget"].samples}
    assert used == {"used": 1, "max": 1}
    assert families["wlbridge_ipv6_station_refused"].samples[0].value == 1
    events = {s.labels["event"]: s.value for s in families["wlbridge_events"].samples}
    assert events["refused.ipv6-station-limit"] == 1
