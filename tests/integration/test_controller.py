"""wlbridge in the emulated Wi-Fi LAN: static guests live on the LAN as if bridged."""

from __future__ import annotations

import json

from harness import ap_foreign, wait_for

from topologies import capture_lines


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def test_static_guests_reach_and_are_reached_through_the_one_mac_ap(make_world, wlbridge_on):
    world = make_world(n_guests=3)
    g1, g2, silent = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    station = wl.station_ip

    # the host itself still works over the bridge's internal port
    assert world.station.ping(ip_of(peer), src=station, count=2)
    # outbound, then inbound
    assert g1.ping(ip_of(peer), count=2), wl.logs()
    assert g2.ping(ip_of(peer), count=2)
    wl.wait_bound(ip_of(g1), g1.port)
    wl.wait_bound(ip_of(g2), g2.port)
    assert peer.ping(ip_of(g1), count=2) and peer.ping(ip_of(g2), count=2)
    # a static guest that never spoke is found by the peer's ARP and learned from its reply
    assert wl.bound(ip_of(silent)) is None
    assert peer.ping(ip_of(silent), count=2, timeout=2)
    assert wl.bound(ip_of(silent))["source"] == "arp"
    # guest <-> guest and guest <-> host stay local
    before_up = world.ap_counters()["from_station"].packets
    assert g1.ping(ip_of(g2), count=2) and g2.ping(ip_of(g1), count=2)
    assert g1.ping(station, count=2) and world.station.ping(ip_of(g1), src=station, count=2)
    # 16 echo frames would have crossed the AP if they leaked; ARP broadcasts may
    assert world.ap_counters()["from_station"].packets - before_up < 8
    assert ap_foreign(world) == 0, world.ap_counters()


def test_data_traffic_causes_no_packet_ins(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    # IPv4 data only: the guest's IPv6 start-up (router solicitations, MLD reports) is
    # control traffic the controller sees; IPv6 data has its own test (test_ipv6)
    g1.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=True)
    wl = wlbridge_on(world)
    assert g1.ping(ip_of(peer), count=2) and peer.ping(ip_of(g1), count=1)
    before = wl.packet_ins()
    res = peer.run("ping", "-n", "-q", "-c", "1000", "-i", "0.002", "-W", "1", ip_of(g1),
                   timeout=60)
    assert " 0% packet loss" in res.stdout, res.stdout
    res = g1.run("ping", "-n", "-q", "-c", "1000", "-i", "0.002", "-W", "1", ip_of(peer),
                 timeout=60)
    assert " 0% packet loss" in res.stdout, res.stdout
    assert wl.packet_ins() == before, wl.counters()
    assert ap_foreign(world) == 0


def test_tcp_from_guest_to_lan_peer(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    wlbridge_on(world)
    server = peer.popen("iperf3", "-s", "-1", "-B", ip_of(peer))
    wait_for(lambda: "LISTEN" in peer.run("ss", "-ltn", "sport = :5201").stdout, what="iperf3")
    res = g1.run("iperf3", "-c", ip_of(peer), "-t", "2", "-J", timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    bits = json.loads(res.stdout)["end"]["sum_received"]["bits_per_second"]
    assert bits > 10e6, bits
    server.stop()
    assert ap_foreign(world) == 0


def test_hijack_attempt_is_refused(make_world, wlbridge_on):
    world = make_world(n_guests=2)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    victim = ip_of(g1)
    assert g1.ping(ip_of(peer)) and g2.ping(ip_of(peer))
    wl.wait_bound(victim, g1.port)
    # the second guest takes the first one's address and announces it
    g2.run("ip", "addr", "add", f"{victim}/32", "dev", g2.ifname, check=True)
    g2.run("busybox", "arping", "-U", "-c", "2", "-I", g2.ifname, "-s", victim, victim)
    g2.run("busybox", "arping", "-A", "-c", "2", "-I", g2.ifname, "-s", victim, victim)
    wait_for(lambda: wl.counters().get("refused.ip-in-use", 0) >= 1, what="refusal")
    capture = capture_lines(g2, "-c", "50", "icmp")
    res = peer.run("ping", "-n", "-c", "5", "-i", "0.2", victim)
    assert res.returncode == 0 and "DUP!" not in res.stdout, res.stdout
    # positive control: the capture does see echo requests to g2's own address
    assert peer.ping(ip_of(g2))
    wait_for(lambda: f"> {ip_of(g2)}: ICMP echo request" in capture.output(), timeout=5,
             what="the control ping in g2's capture")
    capture.stop()
    assert f"> {victim}: ICMP echo request" not in capture.output(), capture.output()
    assert wl.bound(victim)["port"] == g1.port
    assert ap_foreign(world) == 0
