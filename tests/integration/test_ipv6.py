"""IPv6 for guests through the one-MAC AP (issue 12), in a dual-stack emulated Wi-Fi LAN.

The LAN (`basic_lan(ipv6=True)`): a ULA /64, the router running radvd (SLAAC prefix, M/O flags,
unicast answers to Router Solicitations) and dnsmasq (DHCPv6, no RAs), a peer with a static
address; guests form addresses by SLAAC (or get a static one: ``static_guests6``) and run ISC
``dhclient -6``.  What the AP sees is captured on its station-facing port and parsed with scapy:
no frame and no Neighbor Discovery option there may carry a guest MAC.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ap_foreign, wait_for, wlbridge
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from topologies import Capture, capture_lines, dhcp, slaac_address
from topologies.graph import the

# ---------------------------------------------------------------- helpers


def ip6(host) -> str:
    return host.addr6.split("/")[0]


def slaac(world, guest) -> str:
    return str(slaac_address(world.subnet6, guest.mac))


def _tail(text: str, n: int = 30) -> str:
    lines = [x for x in text.splitlines() if "DEBUG pyroute2" not in x]
    return "\n".join(x[:300] for x in lines[-n:])


def diag(world, wl=None) -> str:
    parts = []
    if wl is not None:
        parts.append(f"--- controller log (tail) ---\n{_tail(wl.logs())}")
        try:
            parts.append(f"--- counters ---\n{wl.counters()}")
        except OSError as exc:
            parts.append(f"--- status unavailable: {exc}")
    parts.append(f"--- radvd log (tail) ---\n{_tail(world.radvd_log(), 12)}")
    parts.append(f"--- dnsmasq log (tail) ---\n{_tail(world.dnsmasq_log(), 12)}")
    for h in [*world.guests, *world.peers]:
        parts.append(f"--- {h.name} {h.mac}: {h.addrs6()}")
        client = h.client
        if client is not None:
            parts.append(f"    {client.name}: events {h.dhcp6_events()}\n{_tail(client.output(), 8)}")
    parts.append(f"--- AP counters ---\n{world.ap_counters()}")
    return "\n".join(parts)


def expect(pred, timeout: float, what: str, world, wl=None):
    """`wait_for`, with the diagnostics taken when time ran out (not when it started)."""
    value = wait_for(pred, timeout, interval=0.1)
    if not value:
        raise AssertionError(f"timed out waiting for {what}\n{diag(world, wl)}")
    return value


def ap_station_port(world) -> str:
    g = world.graph
    return g.edges[the(g, "ap"), the(g, "station")]["ifnames"][the(g, "ap")]


def capture_at_ap(world, name: str = "ap", bpf: str = "") -> Capture:
    return Capture(world, world.ap_netns, ap_station_port(world), name, bpf)


def nd_lladdrs(pkt) -> list[str]:
    """The link-layer addresses in a frame's Neighbor Discovery options (SLL/TLL), any type."""
    found = []
    for cls in (ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr):
        layer = pkt.getlayer(cls)
        while layer is not None:
            found.append(layer.lladdr.lower())
            layer = layer.payload.getlayer(cls) if layer.payload else None
    return found


def guest_macs_at_ap(pkts, guests) -> list[str]:
    """Frames at the AP's station port carrying a guest MAC (Ethernet or ND option)."""
    macs = {g.mac.lower() for g in guests}
    bad = []
    for p in pkts:
        if Ether not in p:
            continue
        hits = {p[Ether].src.lower(), p[Ether].dst.lower(), *nd_lladdrs(p)} & macs
        if hits:
            bad.append(f"{sorted(hits)}: {p.summary()}")
    return bad


def scapy_send(host, code: str) -> None:
    """Run scapy code (``sendp(...)`` of frames built from the names given) in a namespace."""
    prog = ("from scapy.all import *\n"
            "from scapy.layers.inet6 import *\n"
            f"IFACE = {host.ifname!r}\n" + code)
    res = host.run(sys.executable, "-c", prog, timeout=30)
    assert res.returncode == 0, res.stderr


