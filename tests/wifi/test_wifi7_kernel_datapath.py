"""What differs on the kernel (`system`) datapath, measured on a real station interface:
duplicate delivery, the ingress isolation, checksum offloads, packet-ins, ARP rewrites."""

from __future__ import annotations

import json

from conftest import BRIDGE, STATION, record

from topologies.procs import Proc, wait_for
from topologies.wifibed.bed import PEER_IP, PEER_NS, sh


def test_no_ingress_isolation_is_installed_on_the_kernel_datapath(wlbridge, guests):
    """OVS's kernel rx handler takes the port's frames from the host stack: the eBPF/u32
    isolation the userspace datapath needs is not installed there."""
    for dev in (STATION, *(g.port for g in guests.values())):
        qdiscs = sh("tc", "qdisc", "show", "dev", dev)
        assert "clsact" not in qdiscs, f"{dev}: {qdiscs}"
        assert not sh("tc", "filter", "show", "dev", dev, "ingress", check=False).strip()


def test_each_frame_is_delivered_once(bed, guests, wlbridge):
    """No duplicate replies for the host or a guest, and a packet tap on the uplink sees each
    reply once (OVS's kernel datapath takes no AF_PACKET copy of its ports)."""
    g = guests["static"]
    assert wait_for(lambda: g.ping(PEER_IP), 30)       # learned: nothing lost to learning
    tap = Proc("tap-wlan1", None, ["tcpdump", "-i", STATION, "-n", "-l", "icmp"],
               bed.logs / "tap-wlan1.out")
    try:
        wait_for(lambda: "listening" in tap.output(), 20, 0.2)
        host = sh("ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", PEER_IP, check=False)
        guest = g.run("ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", PEER_IP).stdout
    finally:
        wait_for(lambda: tap.output().count("echo reply") >= 10, 5, 0.2)
        tap.stop()
    replies = tap.output().count("echo reply")
    received = host.count("bytes from") + guest.count("bytes from")
    record("uplink_tap_echo_replies", sent=10, received=received, seen_on_wlan1=replies)
    assert "DUP!" not in host and "DUP!" not in guest
    assert received <= replies <= 10


def test_tcp_runs_with_checksum_offloads_left_on(bed, guests, wlbridge):
    """On the userspace datapath TCP over veth needs TX checksum offload off; here the
    defaults stay on and TCP flows.  Throughput: guest via wlbridge vs the host itself."""
    g = guests["static"]
    offloads = {dev: "tx-checksumming: on" in sh("ethtool", "-k", dev, netns=ns)
                for dev, ns in ((STATION, None), (BRIDGE, None), (g.port, None),
                                ("eth0", g.netns))}
    server = Proc("iperf3-server", PEER_NS, ["iperf3", "-s"], bed.logs / "iperf3-server.out")
    try:
        wait_for(lambda: "listening" in server.output(), 20, 0.2)
        guest_bps = _iperf(lambda *a: g.run(*a, timeout=60).stdout)
        host_bps = _iperf(lambda *a: sh(*a, check=False, timeout=60))
    finally:
        server.stop()
    record("tcp_throughput", guest_bps=guest_bps, host_bps=host_bps,
           ratio=round(guest_bps / host_bps, 3) if host_bps else None, tx_csum_on=offloads)
    assert guest_bps > 0 and host_bps > 0


def _iperf(run) -> float:
    out = run("iperf3", "-c", PEER_IP, "-t", "3", "-J")
    try:
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    except (ValueError, KeyError):
        return 0.0


def test_data_traffic_makes_no_packet_ins(guests, wlbridge):
    g = guests["dhclient"]
    assert g.ping(PEER_IP)
    before = wlbridge.packet_ins()
    out = g.run("ping", "-n", "-q", "-f", "-c", "1000", "-W", "1", PEER_IP, timeout=120).stdout
    after = wlbridge.packet_ins()
    record("packet_ins_per_1000_pings", packet_ins=after - before, ping=out.strip()[-120:])
    assert after - before == 0


def test_arp_rewrites_in_the_kernel_datapath(guests, wlbridge):
    """Which datapath flows ARP from a guest took: OVS cannot set ARP fields in the kernel
    module, so ovs-vswitchd handles those frames itself (slow path)."""
    g = guests["udhcpc"]
    g.run("ip", "neigh", "flush", "all")
    assert g.ping(PEER_IP)
    flows = sh("ovs-appctl", "dpctl/dump-flows", "-m").splitlines()
    arp = [f for f in flows if "arp(" in f]
    record("kernel_arp_flows", flows=arp[:6])
    ipv4 = [f for f in flows if "icmp" in f or "ipv4(" in f]
    assert any("actions:" in f and "userspace" not in f for f in ipv4), \
        "IPv4 data flows run in the kernel"
