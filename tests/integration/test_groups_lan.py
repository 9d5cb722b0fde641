"""Group traffic the AP turned into unicast, restored (issue 12 item 7), in the emulated
Wi-Fi LAN with an AP that converts group frames to unicast toward the station: a guest that
joined 239.1.2.3 (or ff15::1234) gets a LAN peer's datagrams with the group's own MAC; one
that did not, does not; the directed broadcast of the LAN's subnet reaches guests as a
broadcast, mDNS every guest without any report."""

from __future__ import annotations

import sys

from harness import ap_foreign, wait_for

# In a guest: join GROUP (unless "-"), capture frames to GROUP:PORT on every interface with a
# packet socket and print each one's Ethernet destination; stop after `seconds`.
RECEIVER = r"""
import socket, struct, sys, time
group, port, seconds, join = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
cap.settimeout(0.2)
if join != "-":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton(join))
print("ready", flush=True)
end = time.time() + seconds
while time.time() < end:
    try:
        frame = cap.recv(2048)
    except socket.timeout:
        continue
    if len(frame) >= 38 and frame[23] == 17 and socket.inet_ntoa(frame[30:34]) == group \
            and struct.unpack("!H", frame[36:38])[0] == port:
        print("got", frame[0:6].hex(":"), flush=True)
"""

SENDER = r"""
import socket, sys, time
group, port, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(src))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for _ in range(3):
    s.sendto(b"hello", (group, port))
    time.sleep(0.1)
"""


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def members(wl, group: str) -> list[str]:
    for g in wl.status().get("groups", []):
        if g["group"] == group:
            return [m["port"] for m in g["members"]]
    return []


def test_ap_unicast_group_traffic_reaches_members_with_the_group_mac(make_world, wlbridge_on):
    world = make_world(n_guests=2, group_to_unicast=True)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    assert g1.ping(ip_of(peer), count=1) and g2.ping(ip_of(peer), count=1), wl.logs()

    member = g1.popen(sys.executable, "-c", RECEIVER, "239.1.2.3", "5000", "8", ip_of(g1))
    other = g2.popen(sys.executable, "-c", RECEIVER, "239.1.2.3", "5000", "8", "-")
    wait_for(lambda: "ready" in member.output() and "ready" in other.output(), what="receivers")
    wait_for(lambda: g1.port in members(wl, "239.1.2.3"), what="239.1.2.3 joined",
             timeout=5)
    before = world.ap_counters()["group_to_unicast"].packets
    peer.run(sys.executable, "-c", SENDER, "239.1.2.3", "5000", ip_of(peer), check=True)
    member.wait(timeout=15)
    other.wait(timeout=15)
    assert world.ap_counters()["group_to_unicast"].packets > before   # the AP converted
    got = [line.split()[1] for line in member.output().splitlines() if line.startswith("got")]
    assert got and set(got) == {"01:00:5e:01:02:03"}, (member.output(), wl.flows())
    assert "got" not in other.output(), other.output()   # not a member: not delivered
    # the receiver left the group (its socket closed: an IGMP leave)
    wait_for(lambda: not members(wl, "239.1.2.3"), what="239.1.2.3 left", timeout=5)

    # the LAN's directed broadcast (the host's subnet, from its address on the bridge)
    bcast = str(__import__("ipaddress").ip_interface(world.station.addr).network
                .broadcast_address)
    wait_for(lambda: any(g["group"] == bcast for g in wl.status()["groups"]),
             what="subnet broadcast known", timeout=5)
    rx = g2.popen(sys.executable, "-c", RECEIVER, bcast, "5001", "4", "-")
    wait_for(lambda: "ready" in rx.output(), what="receiver")
    peer.run(sys.executable, "-c", SENDER, bcast, "5001", ip_of(peer), check=True)
    rx.wait(timeout=10)
    got = [line.split()[1] for line in rx.output().splitlines() if line.startswith("got")]
    assert got and set(got) == {"ff:ff:ff:ff:ff:ff"}, (rx.output(), wl.flows())

    # mDNS from the LAN reaches every guest with its own MAC, no report needed
    rx = [g.popen(sys.executable, "-c", RECEIVER, "224.0.0.251", "5353", "4", "-")
          for g in (g1, g2)]
    wait_for(lambda: all("ready" in r.output() for r in rx), what="receivers")
    peer.run(sys.executable, "-c", SENDER, "224.0.0.251", "5353", ip_of(peer), check=True)
    for r in rx:
        r.wait(timeout=10)
        got = [line.split()[1] for line in r.output().splitlines() if line.startswith("got")]
        assert got and set(got) == {"01:00:5e:00:00:fb"}, (r.output(), wl.flows())
    assert ap_foreign(world) == 0


