"""Topology graphs: basic_lan is valid, bad graphs are refused with a clear message (no root)."""

from __future__ import annotations

import ipaddress
import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topologies import (
    SUPERNET,
    SUPERNET6,
    TopologyError,
    apfilter,
    basic_lan,
    describe,
    dhcp,
    guest_port,
    lan_ifname,
    ra,
    slaac_address,
    station_uplink,
    subnet6_for,
    subnet_for,
    validate,
)
from topologies.graph import IFNAMSIZ, namespaces, root_ifnames


def test_basic_lan_shape():
    g = basic_lan(prefix="wtu1")
    roles = {n: r for n, r in g.nodes(data="role")}
    assert roles == {"ap": "ap", "router": "router", "station": "station", "peer1": "peer",
                     "guest1": "guest", "guest2": "guest"}
    assert g.nodes["station"]["netns"] is None
    assert station_uplink(g) == "wtu1-wl0"
    assert g.edges["ap", "station"]["station_link"]
    assert all(g.has_edge("ap", n) for n in ("router", "peer1", "station"))
    assert guest_port(g, "guest1") == "wtu1-vg1"
    assert lan_ifname(g, "guest1") == "eth0"
    assert namespaces(g) == ["wtu1-ap", "wtu1-g1", "wtu1-g2", "wtu1-p1", "wtu1-rt"]
    assert root_ifnames(g) == ["wtu1-vg1", "wtu1-vg2", "wtu1-wl0"]


def test_basic_lan_addresses_and_dhcp_defaults():
    g = basic_lan(prefix="wtu2", subnet="10.231.200.0/24")
    assert g.nodes["router"]["addr"] == "10.231.200.1/24"
    assert g.nodes["station"]["addr"] == "10.231.200.2/24"
    conf = g.nodes["router"]["dhcp"]
    assert conf["router_option"] is False and conf["dns_option"] is False
    assert conf["range"] == ("10.231.200.100", "10.231.200.199")
    macs = [d["mac"] for n, d in g.nodes(data=True) if "mac" in d]
    assert len(set(macs)) == len(macs)
    assert all(int(m[:2], 16) & 0b11 == 0b10 for m in macs)  # locally administered unicast
    assert g.nodes["ap"]["filter"] is True and g.nodes["ap"]["group_to_unicast"] is False


def test_basic_lan_options():
    g = basic_lan(n_guests=0, uplink="wlan0", prefix="wtu3", dhcp=False, static_guests=False,
                  filter=False, group_to_unicast=True, n_peers=3)
    assert station_uplink(g) == "wlan0"
    assert g.nodes["router"]["dhcp"] is None
    assert [n for n, r in g.nodes(data="role") if r == "peer"] == ["peer1", "peer2", "peer3"]
    assert g.nodes["ap"]["group_to_unicast"] and not g.nodes["ap"]["filter"]
    g = basic_lan(prefix="wtu4", static_guests=False)
    assert g.nodes["guest1"]["addr"] is None


def test_default_subnet_depends_on_prefix_and_stays_in_the_test_range():
    a, b = subnet_for("wtaaa"), subnet_for("wtaab")
    assert a.subnet_of(SUPERNET) and b.subnet_of(SUPERNET)
    assert a == subnet_for("wtaaa")
    assert basic_lan(prefix="wtaaa").graph["subnet"] == str(a)


@settings(max_examples=40, deadline=None)
@given(n_guests=st.integers(0, 40), n_peers=st.integers(0, 30),
       prefix=st.from_regex(r"[a-z][a-z0-9]{1,5}", fullmatch=True))
def test_basic_lan_always_valid_with_short_names(n_guests, n_peers, prefix):
    g = basic_lan(n_guests=n_guests, n_peers=n_peers, prefix=prefix)
    validate(g)
    names = [n for _, _, d in g.edges(data=True) for n in d["ifnames"].values()]
    assert all(len(n) <= IFNAMSIZ for n in names + namespaces(g))