def status_json(wl) -> dict:
    url = f"http://127.0.0.1:{wl.status_port}"
    return json.loads(wlbridge("status", "--json", "--url", url).stdout)


def bindings6(snap: dict, ip: str) -> list[dict]:
    """Every binding of `ip` in a status snapshot, whatever list of a guest entry holds it
    (IPv4 and IPv6 bindings share ``ips`` or IPv6 has its own list)."""
    want = ipaddress.ip_address(ip)
    found = []
    for g in snap.get("guests", []):
        for value in g.values():
            if not isinstance(value, list):
                continue
            for b in value:
                if not isinstance(b, dict) or "ip" not in b:
                    continue
                try:
                    same = ipaddress.ip_address(b["ip"]) == want
                except ValueError:
                    continue
                if same:
                    found.append({**b, "port": g.get("port"), "mac": g.get("mac")})
    return found


def refusals(wl) -> int:
    return sum(v for k, v in wl.counters().items() if k.startswith("refused."))


@pytest.fixture
def v6lan(make_world):
    """``v6lan(**basic_lan_kwargs)``: a dual-stack world (IPv6 on)."""
    def make(**kw):
        kw.setdefault("n_guests", 2)
        return make_world(ipv6=True, **kw)
    return make


# ---------------------------------------------------------------- SLAAC


@pytest.mark.parametrize("ap_unicast", [False, True], ids=["ap_multicast", "ap_group_to_unicast"])
def test_slaac_guests_form_global_addresses_from_router_adverts(v6lan, wlbridge_on, ap_unicast):
    world = v6lan(group_to_unicast=ap_unicast)
    wl = wlbridge_on(world)
    for g in world.guests:
        g.restart_ipv6()  # boots now: DAD, RS, then RAs (every 3-6 s) do the rest
    for g in world.guests:
        got = g.wait_ip6(slaac(world, g), timeout=15)
        assert got, f"{g.name} formed no SLAAC address {slaac(world, g)}\n{diag(world, wl)}"


def test_router_answers_a_guest_solicitation_unicast_to_the_station(v6lan, wlbridge_on):
    # radvd sends no periodic RAs at all: an address can only come from the unicast RA that
    # answers the guest's RS, addressed to the MAC in the RS's source link-layer option.
    world = v6lan(ra_unsolicited=False, ra_unicast=True)
    wl = wlbridge_on(world)
    cap = capture_at_ap(world, bpf="icmp6")
    for g in world.guests:
        g.restart_ipv6()
    for g in world.guests:
        got = g.wait_ip6(slaac(world, g), timeout=15)
        assert got, f"{g.name}: no address from the RS answer\n{diag(world, wl)}"

    pkts = cap.packets()
    ras = [p for p in pkts if ICMPv6ND_RA in p]
    rss = [p for p in pkts if ICMPv6ND_RS in p]
    assert rss and ras, [p.summary() for p in pkts]
    assert all(not ipaddress.ip_address(p[IPv6].dst).is_multicast for p in ras)
    assert all(p[Ether].dst == world.ap_station_mac for p in ras), [p.summary() for p in ras]
    assert guest_macs_at_ap(pkts, world.guests) == []
    assert ap_foreign(world) == 0, diag(world, wl)


# ---------------------------------------------------------------- what the AP sees


