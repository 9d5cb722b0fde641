"""Userspace datapath: the host stack no longer sees what arrives on the uplink.

With ``datapath_type=netdev`` OVS reads the uplink through an AF_PACKET socket, so the
kernel also receives every frame: the host's own pings got duplicate replies, frames for
guests were dropped by the host stack (IpInAddrErrors) or, with forwarding on, routed to
the guest a second time.  `wlbridge setup` puts a clsact ingress filter on the uplink that
drops everything but the station's own EAPOL (and RSN pre-auth/TDLS) frames, for the host
stack only: OVS's packet socket is fed before tc ingress.

The IPv4 counters are those of the root namespace (the station's), so other activity on this
machine could move them: the tests allow a little noise, far below the 200 frames sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import ap_foreign

PINGS = 200
NOISE = 10     # other root-namespace traffic; without the filter each ping counts


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def ip_counters() -> dict[str, int]:
    """Root-namespace IPv4 counters from /proc/net/snmp and /proc/net/netstat."""
    found: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        lines = Path(path).read_text().splitlines()
        for head, values in zip(lines[::2], lines[1::2]):
            proto, names = head.split(":", 1)
            found.update({f"{proto}{n}": int(v)
                          for n, v in zip(names.split(), values.split(":", 1)[1].split())})
    return found


def host_errors() -> int:
    c = ip_counters()
    return c["IpInAddrErrors"] + c["IpExtInNoRoutes"]


def qdiscs(dev: str) -> list[dict]:
    res = subprocess.run(["tc", "-j", "qdisc", "show", "dev", dev], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout or "[]")


def has_ingress(dev: str) -> bool:
    return any(q["kind"] in ("ingress", "clsact") for q in qdiscs(dev))


def flood_ping(host, dst: str, count: int = PINGS) -> str:
    res = host.run("ping", "-n", "-c", str(count), "-i", "0.005", "-W", "1", dst,
                   timeout=60)
    assert f"{count} received" in res.stdout, res.stdout
    return res.stdout


def test_host_and_guests_see_each_frame_once(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    uplink = world.uplink
    assert not has_ingress(uplink)
    wl = wlbridge_on(world)
    assert has_ingress(uplink)

    # the host's own ping through the bridge: one reply each, none also via the uplink
    res = world.station.run("ping", "-n", "-c", "5", "-i", "0.2", "-W", "2",
                            "-I", wl.station_ip, ip_of(peer))
    assert res.returncode == 0 and " 0% packet loss" in res.stdout, res.stdout
    assert "DUP!" not in res.stdout, res.stdout

    # a guest works both ways
    assert g1.ping(ip_of(peer), count=2), wl.logs()
    wl.wait_bound(ip_of(g1), g1.port)
    assert peer.ping(ip_of(g1), count=2)

    # frames for the guest no longer reach the host stack
    before = host_errors()
    flood_ping(peer, ip_of(g1))
    assert host_errors() - before < NOISE, (before, ip_counters())

    # a Docker-style host routes what it receives: with forwarding on for the uplink the
    # guest would get each request twice (once from OVS, once routed by the host)
    fwd = Path(f"/proc/sys/net/ipv4/conf/{uplink}/forwarding")
    fwd.write_text("1")
    try:
        out = flood_ping(peer, ip_of(g1), count=50)
        assert "DUP!" not in out, out
        out = flood_ping(g1, ip_of(peer), count=50)
        assert "DUP!" not in out, out
    finally:
        fwd.write_text("0")
    assert ap_foreign(world) == 0, world.ap_counters()

    wl.close()
    assert not has_ingress(uplink)


def test_eapol_still_reaches_the_host(make_world, wlbridge_on):
    """wpa_supplicant's EAPOL socket on the uplink still gets the AP's frames."""
    world = make_world(n_guests=0)
    wl = wlbridge_on(world)
    uplink, mac = world.uplink, world.station.mac
    listener = subprocess.Popen([sys.executable, "-c", _EAPOL_LISTENER, uplink],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        ap_port = "to-station"
        send = (f"import socket,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
                f"s.bind(('{ap_port}',0))\ndst=bytes.fromhex('{mac.replace(':', '')}')\n"
                "for _ in range(20):\n"
                "    s.send(dst+bytes.fromhex('020000000001')+b'\\x88\\x8e'+b'\\x02\\x00'*23)\n"
                "    s.send(dst+bytes.fromhex('020000000001')+b'\\x08\\x00'+b'\\x45'+b'\\x00'*45)\n"
                "    time.sleep(0.05)\n")
        world.ap_run(sys.executable, "-c", send)
        out, _ = listener.communicate(timeout=15)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    eapol, ipv4 = (int(x) for x in out.split())
    assert eapol > 0, out           # EAPOL passes the filter
    assert ipv4 == 0, out           # an IPv4 socket on the uplink sees nothing
    assert wl.is_set_up


# A protocol-specific packet socket (as wpa_supplicant's l2_packet opens for EAPOL) is fed
# after tc ingress, unlike OVS's ETH_P_ALL tap: it shows what the host stack receives.
_EAPOL_LISTENER = """
import socket, sys, time
dev = sys.argv[1]
socks = {}
for proto in (0x888e, 0x0800):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    s.bind((dev, 0))
    s.settimeout(0.2)
    socks[proto] = s
seen = dict.fromkeys(socks, 0)
print("ready", flush=True)
end = time.monotonic() + 4
while time.monotonic() < end:
    for proto, s in socks.items():
        try:
            while True:
                if s.recvfrom(2048)[1][2] == socket.PACKET_HOST:
                    seen[proto] += 1
        except socket.timeout:
            pass
print(seen[0x888e], seen[0x0800])
"""