def test_describe_mentions_every_node():
    text = "\n".join(describe(basic_lan(prefix="wtu5")))
    for n in ("ap", "router", "station", "peer1", "guest1", "guest2"):
        assert n in text


# ------------------------------------------------------------ bad graphs


def _drop_role(g):
    del g.nodes["peer1"]["role"]


def _second_ap(g):
    g.add_node("ap2", role="ap", netns="wtbad-ap2", bridge="br0")
    g.add_edge("ap2", "peer1", ifnames={"ap2": "x", "peer1": "eth1"})


def _unlinked_guest(g):
    g.remove_edge("station", "guest1")


def _guest_on_ap(g):
    g.remove_edge("station", "guest1")
    g.add_edge("ap", "guest1", ifnames={"ap": "to-g1", "guest1": "eth0"})


def _set(node, key, value):
    def mutate(g):
        g.nodes[node][key] = value
    return mutate


def _long_uplink(g):
    g.edges["ap", "station"]["ifnames"]["station"] = "a-very-long-uplink"


def _second_station_link_flag(g):
    g.edges["ap", "peer1"]["station_link"] = True


def _no_station(g):
    g.remove_node("station")


def _lease_too_short(g):
    g.nodes["router"]["dhcp"]["lease_time"] = 30


def _range_outside(g):
    g.nodes["router"]["dhcp"]["range"] = ("10.231.7.100", "10.231.7.199")


def _static_in_range(g):
    first = g.nodes["router"]["dhcp"]["range"][0]
    g.nodes["guest1"]["addr"] = f"{first}/24"


def _same_ifname_in_root(g):
    g.edges["station", "guest2"]["ifnames"]["station"] = "wtbad-vg1"


BAD = [
    (_drop_role, "has no 'role'"),
    (_set("peer1", "role", "switch"), "unknown role 'switch'"),
    (_second_ap, "exactly one ap"),
    (_no_station, "exactly one station"),
    (_unlinked_guest, "guest 'guest1' must have exactly one link, to the station"),
    (_guest_on_ap, "is not allowed"),
    (_set("guest2", "mac", "02:57:4c:00:04:01"), "duplicate MAC 02:57:4c:00:04:01"),
    (_set("peer1", "mac", "03:00:00:00:00:01"), "group (multicast) address"),
    (_set("peer1", "mac", "not-a-mac"), "is not a lower-case"),
    (_set("peer1", "addr", "10.231.6.1/24"), "duplicate IP 10.231.6.1"),
    (_set("peer1", "addr", "10.231.9.11/24"), "not in the LAN subnet"),
    (_set("peer1", "addr", "10.231.6.11/16"), "not in the LAN subnet"),
    (_set("peer1", "addr", "10.231.6.255/24"), "network or broadcast"),
    (_set("peer1", "addr", "10.231.6.0/24"), "network or broadcast"),
    (_set("peer1", "addr", "fd57:4c42:6:6::11/64"), "is not IPv4"),
    (_set("peer1", "addr", "garbage"), "is not an IPv4 interface address like 10.231.6.1/24"),
    (_set("peer1", "addr", None), "needs a static 'addr'"),
    (_long_uplink, "'a-very-long-uplink' is 18 characters (max 15)"),
    (_set("guest1", "netns", "other-g1"), "must be a name starting with 'wtbad-'"),
    (_set("guest1", "netns", "wtbad-g2"), "share the namespace"),
    (_set("station", "netns", "wtbad-st"), "is the root namespace"),
    (_second_station_link_flag, "station_link must be set on the AP-station link"),
    (_lease_too_short, "lease_time 30"),
    (_range_outside, "not an ordered range"),
    (_static_in_range, "lies in the dhcp range"),
    (_same_ifname_in_root, "appears twice in namespace root"),
    (_set("ap", "filter", "yes"), "'filter' must be a bool"),
]


