"""The emulated AP's 802.11 rules as nftables bridge-family rules, and their counters.

A station in managed mode sends 3-address frames carrying one station address, so the AP
only accepts frames from the station whose source MAC is the station's, and only sends it
unicast frames addressed to the station MAC.  On the AP's Linux bridge this becomes, on the
port towards the station ("station link"):

* prerouting, in from the station link: source MAC != station MAC -> drop (``foreign_src``);
* forward, out to the station link: unicast destination != station MAC -> drop (``foreign_dst``);
* optionally (``group_to_unicast``) broadcast/multicast out to the station link gets the station
  MAC as destination, as many APs do (``group_to_unicast``);
* optionally (``proxy_arp``: a Hotspot 2.0 / "proxy ARP" AP, hostapd's ``proxy_arp=1``,
  ``ap_isolate=1``, ``disable_dgaf=1``, ``na_mcast_to_ucast=1``) no group-addressed frame
  reaches the station (``group_dropped``) but what hostapd turns into unicast for each
  station: DHCP replies, Router Advertisements and Neighbor Advertisements
  (``group_to_unicast``).  The AP answers ARP for its stations itself: the kernel bridge
  does, from its neighbour table (`proxy_arp_bridge`), as under hostapd.

With ``filter`` off the same frames are counted but not dropped.  Counters are named nft counter
objects, so rewriting the rules (a new station MAC) keeps them.
"""

from __future__ import annotations

import json
from typing import NamedTuple

TABLE = "wlap"
FAMILY = "bridge"
COUNTERS = ("from_station", "to_station", "foreign_src", "foreign_dst", "group_to_unicast",
            "group_dropped")


class Counter(NamedTuple):
    packets: int
    bytes: int


def _rules(port: str, station_mac: str, filter: bool, group_to_unicast: bool,
           proxy_arp: bool = False, table: str = TABLE) -> list[str]:
    verdict = " drop" if filter else ""
    unicast = "ether daddr & 01:00:00:00:00:00 == 00:00:00:00:00:00"
    group = "ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00"
    rules = [
        f'add rule {FAMILY} {table} station_in iifname "{port}" counter name from_station',
        (f'add rule {FAMILY} {table} station_in iifname "{port}" ether saddr != {station_mac} '
         f"counter name foreign_src{verdict}"),
        (f'add rule {FAMILY} {table} station_out oifname "{port}" {unicast} '
         f"ether daddr != {station_mac} counter name foreign_dst{verdict}"),
    ]
    if proxy_arp:  # hostapd's disable_dgaf: only what it converts per station gets through
        out = f'add rule {FAMILY} {table} station_out oifname "{port}" {group}'
        rules += [
            f"{out} udp dport 68 counter name group_to_unicast ether daddr set {station_mac}",
            (f"{out} icmpv6 type {{ nd-router-advert, nd-neighbor-advert }} "
             f"counter name group_to_unicast ether daddr set {station_mac}"),
            f"{out} counter name group_dropped drop",
        ]
    elif group_to_unicast:
        rules.append(
            f'add rule {FAMILY} {table} station_out oifname "{port}" {group} '
            f"counter name group_to_unicast ether daddr set {station_mac}"
        )
    rules.append(f'add rule {FAMILY} {table} station_out oifname "{port}" counter name to_station')
    return rules


def ruleset(port: str, station_mac: str, *, filter: bool = True,
            group_to_unicast: bool = False, proxy_arp: bool = False,
            table: str = TABLE) -> str:
    """A complete `nft -f` script creating the AP table (replaces an existing one); another
    `table` name: the rules of one more station (another host's uplink on the same AP)."""
    lines = [
        f"table {FAMILY} {table}",
        f"delete table {FAMILY} {table}",
        f"table {FAMILY} {table} {{",
        *(f"  counter {name} {{ }}" for name in COUNTERS),
        "  chain station_in { type filter hook prerouting priority -200; policy accept; }",
        "  chain station_out { type filter hook forward priority -200; policy accept; }",
        "}",
        *_rules(port, station_mac, filter, group_to_unicast, proxy_arp, table),
    ]
    return "\n".join(lines) + "\n"


def update(port: str, station_mac: str, *, filter: bool = True,
           group_to_unicast: bool = False, proxy_arp: bool = False) -> str:
    """An `nft -f` script that swaps the rules in one transaction, keeping the counters."""
    lines = [
        f"flush chain {FAMILY} {TABLE} station_in",
        f"flush chain {FAMILY} {TABLE} station_out",
        *_rules(port, station_mac, filter, group_to_unicast, proxy_arp),
    ]
    return "\n".join(lines) + "\n"


def proxy_arp_bridge(bridge: str, port: str) -> list[list[str]]:
    """Commands (in the AP's namespace) that make its bridge a proxy-ARP AP as hostapd's
    x_snoop does: the station port answered for (``proxy_arp_wifi``: the bridge replies to
    an ARP request for an address in its neighbour table whose MAC is behind that port, and
    does not flood the request there) with hairpin mode, and the bridge accepting gratuitous
    ARP (``arp_accept``): a station's gratuitous ARP teaches it the address."""
    return [
        ["ip", "link", "set", "dev", port, "type", "bridge_slave", "proxy_arp_wifi", "on",
         "hairpin", "on"],
        ["sysctl", "-qw", f"net.ipv4.conf.{bridge}.arp_accept=1"],
    ]


def list_counters_argv() -> list[str]:
    return ["nft", "-j", "list", "counters", "table", FAMILY, TABLE]


def parse_counters(text: str) -> dict[str, Counter]:
    """Parse `nft -j list counters ...` output into {name: Counter}."""
    out: dict[str, Counter] = {}
    for item in json.loads(text).get("nftables", []):
        c = item.get("counter")
        if c and c.get("table") == TABLE:
            out[c["name"]] = Counter(int(c["packets"]), int(c["bytes"]))
    return out
