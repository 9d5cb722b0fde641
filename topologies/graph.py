"""Emulated Wi-Fi LANs described as `networkx.Graph` objects, and their validation.

A topology is a graph whose nodes are machines and whose edges are links (veth pairs).

Node attributes (all nodes have ``role``):

* ``ap``: the access point, a Linux bridge in its own namespace.  ``filter`` (bool) turns
  the 802.11 one-MAC rule on the station link on; ``group_to_unicast`` (bool) makes the AP
  deliver broadcast/multicast to the station as unicast to the station MAC; ``proxy_arp`` (bool)
  makes it a Hotspot 2.0 / proxy-ARP AP (see `topologies.apfilter`: no group delivery to the
  station but DHCP replies, RAs and NAs made unicast; the AP answers ARP for the station's
  addresses from its neighbour table, taught by gratuitous ARP).  ``netns``, ``bridge``.
* ``router``: LAN gateway and DHCP server (dnsmasq).  ``netns``, ``mac``, ``addr``, ``dhcp``
  (a dict: ``range`` (first, last), ``lease_time`` seconds, ``router_option``, ``dns_option``,
  ``ping_check``) or None for no DHCP server.  On an IPv6 LAN also ``ra`` (radvd, see
  `topologies.ra`: ``managed``, ``other``, ``autonomous``, ``unicast_solicited``,
  ``interval`` (min, max) seconds) or None, and ``dhcp6`` (dnsmasq's DHCPv6: ``mode``
  "stateful" or "stateless", ``range`` (first, last) for stateful, ``lease_time``) or None.
* ``peer``: another LAN host.  ``netns``, ``mac``, ``addr``.
* ``station``: the host running OVS, i.e. the ROOT namespace (``netns`` is None).  Its uplink is
  the root-namespace end of the station link.  ``mac``, ``addr`` (may be None), ``accept_ra``
  (IPv6 LAN: the uplink processes RAs, SLAAC; default True).
* ``guest``: a namespace whose one veth has its host end in the root namespace, to be attached to
  an OVS bridge.  ``netns``, ``mac``, ``addr`` (static address, or None for a DHCP guest).

``addr`` is an interface address string such as ``"10.231.77.1/24"``.  On an IPv6 LAN (graph
attribute ``subnet6``) nodes may also have ``addr6``, a static global address in that /64 such as
``"fd57:4c42:1234:5678::1/64"`` (router, station and peers have one; guests form theirs by SLAAC
unless given one).

Edge attributes: ``ifnames`` maps each end node to its interface name; ``station_link`` is True on
the AP-station edge.  Every router, peer and the station link to the AP; every guest links to the
station (its host end is ``ifnames[station]``).

Graph attributes: ``prefix`` (name prefix of everything created), ``subnet`` (the LAN, IPv4
network string), ``subnet6`` (the LAN's IPv6 /64 under `SUPERNET6`, or None: IPv6 stays as it
was before IPv6 LANs existed, link-local only and no router advertisements).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import zlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import networkx as nx

ROLES = ("ap", "router", "peer", "station", "guest")
#: Every emulated LAN lives here; nothing else on the machine may be touched.
SUPERNET = ipaddress.ip_network("10.231.0.0/16")
#: Every emulated IPv6 LAN is a /64 here (a unique local address block: fd57:4c42::/32).
SUPERNET6 = ipaddress.ip_network("fd57:4c42::/32")
DHCP6_MODES = ("stateful", "stateless")
IFNAMSIZ = 15
MAX_PREFIX_LEN = 6
MIN_LEASE_TIME = 120  # dnsmasq's minimum

_PREFIX_RE = re.compile(rf"^[a-z][a-z0-9]{{1,{MAX_PREFIX_LEN - 1}}}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ROLE_CODE = {"router": 1, "station": 2, "peer": 3, "guest": 4}


class TopologyError(ValueError):
    """A topology graph that cannot be realised."""


def new_prefix() -> str:
    """A short random name prefix (``wt`` + 3 hex digits)."""
    return "wt" + secrets.token_hex(2)[:3]


def subnet_for(prefix: str) -> ipaddress.IPv4Network:
    """A /24 under 10.231.0.0/16 derived from the prefix, so parallel worlds rarely share one."""
    third = 64 + zlib.crc32(prefix.encode()) % 190
    return ipaddress.ip_network(f"10.231.{third}.0/24")


def subnet6_for(prefix: str) -> ipaddress.IPv6Network:
    """A /64 under `SUPERNET6` derived from the prefix (as `subnet_for` derives the IPv4 /24)."""
    h = zlib.crc32(prefix.encode())
    return ipaddress.ip_network(f"fd57:4c42:{h >> 16:x}:{h & 0xFFFF:x}::/64")


def slaac_address(subnet6: str | ipaddress.IPv6Network, mac: str) -> ipaddress.IPv6Address:
    """The address the kernel forms by SLAAC from a prefix and a MAC (modified EUI-64)."""
    net = ipaddress.ip_network(subnet6)
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    return net.network_address + int.from_bytes(iid, "big")


def make_mac(role: str, index: int = 0) -> str:
    """Deterministic locally administered unicast MAC: 02:57:4c:00:<role>:<index>."""
    return f"02:57:4c:00:{_ROLE_CODE[role]:02x}:{index:02x}"


def basic_lan(
    n_guests: int = 2,
    uplink: str | None = None,
    prefix: str | None = None,
    *,
    subnet: str | None = None,
    n_peers: int = 1,
    filter: bool = True,
    group_to_unicast: bool = False,
    proxy_arp: bool = False,
    dhcp: bool = True,
    lease_time: int = 300,
    router_option: bool = False,
    dns_option: bool = False,
    ping_check: bool = False,
    static_guests: bool = True,
    ipv6: bool = False,
    subnet6: str | None = None,
    dhcpv6: str | None = "stateful",
    slaac: bool = True,
    ra_unicast: bool = True,
    ra_unsolicited: bool = True,
    ra_interval: tuple[int, int] = (3, 6),
    static_guests6: bool = False,
    station_accept_ra: bool = True,
) -> nx.Graph:
    """AP + router (DHCP server, gateway) + peers + the station (root ns) + guests.

    Addresses in the LAN: router .1, station .2, peers .11.., static guests .51..,
    DHCP range .100-.199.  ``uplink`` names the station's root-namespace interface
    (default ``<prefix>-wl0``).  ``static_guests=False`` leaves guests without an
    address (for DHCP tests).
    """
    prefix = prefix or new_prefix()
    net = ipaddress.ip_network(subnet) if subnet else subnet_for(prefix)
    if net.num_addresses < 256:
        raise TopologyError(f"basic_lan needs at least a /24, got {net}")
    if not 0 <= n_guests <= 40 or not 0 <= n_peers <= 30:
        raise TopologyError("basic_lan supports 0-40 guests and 0-30 peers")

    if dhcpv6 is not None and dhcpv6 not in DHCP6_MODES:
        raise TopologyError(f"dhcpv6 must be one of {DHCP6_MODES} or None, not {dhcpv6!r}")
    net6 = None
    if ipv6:
        net6 = ipaddress.ip_network(subnet6) if subnet6 else subnet6_for(prefix)

    def addr(host: int) -> str:
        return f"{net.network_address + host}/{net.prefixlen}"

    def addr6(host: int) -> str | None:
        # ::11 is written as in the IPv4 address (.11), i.e. hex digits "11".
        return f"{net6.network_address + int(str(host), 16)}/64" if net6 else None

    g = nx.Graph(prefix=prefix, subnet=str(net), subnet6=str(net6) if net6 else None)
    g.add_node(
        "ap", role="ap", netns=f"{prefix}-ap", bridge="br0",
        filter=filter, group_to_unicast=group_to_unicast, proxy_arp=proxy_arp,
    )
    dhcp_conf = None
    if dhcp:
        dhcp_conf = {
            "range": (str(net.network_address + 100), str(net.network_address + 199)),
            "lease_time": lease_time,
            "router_option": router_option,
            "dns_option": dns_option,
            "ping_check": ping_check,
        }
    ra_conf = dhcp6_conf = None
    if net6:
        ra_conf = {
            "managed": dhcpv6 == "stateful",
            "other": dhcpv6 is not None,
            "autonomous": slaac,
            "unicast_solicited": ra_unicast,
            "unsolicited": ra_unsolicited,
            "interval": tuple(ra_interval),
        }
        if dhcpv6:
            dhcp6_conf = {"mode": dhcpv6, "lease_time": lease_time}
            if dhcpv6 == "stateful":
                dhcp6_conf["range"] = (str(net6.network_address + 0x1000),
                                       str(net6.network_address + 0x1FFF))
    g.add_node("router", role="router", netns=f"{prefix}-rt", mac=make_mac("router"),
               addr=addr(1), dhcp=dhcp_conf, addr6=addr6(1), ra=ra_conf, dhcp6=dhcp6_conf)
    g.add_edge("ap", "router", ifnames={"ap": "to-router", "router": "eth0"})
    g.add_node("station", role="station", netns=None, mac=make_mac("station"), addr=addr(2),
               addr6=addr6(2), accept_ra=station_accept_ra)
    g.add_edge("ap", "station", station_link=True,
               ifnames={"ap": "to-station", "station": uplink or f"{prefix}-wl0"})
    for i in range(1, n_peers + 1):
        name = f"peer{i}"
        g.add_node(name, role="peer", netns=f"{prefix}-p{i}", mac=make_mac("peer", i),
                   addr=addr(10 + i), addr6=addr6(10 + i))
        g.add_edge("ap", name, ifnames={"ap": f"to-peer{i}", name: "eth0"})
    for i in range(1, n_guests + 1):
        name = f"guest{i}"
        g.add_node(name, role="guest", netns=f"{prefix}-g{i}", mac=make_mac("guest", i),
                   addr=addr(50 + i) if static_guests else None,
                   addr6=addr6(50 + i) if static_guests6 else None)
        g.add_edge("station", name, ifnames={"station": f"{prefix}-vg{i}", name: "eth0"})
    validate(g)
    return g


def second_lan(prefix: str | None = None, **kwargs: Any) -> nx.Graph:
    """Another LAN for the station to move to (issue 24 item 4): a `basic_lan` of its own
    subnet, router, DHCP server and peers, no guests, and no station of its own: the other
    world's station link is moved into its AP (`World.move_station`).  Its station node stays
    in the graph (the AP's port name) without an address; `World.build` removes its link."""
    g = basic_lan(0, prefix=prefix, **kwargs)
    station = the(g, "station")
    g.nodes[station]["addr"] = g.nodes[station]["addr6"] = None
    g.graph["visited"] = True
    return g


# ---------------------------------------------------------------- accessors


def nodes_with_role(g: nx.Graph, role: str) -> list[str]:
    return sorted(n for n, r in g.nodes(data="role") if r == role)


def the(g: nx.Graph, role: str) -> str:
    """The single node with this role."""
    found = nodes_with_role(g, role)
    if len(found) != 1:
        raise TopologyError(f"expected exactly one {role!r} node, found {len(found)}: {found}")
    return found[0]


def lan_ifname(g: nx.Graph, node: str) -> str:
    """The interface of a router/peer/station/guest on its one LAN-side link.

    For the station this is the uplink; for a guest, the interface inside the guest.
    """
    role = g.nodes[node]["role"]
    if role == "ap":
        raise TopologyError("the AP has one port per link, not one LAN interface")
    other = the(g, "ap") if role != "guest" else the(g, "station")
    return g.edges[node, other]["ifnames"][node]


def guest_port(g: nx.Graph, guest: str) -> str:
    """The root-namespace (host) end of a guest's link, to be attached to an OVS bridge."""
    return g.edges[guest, the(g, "station")]["ifnames"][the(g, "station")]


def station_uplink(g: nx.Graph) -> str:
    return lan_ifname(g, the(g, "station"))


def root_ifnames(g: nx.Graph) -> list[str]:
    """Interfaces the topology creates in the root namespace."""
    st = the(g, "station")
    return sorted(data["ifnames"][st] for _, _, data in g.edges(st, data=True))


def namespaces(g: nx.Graph) -> list[str]:
    return sorted(ns for _, ns in g.nodes(data="netns") if ns)


# ---------------------------------------------------------------- validation


def _fail(msg: str) -> None:
    raise TopologyError(msg)


def _check_mac(node: str, mac: Any) -> str:
    if not isinstance(mac, str) or not _MAC_RE.match(mac):
        _fail(f"node {node!r}: mac {mac!r} is not a lower-case aa:bb:cc:dd:ee:ff address")
    if int(mac[:2], 16) & 1:
        _fail(f"node {node!r}: mac {mac} is a group (multicast) address")
    return mac


def _check_ifname(where: str, name: Any) -> None:
    if not isinstance(name, str) or not name:
        _fail(f"{where}: interface name {name!r} is empty or not a string")
    if len(name) > IFNAMSIZ:
        _fail(f"{where}: interface name {name!r} is {len(name)} characters (max {IFNAMSIZ})")
    if not _IFNAME_RE.match(name) or name in (".", ".."):
        _fail(f"{where}: interface name {name!r} has characters other than [A-Za-z0-9_.-]")


def _check_edges(g: nx.Graph, ap: str, station: str) -> None:
    for u, v, data in g.edges(data=True):
        roles = {g.nodes[u]["role"], g.nodes[v]["role"]}
        if roles not in ({"ap", "router"}, {"ap", "peer"}, {"ap", "station"}, {"station", "guest"}):
            _fail(f"link {u}-{v}: a {'/'.join(sorted(roles))} link is not allowed "
                  "(routers, peers and the station link to the AP; guests to the station)")
        ifnames = data.get("ifnames")
        if not isinstance(ifnames, dict) or set(ifnames) != {u, v}:
            _fail(f"link {u}-{v}: 'ifnames' must map both ends ({u}, {v}) to interface names")
        for end, name in ifnames.items():
            _check_ifname(f"link {u}-{v} end {end}", name)
        if bool(data.get("station_link")) != (roles == {"ap", "station"}):
            _fail(f"link {u}-{v}: station_link must be set on the AP-station link and only there")
    for n, role in g.nodes(data="role"):
        if role in ("router", "peer", "station") and not g.has_edge(n, ap):
            _fail(f"{role} {n!r} is not linked to the AP {ap!r}")
        if role == "guest" and (g.degree(n) != 1 or not g.has_edge(n, station)):
            _fail(f"guest {n!r} must have exactly one link, to the station {station!r}")
    # Interface names must be unique per namespace.
    seen: dict[tuple[Any, str], str] = {}
    for u, v, data in g.edges(data=True):
        for end, name in data["ifnames"].items():
            key = (g.nodes[end].get("netns"), name)
            if key in seen:
                _fail(f"interface {name!r} appears twice in namespace "
                      f"{key[0] or 'root'} (links {seen[key]} and {u}-{v})")
            seen[key] = f"{u}-{v}"
    bridge = g.nodes[ap].get("bridge")
    _check_ifname(f"AP {ap!r} bridge", bridge)
    if (g.nodes[ap]["netns"], bridge) in seen:
        _fail(f"AP bridge name {bridge!r} clashes with an AP port name")


def _check_macs(g: nx.Graph) -> None:
    macs: dict[str, str] = {}
    for n, data in g.nodes(data=True):
        if data["role"] == "ap":
            continue
        mac = _check_mac(n, data.get("mac"))
        if mac in macs:
            _fail(f"duplicate MAC {mac}: nodes {macs[mac]!r} and {n!r}")
        macs[mac] = n


class _Family(NamedTuple):
    """How node addresses of one IP version are checked, and named in messages."""
    version: int
    attr: str            # the node attribute holding a static address
    subnet: str          # the LAN's subnet of this version
    ip: str              # an address of this version
    needs: str           # said to a router or peer lacking one
    reserved: str        # the subnet's addresses no node may have...
    reserved_of: Callable[[Any], tuple]   # ...and which they are


_FAMILIES = (
    _Family(4, "addr", "the LAN subnet", "IP", "", "the network or broadcast address",
            lambda net: (net.network_address, net.broadcast_address)),
    _Family(6, "addr6", "the LAN's IPv6 subnet", "IPv6", " on an IPv6 LAN",
            "the subnet-router anycast address", lambda net: (net.network_address,)),
)


def _check_addresses(g: nx.Graph, nets: dict[int, Any]) -> dict[int, dict]:
    """Each node's static address of each IP version (`addr`, `addr6`; `nets`: the LAN's
    subnet by version, None for a LAN without IPv6) in that subnet, none reserved, none
    twice; returns, by version, which node has which address."""
    owners: dict[int, dict] = {}
    for f in _FAMILIES:
        version, attr, net = f.version, f.attr, nets[f.version]
        ips = owners[version] = {}
        for n, data in g.nodes(data=True):
            a = data.get(attr)
            if data["role"] == "ap" or (a is None and net is None):
                continue
            if net is None:
                _fail(f"node {n!r}: {attr} {a!r} on a LAN without IPv6 (graph subnet6 is None)")
            if a is None:
                if data["role"] in ("router", "peer"):
                    _fail(f"{data['role']} {n!r} needs a static {attr!r}{f.needs}")
                continue
            try:
                iface = ipaddress.ip_interface(a)
            except ValueError:
                _fail(f"node {n!r}: {attr} {a!r} is not an IPv{version} interface address like "
                      f"{net[1]}/{net.prefixlen}")
            if iface.version != version:
                _fail(f"node {n!r}: {attr} {a!r} is not IPv{version}")
            if iface.network != net:
                _fail(f"node {n!r}: {attr} {a} is not in {f.subnet} {net} "
                      "(address outside the subnet or wrong prefix length)")
            if iface.ip in f.reserved_of(net):
                _fail(f"node {n!r}: {attr} {a} is {f.reserved} of {net}")
            if iface.ip in ips:
                _fail(f"duplicate {f.ip} {iface.ip}: nodes {ips[iface.ip]!r} and {n!r}")
            ips[iface.ip] = n
    return owners


def _check_slaac(g: nx.Graph, net6: ipaddress.IPv6Network | None, ips: dict) -> None:
    """No static IPv6 address is another node's SLAAC address."""
    for mac_node, mac in g.nodes(data="mac"):
        if net6 is not None and mac and g.nodes[mac_node]["role"] != "ap":
            slaac = slaac_address(net6, mac)
            if slaac in ips and ips[slaac] != mac_node:
                _fail(f"static IPv6 {slaac} of {ips[slaac]!r} is the SLAAC address of {mac_node!r}")


def _check_ra(g: nx.Graph, router: str, net6: ipaddress.IPv6Network | None) -> None:
    conf = g.nodes[router].get("ra")
    if conf is None:
        return
    if net6 is None:
        _fail(f"router {router!r}: router advertisements (ra) on a LAN without IPv6")
    if not isinstance(conf, dict):
        _fail(f"router {router!r}: ra must be a dict or None")
    known = {"managed", "other", "autonomous", "unicast_solicited", "unsolicited", "interval"}
    if set(conf) - known:
        _fail(f"router {router!r}: unknown ra keys {sorted(set(conf) - known)}")
    for key in known - {"interval"}:
        if not isinstance(conf.get(key, False), bool):
            _fail(f"router {router!r}: ra {key!r} must be a bool")
    try:
        lo, hi = conf.get("interval", (3, 6))
    except (TypeError, ValueError):
        _fail(f"router {router!r}: ra interval must be a pair (min, max) of seconds")
    # radvd: MinRtrAdvInterval >= 3 and <= 0.75 * MaxRtrAdvInterval, MaxRtrAdvInterval 4..1800
    if not (isinstance(lo, int) and isinstance(hi, int) and 4 <= hi <= 1800
            and 3 <= lo <= 0.75 * hi):
        _fail(f"router {router!r}: ra interval {lo!r}-{hi!r} is not one radvd accepts "
              "(min >= 3, min <= 0.75 * max, 4 <= max <= 1800)")


def _check_dhcp6(g: nx.Graph, router: str, net6: ipaddress.IPv6Network | None,
                 ips: dict) -> None:
    conf = g.nodes[router].get("dhcp6")
    if conf is None:
        return
    if net6 is None:
        _fail(f"router {router!r}: dhcp6 on a LAN without IPv6")
    if not isinstance(conf, dict):
        _fail(f"router {router!r}: dhcp6 must be a dict or None")
    known = {"mode", "range", "lease_time"}
    if set(conf) - known:
        _fail(f"router {router!r}: unknown dhcp6 keys {sorted(set(conf) - known)}")
    mode = conf.get("mode")
    if mode not in DHCP6_MODES:
        _fail(f"router {router!r}: dhcp6 mode {mode!r} is not one of {DHCP6_MODES}")
    lt = conf.get("lease_time", 300)
    if not isinstance(lt, int) or lt < MIN_LEASE_TIME:
        _fail(f"router {router!r}: dhcp6 lease_time {lt!r} must be an int >= {MIN_LEASE_TIME}s")
    if mode == "stateless":
        if "range" in conf:
            _fail(f"router {router!r}: stateless DHCPv6 hands out no addresses (no range)")
        return
    try:
        first, last = (ipaddress.IPv6Address(x) for x in conf["range"])
    except (KeyError, TypeError, ValueError):
        _fail(f"router {router!r}: dhcp6 range must be a pair of IPv6 addresses")
    if not (first in net6 and last in net6 and first <= last):
        _fail(f"router {router!r}: dhcp6 range {first}-{last} is not an ordered range in {net6}")
    for ip, n in ips.items():
        if first <= ip <= last:
            _fail(f"static IPv6 {ip} of {n!r} lies in the dhcp6 range {first}-{last}")


def _check_dhcp(g: nx.Graph, router: str, net: ipaddress.IPv4Network, ips: dict) -> None:
    conf = g.nodes[router].get("dhcp")
    if conf is None:
        return
    if not isinstance(conf, dict):
        _fail(f"router {router!r}: dhcp must be a dict or None")
    known = {"range", "lease_time", "router_option", "dns_option", "ping_check"}
    if set(conf) - known:
        _fail(f"router {router!r}: unknown dhcp keys {sorted(set(conf) - known)}")
    try:
        first, last = (ipaddress.ip_address(x) for x in conf["range"])
    except (KeyError, TypeError, ValueError):
        _fail(f"router {router!r}: dhcp range must be a pair of IPv4 addresses")
    if not (first in net and last in net and first <= last):
        _fail(f"router {router!r}: dhcp range {first}-{last} is not an ordered range in {net}")
    if first == net.network_address or last == net.broadcast_address:
        _fail(f"router {router!r}: dhcp range {first}-{last} includes network/broadcast address")
    for ip, n in ips.items():
        if first <= ip <= last:
            _fail(f"static address {ip} of {n!r} lies in the dhcp range {first}-{last}")
    lt = conf.get("lease_time", 300)
    if not isinstance(lt, int) or lt < MIN_LEASE_TIME:
        _fail(f"router {router!r}: dhcp lease_time {lt!r} must be an int >= {MIN_LEASE_TIME}s")


def validate(g: nx.Graph) -> nx.Graph:
    """Check that a topology can be realised; raise `TopologyError` saying why not."""
    if not isinstance(g, nx.Graph) or g.is_directed() or g.is_multigraph():
        _fail("a topology is an undirected networkx.Graph (not directed, not a multigraph)")
    prefix = g.graph.get("prefix")
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        _fail(f"graph prefix {prefix!r} must be 2-{MAX_PREFIX_LEN} characters [a-z0-9], "
              "starting with a letter")
    try:
        net = ipaddress.ip_network(g.graph.get("subnet"))
    except (TypeError, ValueError):
        _fail(f"graph subnet {g.graph.get('subnet')!r} is not an IPv4 network like 10.231.5.0/24")
    if net.version != 4 or not net.subnet_of(SUPERNET):
        _fail(f"LAN subnet {net} must lie inside {SUPERNET}")
    if net.prefixlen > 29:
        _fail(f"LAN subnet {net} is too small")
    for n, data in g.nodes(data=True):
        role = data.get("role")
        if role is None:
            _fail(f"node {n!r} has no 'role' (one of {', '.join(ROLES)})")
        if role not in ROLES:
            _fail(f"node {n!r} has unknown role {role!r} (one of {', '.join(ROLES)})")
    for role in ("ap", "station"):
        found = nodes_with_role(g, role)
        if len(found) != 1:
            _fail(f"a topology needs exactly one {role}, found {len(found)}: {found}")
    routers = nodes_with_role(g, "router")
    if len(routers) > 1:
        _fail(f"a topology has at most one router (the DHCP server), found {routers}")
    ap, station = the(g, "ap"), the(g, "station")
    _check_namespaces(g, prefix, station)
    _check_edges(g, ap, station)
    for name in root_ifnames(g):
        if name != station_uplink(g) and not name.startswith(prefix + "-"):
            _fail(f"root-namespace interface {name!r} must start with the prefix {prefix + '-'!r}")
    sub6 = g.graph.get("subnet6")
    net6 = None
    if sub6 is not None:
        try:
            net6 = ipaddress.ip_network(sub6)
        except (TypeError, ValueError):
            _fail(f"graph subnet6 {sub6!r} is not an IPv6 network like fd57:4c42:1:2::/64")
        if net6.version != 6 or net6.prefixlen != 64 or not net6.subnet_of(SUPERNET6):
            _fail(f"LAN IPv6 subnet {net6} must be a /64 inside {SUPERNET6}")
    _check_macs(g)
    ips = _check_addresses(g, {4: net, 6: net6})
    for router in nodes_with_role(g, "router"):
        _check_dhcp(g, router, net, ips[4])
    _check_slaac(g, net6, ips[6])
    for router in nodes_with_role(g, "router"):
        _check_ra(g, router, net6)
        _check_dhcp6(g, router, net6, ips[6])
    for key in ("filter", "group_to_unicast", "proxy_arp"):
        if not isinstance(g.nodes[ap].get(key, False), bool):
            _fail(f"AP attribute {key!r} must be a bool")
    if not isinstance(g.nodes[station].get("accept_ra", True), bool):
        _fail("station attribute 'accept_ra' must be a bool")
    return g


def _check_namespaces(g: nx.Graph, prefix: str, station: str) -> None:
    seen: dict[str, str] = {}
    for n, data in g.nodes(data=True):
        ns = data.get("netns")
        if n == station:
            if ns is not None:
                _fail(f"the station {n!r} is the root namespace: its netns must be None")
            continue
        if not isinstance(ns, str) or not ns.startswith(prefix + "-"):
            _fail(f"node {n!r}: netns {ns!r} must be a name starting with {prefix + '-'!r}")
        if not _IFNAME_RE.match(ns):
            _fail(f"node {n!r}: netns {ns!r} has characters other than [A-Za-z0-9_.-]")
        if ns in seen:
            _fail(f"nodes {seen[ns]!r} and {n!r} share the namespace {ns!r}")
        seen[ns] = n


def describe(g: nx.Graph) -> Iterable[str]:
    """Human-readable lines describing a topology."""
    v6 = f" {g.graph['subnet6']}" if g.graph.get("subnet6") else ""
    yield f"LAN {g.graph['subnet']}{v6} (prefix {g.graph['prefix']})"
    ap = the(g, "ap")
    a = g.nodes[ap]
    yield (f"  ap       ns={a['netns']} bridge={a['bridge']} filter={a.get('filter', False)} "
           f"group_to_unicast={a.get('group_to_unicast', False)} "
           f"proxy_arp={a.get('proxy_arp', False)}")
    for role in ("router", "station", "peer", "guest"):
        for n in nodes_with_role(g, role):
            d = g.nodes[n]
            where = d["netns"] or "root"
            extra = ""
            if role == "guest":
                extra = f" host-end={guest_port(g, n)}"
            if role == "router" and d.get("dhcp"):
                c = d["dhcp"]
                extra = f" dhcp={c['range'][0]}-{c['range'][1]} lease={c.get('lease_time', 300)}s"
            if role == "router" and d.get("ra"):
                r = d["ra"]
                flags = "".join(f for f, k in (("M", "managed"), ("O", "other"),
                                               ("A", "autonomous")) if r.get(k))
                extra += f" ra={flags or '-'}"
            if role == "router" and d.get("dhcp6"):
                extra += f" dhcp6={d['dhcp6']['mode']}"
            if d.get("addr6"):
                extra += f" addr6={d['addr6']}"
            yield (f"  {n:<8} ns={where} if={lan_ifname(g, n)} mac={d['mac']} "
                   f"addr={d.get('addr') or '-'}{extra}")