def test_a_membership_that_timed_out_still_gets_the_group_mac(make_world, wlbridge_on,
                                                              tmp_path):
    """A LAN without an IGMP querier (as here): the guest reports only when it joins, so its
    membership times out; the group's AP-unicast copies then reach every guest (no longer the
    members only) but still with the group's own MAC, which the switch computes from the
    address (a guest filtering on group MACs loses nothing)."""
    world = make_world(n_guests=2, group_to_unicast=True)
    g1, g2 = world.guests
    peer = world.peers[0]
    conf = tmp_path / "wlbridge.ini"
    conf.write_text("[wlbridge]\ngroup_membership_interval = 10\n")
    wl = wlbridge_on(world, extra=("--config-file", str(conf)))
    assert g1.ping(ip_of(peer), count=1) and g2.ping(ip_of(peer), count=1), wl.logs()
    member = g1.popen(sys.executable, "-c", RECEIVER, "239.9.8.7", "5002", "40", ip_of(g1))
    wait_for(lambda: "ready" in member.output(), what="receiver")
    wait_for(lambda: g1.port in members(wl, "239.9.8.7"), what="239.9.8.7 joined", timeout=5)
    wait_for(lambda: not members(wl, "239.9.8.7"), what="the membership timed out", timeout=30)
    other = g2.popen(sys.executable, "-c", RECEIVER, "239.9.8.7", "5002", "4", "-")
    wait_for(lambda: "ready" in other.output(), what="receiver")
    before = world.ap_counters()["group_to_unicast"].packets
    peer.run(sys.executable, "-c", SENDER, "239.9.8.7", "5002", ip_of(peer), check=True)
    other.wait(timeout=10)
    assert world.ap_counters()["group_to_unicast"].packets > before   # the AP converted
    wait_for(lambda: "got" in member.output(), what="the group's datagram at the member",
             timeout=5)
    member.stop()
    for rx in (member, other):   # flooded now, to the old member and the other guest alike
        got = [line.split()[1] for line in rx.output().splitlines() if line.startswith("got")]
        assert got and set(got) == {"01:00:5e:09:08:07"}, (rx.output(), wl.flows())
    assert ap_foreign(world) == 0


RECEIVER6 = r"""
import socket, struct, sys, time
group, port, seconds, ifname = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x86DD))
cap.settimeout(0.2)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("", port))
mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", socket.if_nametoindex(ifname))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
print("ready", flush=True)
want = socket.inet_pton(socket.AF_INET6, group)
end = time.time() + seconds
while time.time() < end:
    try:
        frame = cap.recv(2048)
    except socket.timeout:
        continue
    if len(frame) >= 58 and frame[20] == 17 and frame[38:54] == want \
            and struct.unpack("!H", frame[56:58])[0] == port:
        print("got", frame[0:6].hex(":"), flush=True)
"""

SENDER6 = r"""
import socket, struct, sys, time
group, port, ifname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex(ifname))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 2)
for _ in range(3):
    s.sendto(b"hello", (group, port, 0, socket.if_nametoindex(ifname)))
    time.sleep(0.1)
"""


def link_local_ready(host) -> bool:
    out = host.run("ip", "-6", "addr", "show", "dev", host.ifname, "scope", "link").stdout
    return "inet6 fe80" in out and "tentative" not in out


def test_ap_unicast_ipv6_group_reaches_the_mld_member_with_33_33(make_world, wlbridge_on):
    world = make_world(n_guests=2, group_to_unicast=True)
    g1, g2 = world.guests
    peer = world.peers[0]
    wl = wlbridge_on(world)
    assert g1.ping(ip_of(peer), count=1) and g2.ping(ip_of(peer), count=1), wl.logs()
    wait_for(lambda: link_local_ready(g1) and link_local_ready(peer), what="IPv6 link-local")
    member = g1.popen(sys.executable, "-c", RECEIVER6, "ff15::1234", "5002", "8", g1.ifname)
    wait_for(lambda: "ready" in member.output(), what="receiver")
    wait_for(lambda: g1.port in members(wl, "ff15::1234"), what="ff15::1234 joined (MLD)",
             timeout=5)
    before = world.ap_counters()["group_to_unicast"].packets
    peer.run(sys.executable, "-c", SENDER6, "ff15::1234", "5002", peer.ifname, check=True)
    member.wait(timeout=15)
    assert world.ap_counters()["group_to_unicast"].packets > before
    got = [line.split()[1] for line in member.output().splitlines() if line.startswith("got")]
    assert got and set(got) == {"33:33:00:00:12:34"}, (member.output(), wl.flows())
    assert ap_foreign(world) == 0