def test_no_guest_mac_in_any_frame_or_nd_option_at_the_ap(v6lan, wlbridge_on):
    world = v6lan(static_guests6=True, group_to_unicast=True)
    g1, g2 = world.guests
    peer, router = world.peers[0], world.router
    wl = wlbridge_on(world)
    cap = capture_at_ap(world)
    for g in world.guests:
        g.restart_ipv6()  # DAD NS, RS, MLD reports
    for g in world.guests:
        g.wait_ip6(ip6(g), timeout=10)
    ok = [g1.ping6(ip6(peer), src=ip6(g1), count=2),   # NS from g1, NA to it
          peer.ping6(ip6(g2), count=2),                 # NS for g2, NA from g2
          g1.ping6(router.link_local, count=2)]         # link-local ND
    pkts = cap.packets()

    bad = guest_macs_at_ap(pkts, world.guests)
    assert bad == [], "\n".join(bad[:20]) + "\n" + diag(world, wl)
    # positive control: the guests' ND did cross, as the station's
    from_station = [p for p in pkts if Ether in p and p[Ether].src == world.ap_station_mac
                    and (ICMPv6ND_NS in p or ICMPv6ND_NA in p)]
    assert from_station, [p.summary() for p in pkts]
    assert all(m == world.ap_station_mac for p in from_station for m in nd_lladdrs(p))
    assert all(ok), (ok, diag(world, wl))
    assert ap_foreign(world) == 0, diag(world, wl)


def test_router_adverts_and_redirects_from_guests_never_leave(v6lan, wlbridge_on):
    world = v6lan(n_guests=1, static_guests6=True)
    g1 = world.guests[0]
    wl = wlbridge_on(world)
    cap = capture_at_ap(world, bpf="icmp6")
    net = world.subnet6
    scapy_send(g1, f"""
src = "fe80::bad"
ra = Ether(src="{g1.mac}", dst="33:33:00:00:00:01")/IPv6(src=src, dst="ff02::1", hlim=255)/\\
    ICMPv6ND_RA(routerlifetime=1800)/ICMPv6NDOptPrefixInfo(prefix="{net[0] + 0x10000}", prefixlen=64)/\\
    ICMPv6NDOptSrcLLAddr(lladdr="{g1.mac}")
rd = Ether(src="{g1.mac}", dst="{world.peers[0].mac}")/IPv6(src=src, dst="{world.peers[0].link_local}", hlim=255)/\\
    ICMPv6ND_Redirect(tgt="fe80::bad", dst="{net[0x11]}")/ICMPv6NDOptDstLLAddr(lladdr="{g1.mac}")
marker = Ether(src="{g1.mac}", dst="33:33:00:00:00:01")/IPv6(src="{ip6(g1)}", dst="ff02::1")/\\
    ICMPv6EchoRequest(data=b"marker")
sendp([ra, rd, ra, rd, marker], iface=IFACE, verbose=False, inter=0.1)
""")
    # positive control: the multicast echo sent last crossed the AP
    expect(lambda: any(b"marker" in bytes(p) for p in cap.peek()), 5,
           "the marker frame at the AP", world, wl)
    pkts = cap.packets()
    leaked = [p.summary() for p in pkts if Ether in p and p[Ether].src == world.ap_station_mac
              and (ICMPv6ND_RA in p or ICMPv6ND_Redirect in p)]
    assert leaked == [], leaked


# ---------------------------------------------------------------- unicast


def test_ping6_guest_to_peer_global_and_router_link_local(v6lan, wlbridge_on):
    world = v6lan(n_guests=1, static_guests6=True)
    g1, peer, router = world.guests[0], world.peers[0], world.router
    wl = wlbridge_on(world)
    assert g1.wait_ip6(ip6(g1), timeout=10)
    assert g1.ping6(ip6(peer), src=ip6(g1), count=2), diag(world, wl)
    assert peer.ping6(ip6(g1), count=2), diag(world, wl)
    assert g1.ping6(router.link_local, count=2), diag(world, wl)
    assert router.ping6(f"{g1.link_local}%{router.ifname}", count=2), diag(world, wl)
    assert ap_foreign(world) == 0, diag(world, wl)