@pytest.mark.parametrize("mutate, message", BAD, ids=[m.__name__ for m, _ in BAD])
def test_bad_graph_is_refused_clearly(mutate, message):
    g = basic_lan(prefix="wtbad", subnet="10.231.6.0/24")
    mutate(g)
    with pytest.raises(TopologyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(g)


@pytest.mark.parametrize("attrs, message", [
    ({"prefix": "WT", "subnet": "10.231.6.0/24"}, "graph prefix 'WT'"),
    ({"prefix": "toolongprefix", "subnet": "10.231.6.0/24"}, "graph prefix"),
    ({"prefix": "wt1", "subnet": "192.168.1.0/24"}, "must lie inside 10.231.0.0/16"),
    ({"prefix": "wt1", "subnet": "nonsense"}, "is not an IPv4 network"),
])
def test_bad_graph_attributes(attrs, message):
    g = basic_lan(prefix="wtbad", subnet="10.231.6.0/24")
    g.graph.update(attrs)
    with pytest.raises(TopologyError, match=message):
        validate(g)


def test_not_a_plain_graph():
    with pytest.raises(TopologyError, match="undirected"):
        validate(nx.DiGraph(basic_lan(prefix="wtbad")))


def test_basic_lan_refuses_subnets_outside_the_test_range():
    with pytest.raises(TopologyError, match="10.231.0.0/16"):
        basic_lan(prefix="wtbad", subnet="10.0.0.0/24")


# ------------------------------------------------------------ AP rules, DHCP files


def test_ap_ruleset_implements_the_one_mac_rule():
    text = apfilter.ruleset("to-station", "02:57:4c:00:02:00")
    assert 'iifname "to-station" ether saddr != 02:57:4c:00:02:00 counter name foreign_src drop' \
        in text
    assert "ether daddr != 02:57:4c:00:02:00 counter name foreign_dst drop" in text
    assert "daddr set" not in text
    for name in apfilter.COUNTERS:
        assert f"counter {name} {{ }}" in text


def test_ap_rules_without_filter_count_only_and_group_to_unicast():
    text = apfilter.update("to-station", "02:57:4c:00:02:00", filter=False,
                           group_to_unicast=True)
    assert " drop" not in text
    assert "counter name group_to_unicast ether daddr set 02:57:4c:00:02:00" in text
    assert text.startswith("flush chain bridge wlap station_in")


def test_a_proxy_arp_ap_drops_group_traffic_to_the_station_but_what_hostapd_converts():
    text = apfilter.ruleset("to-station", "02:57:4c:00:02:00", proxy_arp=True)
    group = "ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00"
    out = [ln for ln in text.splitlines() if 'oifname "to-station"' in ln and group in ln]
    assert [("udp dport 68" in ln, "nd-router-advert, nd-neighbor-advert" in ln,
             ln.endswith("drop")) for ln in out] == [(True, False, False), (False, True, False),
                                                     (False, False, True)]
    assert all("ether daddr set 02:57:4c:00:02:00" in ln for ln in out[:2])
    assert "counter name group_dropped drop" in out[2]
    assert apfilter.proxy_arp_bridge("br0", "to-station") == [
        ["ip", "link", "set", "dev", "to-station", "type", "bridge_slave", "proxy_arp_wifi",
         "on", "hairpin", "on"],
        ["sysctl", "-qw", "net.ipv4.conf.br0.arp_accept=1"]]
    assert basic_lan(proxy_arp=True, prefix="wtpa").nodes["ap"]["proxy_arp"] is True


def test_parse_counters():
    text = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"counter": {"family": "bridge", "name": "foreign_src", "table": "wlap", "handle": 3,
                     "packets": 7, "bytes": 420}},
        {"counter": {"family": "bridge", "name": "other", "table": "elsewhere", "handle": 4,
                     "packets": 1, "bytes": 1}},
    ]})
    assert apfilter.parse_counters(text) == {"foreign_src": apfilter.Counter(7, 420)}


