"""IPv6 through an AP that turns group traffic into unicast (issue 25 item 4): hostapd
``multicast_to_unicast=1`` on real 802.11.  As reported: two SLAAC guests; the one that has
sent nothing is reachable from the LAN, but a guest that has pinged the LAN first, after the
LAN host flushes its neighbour cache, was not reachable again (global nor link-local) although
wlbridge held both bindings and the guest's solicited-node membership.  The sequence is run
here with the LAN's and the guests' ND traffic captured (kept in the run's logs) and what
happened recorded; NS/NA, RS/RA and MLD reports through the AP's conversion are checked.
"""

from __future__ import annotations

import ipaddress

import pytest
from conftest import BRIDGE, record

from topologies.procs import Proc, run, wait_for
from topologies.wifibed.bed import SRV_IP6, SRV_NS, STATION

LAN6 = ipaddress.ip_network("fd77::/64")


@pytest.fixture(scope="module")
def m2u6(bed, guests, wlbridge):
    """Only AP 1, restarted with multicast_to_unicast=1 (an earlier module's settings off)."""
    bed.stop_ap("wlan2")
    for key in ("proxy_arp", "ap_isolate", "disable_dgaf", "na_mcast_to_ucast"):
        bed.hostapd_extra.pop(key, None)
    bed.hostapd_extra["multicast_to_unicast"] = "1"
    bed.start_ap("wlan0")
    assert bed.wait_associated(90) == bed.ap_macs["wlan0"]
    caps = [Proc("m2u6-station", None, ["tcpdump", "-n", "-e", "-l", "-i", STATION, "icmp6"],
                 bed.logs / "m2u6-station.out"),
            Proc("m2u6-srv", SRV_NS, ["tcpdump", "-n", "-e", "-l", "-i", "eth0", "icmp6"],
                 bed.logs / "m2u6-srv.out")]
    try:
        yield bed
    finally:
        for c in caps:
            c.stop()
        bed.hostapd_extra.pop("multicast_to_unicast", None)


def flush_lan() -> None:
    run(SRV_NS, ["ip", "-6", "neigh", "flush", "all"], check=False)


def link_local(g) -> str | None:
    out = g.run("ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link").stdout
    for word in out.split():
        if word.startswith("fe80::"):
            return word.split("/")[0]
    return None


@pytest.mark.xfail(reason="issue 25 item 4, open: in its first run here (2026-12-08) the "
                   "guest could not even reach the LAN's router over IPv6 through hostapd's "
                   "multicast_to_unicast=1; not investigated yet (captures kept in the logs)",
                   strict=False)
def test_a_guest_that_spoke_first_is_reached_again_after_the_lan_forgets_it(m2u6, wlbridge):
    silent = m2u6.add_guest("m2u6-silent", BRIDGE)
    talker = m2u6.add_guest("m2u6-talker", BRIDGE)
    addrs = {}
    for g in (silent, talker):
        ip6 = wait_for(g.ip6, 90, 0.5)        # SLAAC through the AP's unicast RAs
        assert ip6 and ipaddress.ip_address(ip6) in LAN6, ip6
        addrs[g.name] = (ip6, link_local(g))
    assert wait_for(lambda: talker.ping(SRV_IP6), 30), "the talker cannot reach the LAN"
    results = {}
    for round_ in (1, 2):
        flush_lan()
        for g in (silent, talker):
            ip6, ll = addrs[g.name]
            results[f"{g.name}-global-{round_}"] = bool(wait_for(lambda a=ip6: m2u6.srv_ping(a),
                                                                 20))
            results[f"{g.name}-ll-{round_}"] = bool(wait_for(
                lambda a=ll: m2u6.srv_ping(f"{a}%eth0"), 20))
    st = wlbridge.status()
    record("m2u_ipv6_reachability", **results,
           groups=[g["group"] for g in st["groups"] if not g.get("always")])
    assert all(results.values()), results