@pytest.mark.parametrize("ap_unicast", [False, True], ids=["ap_multicast", "ap_group_to_unicast"])
def test_peer_reaches_a_guest_that_never_sent_anything(v6lan, wlbridge_on, ap_unicast):
    world = v6lan(n_guests=1, static_guests6=True, group_to_unicast=ap_unicast)
    g1, peer = world.guests[0], world.peers[0]
    # quiet from now on: no router solicitations, no SLAAC (its static address did DAD before
    # it was attached to anything)
    g1.run("sysctl", "-qw", f"net.ipv6.conf.{g1.ifname}.router_solicitations=0",
           f"net.ipv6.conf.{g1.ifname}.accept_ra=0", check=True)
    assert g1.wait_ip6(ip6(g1), timeout=10)
    wl = wlbridge_on(world)
    assert bindings6(status_json(wl), ip6(g1)) == []
    cap = Capture(world, g1.netns, g1.ifname, "g1-nd", "icmp6")
    assert peer.ping6(ip6(g1), count=3, timeout=2), diag(world, wl)
    # the peer's NS (to the solicited-node group; unicast to the station when the AP converts)
    # reached the guest addressed to it: its solicited-node MAC or its own MAC
    low24 = ipaddress.ip_address(ip6(g1)).packed[-3:]
    solicited_mac = "33:33:ff:" + ":".join(f"{b:02x}" for b in low24)
    ns = [p for p in cap.packets() if ICMPv6ND_NS in p and p[ICMPv6ND_NS].tgt == ip6(g1)]
    # before the guest has spoken nothing tells the controller its solicited-node group: an
    # NS the AP made unicast is restored by the IPv6 catch-all, which computes the group's MAC
    # from the address (33:33 + its low 32 bits), so the first NS carries the solicited-node
    # MAC either way; later ones (neighbour unreachability detection) may be unicast
    assert ns and ns[0][Ether].dst == solicited_mac, \
        [p.summary() + " " + p[Ether].dst for p in ns]
    assert all(p[Ether].dst in (solicited_mac, g1.mac) for p in ns), \
        [p.summary() + " " + p[Ether].dst for p in ns]
    assert ap_foreign(world) == 0, diag(world, wl)


def test_guest_to_guest_and_guest_to_host_over_ipv6_stay_local(v6lan, wlbridge_on):
    # the host's uplink takes no RAs here: that case has its own test (host_ipv6_on_the_bridge)
    world = v6lan(static_guests6=True, station_accept_ra=False)
    g1, g2 = world.guests
    wl = wlbridge_on(world)
    station6 = ip6(world.station)
    for g in (g1, g2):
        assert g.wait_ip6(ip6(g), timeout=10)
    before = world.ap_counters()["from_station"].packets
    assert g1.ping6(ip6(g2), src=ip6(g1), count=2), diag(world, wl)
    assert g2.ping6(ip6(g1), src=ip6(g2), count=2), diag(world, wl)
    assert g1.ping6(station6, src=ip6(g1), count=2), diag(world, wl)
    assert world.station.ping6(ip6(g1), src=station6, count=2), diag(world, wl)
    # 16 echo frames would have crossed the AP if they leaked; ND multicast may
    assert world.ap_counters()["from_station"].packets - before < 8, world.ap_counters()
    assert ap_foreign(world) == 0, diag(world, wl)


def uplink_ipv6(world) -> tuple[dict[str, str], list[str], list[str]]:
    """The uplink's RA sysctls, its IPv6 routes other than link-local (``ip -j``) and its
    global IPv6 addresses (it lives in the root namespace)."""
    up = world.uplink
    conf = {k: Path(f"/proc/sys/net/ipv6/conf/{up}/{k}").read_text().strip()
            for k in ("accept_ra", "autoconf")}
    routes = json.loads(subprocess.run(["ip", "-j", "-6", "route", "show", "dev", up],
                                       capture_output=True, text=True, check=True).stdout)
    addrs = json.loads(subprocess.run(["ip", "-j", "-6", "addr", "show", "dev", up, "scope",
                                       "global"], capture_output=True, text=True,
                                      check=True).stdout)
    return (conf, [r["dst"] for r in routes if not r["dst"].startswith("fe80:")],
            [a["local"] for link in addrs for a in link.get("addr_info", []) if "local" in a])