def test_dnsmasq_sends_no_router_or_dns_by_default(tmp_path):
    g = basic_lan(prefix="wtu6", subnet="10.231.210.0/24")
    argv = dhcp.dnsmasq_argv("eth0", g.nodes["router"]["addr"], g.nodes["router"]["dhcp"],
                             tmp_path)
    assert "--dhcp-option=3" in argv and "--dhcp-option=6" in argv
    assert "--dhcp-range=10.231.210.100,10.231.210.199,255.255.255.0,300" in argv
    assert f"--dhcp-leasefile={tmp_path / 'leases'}" in argv
    assert "--dhcp-authoritative" in argv and "--port=0" in argv
    conf = dict(g.nodes["router"]["dhcp"], router_option=True)
    assert "--dhcp-option=3,10.231.210.1" in dhcp.dnsmasq_argv("eth0", "10.231.210.1/24", conf,
                                                              tmp_path)


def test_parse_leases():
    text = ("1795317099 02:57:4c:00:04:01 10.231.9.171 * 01:02:57:4c:00:04:01\n"
            "1795317100 02:57:4C:00:04:02 10.231.9.172 guest2 *\n")
    leases = dhcp.parse_leases(text)
    assert leases[0] == dhcp.Lease(1795317099, "02:57:4c:00:04:01", "10.231.9.171", "*",
                                   "01:02:57:4c:00:04:01")
    assert leases[1].mac == "02:57:4c:00:04:02"


def test_client_scripts_only_touch_the_address(tmp_path):
    files = dhcp.write_client_files(tmp_path, "guest1")
    for key in ("dhclient_script", "udhcpc_script"):
        script = files[key].read_text()
        assert "resolv.conf" not in script and "route" not in script
        assert str(files["events"]) in script
    argv = dhcp.dhclient_argv("eth0", files)
    assert argv[-1] == "eth0" and "-sf" in argv and str(files["leases"]) in argv
    assert "-B" in dhcp.udhcpc_argv("eth0", files)
    assert "-B" not in dhcp.udhcpc_argv("eth0", files, broadcast=False)


def test_addresses_are_ipv4_interfaces():
    g = basic_lan(prefix="wtu7")
    for n, a in g.nodes(data="addr"):
        if a:
            assert ipaddress.ip_interface(a).network == ipaddress.ip_network(g.graph["subnet"])


# ---------------------------------------------------------------- IPv6 LANs (issue 12)


def test_ipv6_is_opt_in():
    g = basic_lan(prefix="wtu8")
    assert g.graph["subnet6"] is None
    assert all(d.get("addr6") is None for _, d in g.nodes(data=True))
    assert g.nodes["router"]["ra"] is None and g.nodes["router"]["dhcp6"] is None


def test_ipv6_lan_addresses_and_defaults():
    g = basic_lan(prefix="wtu9", ipv6=True, n_peers=2)
    net6 = subnet6_for("wtu9")
    assert g.graph["subnet6"] == str(net6) and net6.subnet_of(SUPERNET6)
    assert net6.prefixlen == 64 and net6.network_address.is_private
    assert subnet6_for("wtu9") == net6 and subnet6_for("wtu10") != net6  # deterministic
    addr6 = {n: d.get("addr6") for n, d in g.nodes(data=True)}
    assert addr6["router"] == f"{net6[1]}/64"
    assert addr6["station"] == f"{net6[2]}/64"
    assert addr6["peer1"] == f"{net6[0x11]}/64" and addr6["peer2"] == f"{net6[0x12]}/64"
    assert addr6["guest1"] is None  # guests form theirs by SLAAC
    ra_conf = g.nodes["router"]["ra"]
    assert ra_conf == {"managed": True, "other": True, "autonomous": True,
                       "unicast_solicited": True, "unsolicited": True,
                       "interval": (3, 6)}
    assert g.nodes["router"]["dhcp6"] == {"mode": "stateful", "lease_time": 300,
                                          "range": (str(net6[0x1000]), str(net6[0x1FFF]))}
    assert any(str(net6) in line for line in describe(g))
    assert g.nodes["station"]["accept_ra"] is True
    assert basic_lan(prefix="wtu9", ipv6=True, station_accept_ra=False).nodes["station"][
        "accept_ra"] is False


