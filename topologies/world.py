"""Realising a topology graph with network namespaces, veth pairs and a Linux-bridge AP.

    with World(basic_lan()) as w:          # or: yield from a pytest fixture
        w.station.ping(w.host("peer1").ip)

The station is the root namespace; every other node gets a namespace named by the graph.
Teardown removes every namespace, root link and process the world created, also after a
failure half-way through `build`, and may be called any number of times.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import tempfile
from pathlib import Path

import networkx as nx
from pyroute2 import IPRoute, netns

from . import apfilter, cleanup, dhcp, ra
from .graph import (
    TopologyError,
    lan_ifname,
    namespaces,
    nodes_with_role,
    root_ifnames,
    station_uplink,
    the,
    validate,
)
from .host import Host
from .procs import Proc, Processes, run, wait_for


class World:
    """A built topology: namespaces, links, the AP, DHCP server and processes."""

    def __init__(self, graph: nx.Graph, *, keep_logs: bool = False):
        self.graph = validate(graph)
        self.prefix: str = graph.graph["prefix"]
        self.subnet = ipaddress.ip_network(graph.graph["subnet"])
        sub6 = graph.graph.get("subnet6")
        #: The LAN's IPv6 /64, or None (IPv6 link-local only, no RAs, no DHCPv6).
        self.subnet6 = ipaddress.ip_network(sub6) if sub6 else None
        self.keep_logs = keep_logs
        #: The world's processes and work directory, shared with its hosts.
        self.processes = Processes()
        self._namespaces: list[str] = []
        self._root_links: list[str] = []
        self._hosts = {n: Host(graph, n, self.processes)
                       for n, r in graph.nodes(data="role") if r != "ap"}
        ap = the(graph, "ap")
        self.ap_netns: str = graph.nodes[ap]["netns"]
        self._ap = dict(graph.nodes[ap])
        self._station_port = graph.edges[ap, the(graph, "station")]["ifnames"][ap]
        #: The world whose AP the station is on (`move_station`): this one unless it moved.
        self.station_at: World = self
        self._extra_stations: list[str] = []   # more hosts' uplinks (add_station)
        self.built = False

    # ------------------------------------------------------------ access

    def host(self, name: str) -> Host:
        return self._hosts[name]

    @property
    def station(self) -> Host:
        return self._hosts[the(self.graph, "station")]

    @property
    def router(self) -> Host:
        return self._hosts[the(self.graph, "router")]

    @property
    def peers(self) -> list[Host]:
        return [self._hosts[n] for n in nodes_with_role(self.graph, "peer")]

    @property
    def guests(self) -> list[Host]:
        return [self._hosts[n] for n in nodes_with_role(self.graph, "guest")]

    @property
    def uplink(self) -> str:
        """The station's uplink interface (root namespace)."""
        return station_uplink(self.graph)

    @property
    def workdir(self) -> Path | None:
        """The directory of logs and files (None until built)."""
        return self.processes.workdir

    @property
    def procs(self) -> list[Proc]:
        return self.processes.procs

    def tmp_path(self, name: str) -> Path:
        return self.processes.tmp_path(name)

    def start(self, name: str, netns: str | None, argv: list[str]) -> Proc:
        """A background process owned (and stopped at teardown) by this world."""
        return self.processes.start(name, netns, argv)

    # ------------------------------------------------------------ build

    def __enter__(self):  # -> Self
        return self if self.built else self.build()

    def __exit__(self, *exc) -> None:
        self.teardown()

    def build(self) -> World:
        self._check_free()
        self.processes.workdir = Path(tempfile.mkdtemp(prefix=f"wlbridge-{self.prefix}-"))
        try:
            for ns in namespaces(self.graph):
                netns.create(ns)
                self._namespaces.append(ns)
                run(ns, ["ip", "link", "set", "lo", "up"])
            run(self.ap_netns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                "net.ipv6.conf.default.disable_ipv6=1"])
            if self.subnet6:
                self._ipv6_sysctls()
            for u, v, data in self.graph.edges(data=True):
                self._make_link(u, v, data["ifnames"])
            self._make_ap()
            st = the(self.graph, "station")
            if self.subnet6 and not self.graph.nodes[st].get("accept_ra", True):
                _root_sysctl(f"net/ipv6/conf/{self.uplink}/accept_ra", "0")
            for h in self._hosts.values():
                if h.addr:
                    h.set_addr(h.addr)
                if h.addr6:
                    # The LAN's own machines are there already (no DAD wait); a guest's static
                    # address goes through DAD as on any host.
                    h.set_addr6(h.addr6, nodad=h.role != "guest")
            self._start_dhcp_server()
            self._start_radvd()
            if self.graph.graph.get("visited"):  # (`second_lan`) a station comes from elsewhere
                self._drop_own_station_link()
            self.built = True
        except BaseException:
            self.teardown()
            raise
        return self

    def _check_free(self) -> None:
        left = cleanup.list_namespaces(self.prefix)
        clash = [n for n in root_ifnames(self.graph) if cleanup.link_exists(n)]
        if left or clash:
            raise TopologyError(
                f"names of prefix {self.prefix!r} already in use (namespaces {left}, links "
                f"{clash}); a leftover run? topologies.cleanup_leftovers({self.prefix!r})")
        for ip in cleanup.root_ipv6_addresses() if self.subnet6 else ():
            if ipaddress.ip_address(ip) in self.subnet6:
                raise TopologyError(f"IPv6 subnet {self.subnet6} is already in use in the root "
                                    f"namespace ({ip}); pick another prefix")
        for ip in cleanup.root_ipv4_addresses():
            if ipaddress.ip_address(ip) in self.subnet:
                raise TopologyError(f"subnet {self.subnet} is already in use in the root "
                                    f"namespace ({ip}); pick another subnet/prefix "
                                    "(topologies.free_prefix() picks a free one)")

    def _ns(self, node: str) -> str | None:
        return self.graph.nodes[node].get("netns")

    def _ipv6_sysctls(self) -> None:
        """IPv6 LAN: the router forwards (radvd wants it) and, as the peers, has its addresses
        at once (no DAD: they are the LAN, not under test); peers keep their static address
        only (no SLAAC).  Guests keep the kernel defaults (SLAAC, DAD, router solicitations)."""
        for n, data in self.graph.nodes(data=True):
            if data["role"] not in ("router", "peer"):
                continue
            keys = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
            if data["role"] == "router":
                keys.append("net.ipv6.conf.all.forwarding=1")
            else:
                keys += ["net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0"]
            run(data["netns"], ["sysctl", "-qw", *keys])

    def _make_link(self, u: str, v: str, ifnames: dict) -> None:
        # Create from the root namespace when one end lives there, so no name ever passes
        # through a namespace it does not belong to.
        if self._ns(u) is not None:
            u, v = v, u
        first_ns, peer_ns = self._ns(u), self._ns(v)
        with IPRoute(netns=first_ns) if first_ns else IPRoute() as ipr:
            ipr.link("add", ifname=ifnames[u], kind="veth",
                     peer={"ifname": ifnames[v], "net_ns_fd": peer_ns})
        if first_ns is None:
            self._root_links.append(ifnames[u])
            with IPRoute() as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname=ifnames[u])[0],
                         ifalias=cleanup.alias_for(self.prefix))
        for node, ns in ((u, first_ns), (v, peer_ns)):
            name = ifnames[node]
            own = self.graph.nodes[node]["role"] != "ap" and name == lan_ifname(self.graph, node)
            if ns is None and not own:  # a guest's host end: a bare OVS port, no IPv6 chatter
                _root_sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
            self._link_up(ns, name, self.graph.nodes[node]["mac"] if own else None)

    def _link_up(self, ns: str | None, ifname: str, mac: str | None) -> None:
        with IPRoute(netns=ns) if ns else IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=ifname)[0]
            kw = {"address": mac} if mac else {}
            ipr.link("set", index=idx, state="up", **kw)
        # Userspace OVS datapath + veth: TCP stalls unless TX checksum offload is off.
        run(ns, ["ethtool", "-K", ifname, "tx", "off"])

    def _make_ap(self) -> None:
        ap = the(self.graph, "ap")
        bridge = self._ap["bridge"]
        with IPRoute(netns=self.ap_netns) as ipr:
            ipr.link("add", ifname=bridge, kind="bridge", br_forward_delay=0, br_stp_state=0,
                     br_mcast_snooping=0)
            br = ipr.link_lookup(ifname=bridge)[0]
            for _, _, names in self.graph.edges(ap, data="ifnames"):
                ipr.link("set", index=ipr.link_lookup(ifname=names[ap])[0], master=br)
            ipr.link("set", index=br, state="up")
        if self._ap.get("proxy_arp"):
            for argv in apfilter.proxy_arp_bridge(bridge, self._station_port):
                run(self.ap_netns, argv)
        self.configure_ap(replace=True)

    def _start_dhcp_server(self) -> None:
        routers = nodes_with_role(self.graph, "router")
        if not routers:
            return
        r = self.graph.nodes[routers[0]]
        dhcp6 = r.get("dhcp6") if self.subnet6 else None
        if not r.get("dhcp") and not dhcp6:
            return
        workdir = self.tmp_path("dnsmasq")
        workdir.mkdir()
        argv = dhcp.dnsmasq_argv(lan_ifname(self.graph, routers[0]), r["addr"], r.get("dhcp"),
                                 workdir, addr6=r.get("addr6"), dhcp6=dhcp6)
        proc = self.start("dnsmasq", r["netns"], argv)
        log = workdir / "dnsmasq.log"
        ready = wait_for(lambda: not proc.alive or (log.exists() and "DHCP" in log.read_text()),
                         timeout=10)
        if not ready or not proc.alive:
            raise TopologyError(f"dnsmasq did not start: {proc.output()} "
                                f"{log.read_text() if log.exists() else ''}")

    def _start_radvd(self) -> None:
        routers = nodes_with_role(self.graph, "router")
        if not self.subnet6 or not routers or not self.graph.nodes[routers[0]].get("ra"):
            return
        r = self.graph.nodes[routers[0]]
        workdir = self.tmp_path("radvd")
        workdir.mkdir()
        conf = workdir / "radvd.conf"
        conf.write_text(ra.radvd_conf(lan_ifname(self.graph, routers[0]), str(self.subnet6),
                                      r["ra"]))
        proc = self.start("radvd", r["netns"], ra.radvd_argv(conf, workdir))
        log = workdir / "radvd.log"
        # radvd sends its first RA once the interface has a usable link-local address.
        ready = wait_for(lambda: not proc.alive or (log.exists() and "polling for" in
                                                    log.read_text(errors="replace")), timeout=10)
        if not ready or not proc.alive:
            raise TopologyError(f"radvd did not start: {proc.output()} "
                                f"{log.read_text() if log.exists() else ''}")

    def radvd_log(self) -> str:
        path = self.tmp_path("radvd") / "radvd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ the AP

    def configure_ap(self, *, station_mac: str | None = None, filter: bool | None = None,
                     group_to_unicast: bool | None = None, replace: bool = False) -> None:
        """(Re)write the AP rules; counters survive unless replace=True."""
        if filter is not None:
            self._ap["filter"] = filter
        if group_to_unicast is not None:
            self._ap["group_to_unicast"] = group_to_unicast
        if station_mac is not None:
            self._ap["station_mac"] = station_mac.lower()
        mac = self._ap.get("station_mac") or self.graph.nodes[the(self.graph, "station")]["mac"]
        self._ap["station_mac"] = mac
        render = apfilter.ruleset if replace else apfilter.update
        script = render(self._station_port, mac, filter=bool(self._ap.get("filter")),
                        group_to_unicast=bool(self._ap.get("group_to_unicast")),
                        proxy_arp=bool(self._ap.get("proxy_arp")))
        run(self.ap_netns, ["nft", "-f", "-"], input=script)

    def add_station(self, ifname: str, mac: str) -> str:
        """One more Wi-Fi station on the AP: another host's uplink (`ifname` in the root
        namespace, named with the world's prefix; its MAC `mac`), under one-MAC rules of its
        own (an nft table per station: only `mac` in from it, only unicast to `mac` out to
        it).  Removed at teardown.  Returns `ifname`."""
        if not ifname.startswith(f"{self.prefix}-"):
            raise TopologyError(f"{ifname}: a root link must be named {self.prefix}-...")
        n = len(self._extra_stations) + 2
        ap_end = f"st{n}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=ifname, kind="veth",
                     peer={"ifname": ap_end, "net_ns_fd": self.ap_netns})
        self._root_links.append(ifname)
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0],
                     ifalias=cleanup.alias_for(self.prefix))
        _root_sysctl(f"net/ipv6/conf/{ifname}/disable_ipv6", "1")
        self._link_up(None, ifname, mac.lower())
        self._link_up(self.ap_netns, ap_end, None)
        with IPRoute(netns=self.ap_netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=ap_end)[0],
                     master=ipr.link_lookup(ifname=self._ap["bridge"])[0])
        run(self.ap_netns, ["nft", "-f", "-"], input=apfilter.ruleset(
            ap_end, mac.lower(), filter=True, table=f"{apfilter.TABLE}{n}"))
        self._extra_stations.append(ifname)
        return ifname

    @property
    def ap_station_mac(self) -> str:
        """The MAC the AP accepts as the station's."""
        return self._ap["station_mac"]

    def ap_counters(self) -> dict[str, apfilter.Counter]:
        """The AP's named counters: from_station, to_station, foreign_src, foreign_dst,
        group_to_unicast -> Counter(packets, bytes)."""
        return apfilter.parse_counters(run(self.ap_netns, apfilter.list_counters_argv()).stdout)

    def ap_neighbours(self) -> dict[str, str]:
        """What a proxy-ARP AP answers ARP for: its bridge's IPv4 neighbour table (address ->
        MAC, valid entries)."""
        out = run(self.ap_netns, ["ip", "-j", "-4", "neigh", "show", "dev",
                                  self._ap["bridge"]]).stdout
        return {n["dst"]: n["lladdr"] for n in json.loads(out or "[]")
                if n.get("lladdr") and not set(n.get("state", [])) & {"FAILED", "INCOMPLETE"}}

    def ap_forget_neighbours(self) -> None:
        """The AP forgets what it learned (as an AP ages its stations' addresses)."""
        run(self.ap_netns, ["ip", "-4", "neigh", "flush", "dev", self._ap["bridge"]])

    def ap_run(self, *argv: str, check: bool = True):
        """Run a command in the AP's namespace (e.g. ``bridge fdb``, ``nft list ruleset``)."""
        return run(self.ap_netns, list(argv), check=check)

    def set_station_mac(self, mac: str, *, update_ap: bool = True) -> None:
        """Change the station uplink's MAC (reconnect / MAC randomisation); the AP follows."""
        self.station.set_mac(mac)
        if update_ap:
            self.configure_ap(station_mac=mac)

    def set_station_carrier(self, up: bool) -> None:
        """Drop or restore the station link's carrier from the AP side (the station
        disassociating and reassociating, or roaming): the uplink stays, its carrier goes."""
        with IPRoute(netns=self.ap_netns) as ipr:
            idx = ipr.link_lookup(ifname=self._station_port)[0]
            ipr.link("set", index=idx, state="up" if up else "down")

    def _drop_own_station_link(self) -> None:
        uplink = self.uplink
        with IPRoute() as ipr:
            ipr.link("del", index=ipr.link_lookup(ifname=uplink)[0])
        self._root_links.remove(uplink)
        wait_for(lambda: not cleanup.link_exists(uplink), 5)

    def move_station(self, to: World) -> None:
        """The station leaves the AP it is on for `to`'s (a world built from `second_lan`, or
        this one: back home), as a laptop joins another network: its link's AP end moves
        into the other AP's namespace and bridge (the station sees its carrier go and come
        back) and that AP accepts the station's MAC."""
        here = self.station_at
        if to is here:
            return
        port = self._station_port
        with IPRoute(netns=here.ap_netns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=port)[0], state="down")
            ipr.link("set", index=ipr.link_lookup(ifname=port)[0], net_ns_fd=to.ap_netns)
        with IPRoute(netns=to.ap_netns) as ipr:
            idx = ipr.link_lookup(ifname=port)[0]
            ipr.link("set", index=idx, master=ipr.link_lookup(ifname=to._ap["bridge"])[0])
            ipr.link("set", index=idx, state="up")
        run(to.ap_netns, ["ethtool", "-K", port, "tx", "off"])
        to.configure_ap(station_mac=self.ap_station_mac, replace=True)
        self.station_at = to

    def recreate_station_link(self, *, gap: float = 0.0) -> None:
        """Delete the station uplink (its AP end goes with it) and create it again with the
        same names and MAC, as a Wi-Fi driver reload does; the AP end rejoins the AP bridge.
        Whatever else had the old interface (an OVS port) is left to cope.  `gap`: seconds
        without the interface."""
        import time

        ap = the(self.graph, "ap")
        station = the(self.graph, "station")
        uplink = self.uplink
        mac = self.station.mac
        with IPRoute() as ipr:
            ipr.link("del", index=ipr.link_lookup(ifname=uplink)[0])
        wait_for(lambda: not cleanup.link_exists(uplink), 5)
        time.sleep(gap)
        self._make_link(station, ap, {station: uplink, ap: self._station_port})
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=uplink)[0], address=mac)
        with IPRoute(netns=self.ap_netns) as ipr:
            br = ipr.link_lookup(ifname=self._ap["bridge"])[0]
            ipr.link("set", index=ipr.link_lookup(ifname=self._station_port)[0], master=br)
        self._root_links = list(dict.fromkeys(self._root_links))

    # ------------------------------------------------------------ DHCP server

    def leases(self) -> list[dhcp.Lease]:
        path = self.tmp_path("dnsmasq") / "leases"
        return dhcp.parse_leases(path.read_text()) if path.exists() else []

    def dnsmasq_log(self) -> str:
        path = self.tmp_path("dnsmasq") / "dnsmasq.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------ teardown

    def teardown(self) -> None:
        """Remove everything this world created; safe to call repeatedly."""
        self.processes.stop_all()
        spaces = [n for n in self._namespaces if n in netns.listnetns()]
        cleanup.kill_namespace_processes(spaces)
        cleanup.delete_root_links(self._root_links)
        cleanup.delete_namespaces(spaces)
        gone = wait_for(lambda: not any(cleanup.link_exists(n) for n in self._root_links), 3)
        if not gone:
            print(f"warning: links still present after teardown: {self._root_links}",
                  file=sys.stderr)
        self._namespaces.clear()
        self._extra_stations.clear()
        self.built = False
        if self.workdir and not self.keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> str:
        lines = [f"world {self.prefix}: LAN {self.subnet}, workdir {self.workdir}"]
        for h in self._hosts.values():
            port = f" port={h.port}" if h.port else ""
            v6 = f" {', '.join(h.ips6())}" if self.subnet6 else ""
            lines.append(f"  {h.name:<8} {h.netns or 'root':<10} {h.ifname:<12} "
                         f"{h.mac:<17} {', '.join(h.ips()) or '-'}{v6}{port}")
        return "\n".join(lines)


def _root_sysctl(key: str, value: str) -> None:
    Path("/proc/sys", key).write_text(value)


def build(graph: nx.Graph, **kw) -> World:
    """Build a world (use it as a context manager to tear it down)."""
    return World(graph, **kw).build()