@pytest.mark.parametrize("manager", ["auto", "keep"])
@pytest.mark.parametrize("uplink_ra", [True, False], ids=["uplink_slaac", "uplink_static_only"])
def test_host_ipv6_on_the_bridge_still_works(v6lan, wlbridge_on, uplink_ra, manager):
    # uplink_slaac: the uplink took RAs before setup (SLAAC address, RA-learned on-link route),
    # as a laptop's wlan0 does; uplink_static_only: a static address and nothing else
    world = v6lan(n_guests=1, station_accept_ra=uplink_ra)
    peer = world.peers[0]
    before = uplink_ipv6(world)[0]
    wl = wlbridge_on(world, setup_extra=("--address-manager", manager))
    station6 = ip6(world.station)
    assert world.station.ping6(ip6(peer), src=station6, count=2), diag(world, wl)
    assert peer.ping6(station6, count=2), diag(world, wl)
    assert ap_foreign(world) == 0, diag(world, wl)
    # the uplink takes no RAs, and nothing they taught it stays there
    conf, routes, addrs = uplink_ipv6(world)
    assert conf == {"accept_ra": "0", "autoconf": "0"}, conf
    assert routes == [] and addrs == [], (routes, addrs)
    # teardown gives the uplink its own settings back
    wl.close()
    assert uplink_ipv6(world)[0] == before


# ---------------------------------------------------------------- DHCPv6


def test_dhcpv6_stateful_address_is_bound_in_status(v6lan, wlbridge_on):
    world = v6lan(n_guests=1, dhcpv6="stateful")
    g1 = world.guests[0]
    first, last = (ipaddress.ip_address(a) for a in world.graph.nodes["router"]["dhcp6"]["range"])
    wl = wlbridge_on(world)

    def leased():
        return next((a for a in g1.ips6() if first <= ipaddress.ip_address(a) <= last), None)

    g1.dhclient6()
    addr = expect(leased, 15, f"a DHCPv6 address for {g1.name}", world, wl)
    assert any(line.startswith("BOUND6") for line in g1.dhcp6_events()), g1.dhcp6_events()
    # the binding shows in `wlbridge status --json`, on the guest's port and MAC
    found = wait_for(lambda: bindings6(status_json(wl), addr), timeout=10,
                     what=f"{addr} in status --json")
    assert found[0]["port"] == g1.port and found[0]["mac"] == g1.mac, found
    # (the leased address may still be tentative, doing DAD, for a moment)
    assert wait_for(lambda: g1.ping6(ip6(world.peers[0]), src=addr, count=1), timeout=10,
                    what="ping6 from the leased address"), diag(world, wl)
    assert world.peers[0].ping6(addr, count=2), diag(world, wl)
    assert ap_foreign(world) == 0, diag(world, wl)


def test_dhcpv6_stateless_gives_options(v6lan, wlbridge_on):
    world = v6lan(n_guests=1, dhcpv6="stateless")
    g1 = world.guests[0]
    wl = wlbridge_on(world)
    g1.dhclient6(stateless=True)
    line = expect(lambda: next((x for x in g1.dhcp6_events()
                                if f"search={dhcp.DHCP6_DOMAIN}" in x), None),
                  15, "the stateless DHCPv6 reply", world, wl)
    assert f"dns={ip6(world.router)}" in line, (line, diag(world, wl))
    assert ap_foreign(world) == 0, diag(world, wl)