def test_ipv6_lan_modes():
    g = basic_lan(prefix="wtu9", ipv6=True, dhcpv6="stateless", ra_unicast=False,
                  static_guests6=True)
    assert g.nodes["router"]["dhcp6"] == {"mode": "stateless", "lease_time": 300}
    assert g.nodes["router"]["ra"]["managed"] is False and g.nodes["router"]["ra"]["other"]
    assert g.nodes["router"]["ra"]["unicast_solicited"] is False
    assert g.nodes["guest1"]["addr6"].endswith("::51/64")
    g = basic_lan(prefix="wtu9", ipv6=True, dhcpv6=None, slaac=False)
    assert g.nodes["router"]["dhcp6"] is None
    assert not any(g.nodes["router"]["ra"][k] for k in ("managed", "other", "autonomous"))
    with pytest.raises(TopologyError, match="dhcpv6 must be one of"):
        basic_lan(prefix="wtu9", ipv6=True, dhcpv6="both")


def test_slaac_address_is_modified_eui64():
    assert str(slaac_address("fd57:4c42:1:2::/64", "02:57:4c:00:04:01")) == \
        "fd57:4c42:1:2:57:4cff:fe00:401"
    assert str(slaac_address("fd57:4c42:1:2::/64", "00:11:22:33:44:55")) == \
        "fd57:4c42:1:2:211:22ff:fe33:4455"


def _v6(node, key, value):
    def mutate(g):
        g.nodes[node][key] = value
    mutate.__name__ = f"v6_{node}_{key}_{value}"
    return mutate


def _dhcp6(**kw):
    def mutate(g):
        g.nodes["router"]["dhcp6"] = {**g.nodes["router"]["dhcp6"], **kw}
    mutate.__name__ = "dhcp6_" + "_".join(kw)
    return mutate


def _ra(**kw):
    def mutate(g):
        g.nodes["router"]["ra"] = {**g.nodes["router"]["ra"], **kw}
    mutate.__name__ = "ra_" + "_".join(kw)
    return mutate


def _subnet6(value):
    def mutate(g):
        g.graph["subnet6"] = value
    mutate.__name__ = f"subnet6_{value}"
    return mutate


NET6 = "fd57:4c42:6:6::"
BAD6 = [
    (_v6("peer1", "addr6", "fd57:4c42:9:9::11/64"), "not in the LAN's IPv6 subnet"),
    (_v6("peer1", "addr6", f"{NET6}11/48"), "not in the LAN's IPv6 subnet"),
    (_v6("peer1", "addr6", f"{NET6}1/64"), f"duplicate IPv6 {NET6}1"),
    (_v6("peer1", "addr6", f"{NET6}/64"), "subnet-router anycast"),
    (_v6("peer1", "addr6", "10.231.6.11/24"), "is not IPv6"),
    (_v6("peer1", "addr6", "garbage"), "is not an IPv6 interface address"),
    (_v6("peer1", "addr6", None), "needs a static 'addr6'"),
    (_v6("guest1", "addr6", "fd57:4c42:6:6:57:4cff:fe00:402/64"), "is the SLAAC address of 'guest2'"),
    (_dhcp6(range=(f"{NET6}2000", f"{NET6}1000")), "not an ordered range"),
    (_dhcp6(range=(f"{NET6}1", f"{NET6}1000")), "lies in the dhcp6 range"),
    (_dhcp6(range=("fd57:4c42:9:9::1", "fd57:4c42:9:9::9")), "not an ordered range"),
    (_dhcp6(mode="both"), "dhcp6 mode 'both'"),
    (_dhcp6(lease_time=30), "dhcp6 lease_time 30"),
    (_dhcp6(mode="stateless"), "stateless DHCPv6 hands out no addresses"),
    (_ra(interval=(1, 2)), "is not one radvd accepts"),
    (_ra(interval=(10, 10)), "is not one radvd accepts"),
    (_ra(managed="yes"), "ra 'managed' must be a bool"),
    (_ra(bogus=1), "unknown ra keys"),
    (_subnet6("fd57:4c42:6::/48"), "must be a /64 inside fd57:4c42::/32"),
    (_subnet6("2001:db8::/64"), "must be a /64 inside fd57:4c42::/32"),
    (_subnet6("nonsense"), "is not an IPv6 network"),
]