def test_guest_cannot_answer_as_a_dhcpv6_server(v6lan, wlbridge_on):
    # the LAN's DHCPv6 is stateless: the only addresses on offer are the fake server's
    world = v6lan(n_guests=1, static_guests6=True, dhcpv6="stateless")
    g1, peer = world.guests[0], world.peers[0]
    net = world.subnet6
    wl = wlbridge_on(world)
    assert g1.wait_ip6(ip6(g1), timeout=10)
    fake_dir = world.tmp_path("fake-dhcp6")
    fake_dir.mkdir()
    fake_range = (str(net[0x2000]), str(net[0x2FFF]))
    argv = dhcp.dnsmasq_argv(g1.ifname, g1.addr, None, fake_dir, addr6=g1.addr6,
                             dhcp6={"mode": "stateful", "range": fake_range})
    # The guest knows the peer's MAC already: this test is about DHCPv6, not about ND.
    g1.run("ip", "-6", "neigh", "replace", peer.link_local, "lladdr", peer.mac, "dev",
           g1.ifname, "nud", "permanent", check=True)
    fake = g1.popen(*argv, name="fake-dhcp6")
    fake_log = fake_dir / "dnsmasq.log"
    wait_for(lambda: fake_log.exists() and "DHCPv6" in fake_log.read_text(), timeout=10,
             what="the fake DHCPv6 server")
    peer.dhclient6()
    # the Solicit reached the guest and it answered (else this test would prove nothing) ...
    wait_for(lambda: "DHCPADVERTISE" in fake_log.read_text(errors="replace"), timeout=15,
             what=f"the fake server answering the peer's Solicit\n{fake.output()}")
    # ... but the answer never reached the peer (a client takes a lone Advertise at once)
    lo, hi = (ipaddress.ip_address(a) for a in fake_range)

    def taken():
        return [a for a in peer.ips6() if lo <= ipaddress.ip_address(a) <= hi]

    assert not wait_for(taken, 5), (taken(), peer.dhcp6_events(), diag(world, wl))
    assert not any(e.startswith("BOUND6") for e in peer.dhcp6_events()), peer.dhcp6_events()


# ---------------------------------------------------------------- anti-spoofing


def test_guest_claiming_another_guests_ipv6_is_refused(v6lan, wlbridge_on):
    world = v6lan(static_guests6=True)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    victim = ip6(g1)
    for g in (g1, g2):
        assert g.wait_ip6(ip6(g), timeout=10)
        assert g.ping6(ip6(peer), src=ip6(g)), diag(world, wl)
    wait_for(lambda: bindings6(status_json(wl), victim), timeout=10, what=f"{victim} bound")
    refused = refusals(wl)
    # g2 takes g1's address and announces it (unsolicited NA with override), then uses it
    g2.run("ip", "-6", "addr", "add", f"{victim}/64", "dev", g2.ifname, "nodad", check=True)
    scapy_send(g2, f"""
na = Ether(src="{g2.mac}", dst="33:33:00:00:00:01")/IPv6(src="{victim}", dst="ff02::1", hlim=255)/\\
    ICMPv6ND_NA(tgt="{victim}", R=0, S=0, O=1)/ICMPv6NDOptDstLLAddr(lladdr="{g2.mac}")
sendp([na, na], iface=IFACE, verbose=False, inter=0.2)
""")
    g2.ping6(ip6(peer), src=victim, count=2)
    wait_for(lambda: refusals(wl) > refused, timeout=10, what="a refusal")
    capture = capture_lines(g2, "-c", "50", "icmp6")
    peer.run("ip", "-6", "neigh", "flush", "dev", peer.ifname)
    res = peer.run("ping", "-6", "-n", "-c", "5", "-i", "0.2", "-W", "2", victim)
    assert res.returncode == 0 and "DUP!" not in res.stdout, (res.stdout, diag(world, wl))
    # positive control: the capture does see echo requests to g2's own address
    assert peer.ping6(ip6(g2)), diag(world, wl)
    wait_for(lambda: f"> {ip6(g2)}: ICMP6, echo request" in capture.output(), timeout=5,
             what="the control ping in g2's capture")
    capture.stop()
    assert f"> {victim}: ICMP6, echo request" not in capture.output(), capture.output()
    assert bindings6(status_json(wl), victim)[0]["port"] == g1.port
    assert ap_foreign(world) == 0, diag(world, wl)