@pytest.mark.parametrize("mutate, message", BAD6, ids=[m.__name__ for m, _ in BAD6])
def test_bad_ipv6_graph_is_refused_clearly(mutate, message):
    g = basic_lan(prefix="wtbad", subnet="10.231.6.0/24", subnet6=NET6 + "/64", ipv6=True)
    validate(g)
    mutate(g)
    with pytest.raises(TopologyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(g)


def test_ipv6_attributes_on_an_ipv4_only_lan_are_refused():
    g = basic_lan(prefix="wtbad", subnet="10.231.6.0/24")
    g.nodes["peer1"]["addr6"] = f"{NET6}11/64"
    with pytest.raises(TopologyError, match="on a LAN without IPv6"):
        validate(g)
    g = basic_lan(prefix="wtbad", subnet="10.231.6.0/24", subnet6=NET6 + "/64", ipv6=True)
    g.graph["subnet6"] = None
    for n in g.nodes:
        g.nodes[n].pop("addr6", None)
    with pytest.raises(TopologyError, match="router advertisements"):
        validate(g)


def test_dnsmasq_dhcpv6_modes_and_no_router_advertisements(tmp_path):
    g = basic_lan(prefix="wtu6", subnet="10.231.210.0/24", subnet6=NET6 + "/64", ipv6=True)
    r = g.nodes["router"]
    argv = dhcp.dnsmasq_argv("eth0", r["addr"], r["dhcp"], tmp_path, addr6=r["addr6"],
                             dhcp6=r["dhcp6"])
    assert f"--dhcp-range={NET6}1000,{NET6}1fff,64,300" in argv
    assert f"--dhcp-option=option6:dns-server,[{NET6}1]" in argv
    assert not any("enable-ra" in a or ",ra-" in a or "slaac" in a for a in argv)
    assert "--dhcp-range=10.231.210.100,10.231.210.199,255.255.255.0,300" in argv
    stateless = dhcp.dnsmasq_argv("eth0", r["addr"], None, tmp_path, addr6=r["addr6"],
                                  dhcp6={"mode": "stateless"})
    assert "--dhcp-range=::,static" in stateless
    assert not any("10.231.210" in a for a in stateless)  # no DHCPv4 asked for


def test_radvd_conf_flags():
    conf = ra.radvd_conf("eth0", NET6 + "/64", {"managed": True, "other": False,
                                                "autonomous": True, "unicast_solicited": True,
                                                "interval": (3, 6)})
    assert "AdvManagedFlag on;" in conf and "AdvOtherConfigFlag off;" in conf
    assert "AdvRASolicitedUnicast on;" in conf and "AdvAutonomous on;" in conf
    assert f"prefix {NET6}/64" in conf
    assert "AdvDefaultLifetime 0;" in conf  # never anyone's default router


def test_dhclient6_argv_and_script(tmp_path):
    files = dhcp.write_client_files(tmp_path, "guest1")
    argv = dhcp.dhclient6_argv("eth0", files)
    assert argv[:2] == ["dhclient", "-6"] and argv[-1] == "eth0" and "-S" not in argv
    assert "-S" in dhcp.dhclient6_argv("eth0", files, stateless=True)
    script = files["dhclient6_script"].read_text()
    assert "resolv.conf" not in script and "route" not in script
    assert str(files["events6"]) in script


def test_ap_group_to_unicast_covers_ipv6_multicast():
    # the one group rule matches the I/G bit, so 33:33:xx (IPv6 multicast) is converted too
    rules = apfilter.ruleset("to-station", "02:57:4c:00:02:00", group_to_unicast=True)
    group_rule = next(line for line in rules.splitlines() if "group_to_unicast ether" in line)
    assert "ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00" in group_rule
