"""One machine of a built world: router, peer, the station (root namespace) or a guest."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence

import networkx as nx
from pyroute2 import IPRoute

from . import dhcp
from .graph import guest_port, lan_ifname
from .procs import Proc, Processes, run, wait_for


class Host:
    """Commands, processes, addresses and DHCP clients of one node, on its LAN interface."""

    def __init__(self, g: nx.Graph, name: str, processes: Processes):
        #: Where this host's processes are started and its files kept (its world's).
        self.processes = processes
        self.prefix: str = g.graph["prefix"]
        self.name = name
        self.role: str = g.nodes[name]["role"]
        self.netns: str | None = g.nodes[name].get("netns")
        #: The node's LAN interface (the uplink for the station, eth0 inside a guest).
        self.ifname: str = lan_ifname(g, name)
        #: For a guest: the host end in the root namespace, to attach to an OVS bridge.
        self.port: str | None = guest_port(g, name) if self.role == "guest" else None
        #: The static address from the graph ("10.231.x.y/24") or None.
        self.addr: str | None = g.nodes[name].get("addr")
        #: The static IPv6 address from the graph ("fd57:4c42:..::11/64") or None.
        self.addr6: str | None = g.nodes[name].get("addr6")
        self._dhcp: Proc | None = None

    def __repr__(self) -> str:
        return f"<Host {self.name} ({self.role}) {self.netns or 'root'}:{self.ifname}>"

    # ------------------------------------------------------------ commands

    def run(self, *argv: str, check: bool = False, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command in this node's namespace; output captured as text."""
        return run(self.netns, argv, check=check, timeout=timeout, input=input)

    def popen(self, *argv: str, name: str | None = None) -> Proc:
        """Start a background process here; the world stops it at teardown."""
        name = name or f"{self.name}-{argv[0].rsplit('/', 1)[-1]}-{len(self.processes.procs)}"
        return self.processes.start(name, self.netns, list(argv))

    def ping(self, dst: str, *, count: int = 1, timeout: float = 2, src: str | None = None,
             interval: float = 0.2) -> bool:
        """True if dst answers.  The source defaults to this node's current IPv4 address."""
        src = src or self.ip
        argv = ["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), "-i", str(interval)]
        if src:
            argv += ["-I", src]
        res = self.run(*argv, str(ipaddress.ip_interface(dst).ip),
                       timeout=count * (interval + timeout) + 5)
        return res.returncode == 0

    # ------------------------------------------------------------ link state

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def _index(self, ipr: IPRoute) -> int:
        found = ipr.link_lookup(ifname=self.ifname)
        if not found:
            raise LookupError(f"{self.ifname} not found in {self.netns or 'root'}")
        return found[0]

    @property
    def mac(self) -> str:
        """The LAN interface's current MAC."""
        with self._ipr() as ipr:
            return ipr.get_links(self._index(ipr))[0].get("address")

    def set_mac(self, mac: str) -> None:
        with self._ipr() as ipr:
            ipr.link("set", index=self._index(ipr), address=mac)

    def ips(self) -> list[str]:
        """Current IPv4 addresses (without prefix length) of the LAN interface."""
        with self._ipr() as ipr:
            return [a.get("IFA_LOCAL") or a.get("IFA_ADDRESS")
                    for a in ipr.get_addr(family=2, index=self._index(ipr))]

    @property
    def ip(self) -> str | None:
        """The first current IPv4 address, or None."""
        found = self.ips()
        return found[0] if found else None

    def set_addr(self, addr: str) -> None:
        """Add an address such as "10.231.77.51/24" (static configuration)."""
        iface = ipaddress.ip_interface(addr)
        with self._ipr() as ipr:
            ipr.addr("add", index=self._index(ipr), address=str(iface.ip),
                     prefixlen=iface.network.prefixlen)

    def flush_addr(self) -> None:
        """Remove all IPv4 addresses from the LAN interface."""
        with self._ipr() as ipr:
            idx = self._index(ipr)
            for a in ipr.get_addr(family=2, index=idx):
                ipr.addr("del", index=idx, address=a.get("IFA_LOCAL"), prefixlen=a["prefixlen"])

    def wait_ip(self, timeout: float = 20, *, other_than: Sequence[str] = ()) -> str | None:
        """Wait until the LAN interface has an IPv4 address (not in other_than)."""
        def found() -> str | None:
            fresh = [ip for ip in self.ips() if ip not in other_than]
            return fresh[0] if fresh else None

        return wait_for(found, timeout, interval=0.2)

    # ------------------------------------------------------------ IPv6

    def set_addr6(self, addr: str, *, nodad: bool = False) -> None:
        """Add an IPv6 address such as "fd57:4c42:1:2::11/64"; ``nodad`` skips DAD."""
        argv = ["ip", "-6", "addr", "add", addr, "dev", self.ifname]
        self.run(*argv, *(["nodad"] if nodad else []), check=True)

    def addrs6(self) -> list[dict]:
        """IPv6 addresses of the LAN interface: {"ip", "prefixlen", "scope", "flags"}
        (flags from ``ip -j``: "tentative", "dadfailed", "temporary", "mngtmpaddr", ...)."""
        import json

        res = self.run("ip", "-j", "-6", "addr", "show", "dev", self.ifname, check=True)
        out = []
        for link in json.loads(res.stdout or "[]"):
            for a in link.get("addr_info", []):
                if a.get("family") != "inet6":
                    continue
                flags = [k for k in ("tentative", "dadfailed", "temporary", "mngtmpaddr",
                                     "noprefixroute", "dynamic", "deprecated", "optimistic")
                         if a.get(k)]
                out.append({"ip": a["local"], "prefixlen": a["prefixlen"],
                            "scope": a.get("scope"), "flags": flags})
        return out

    def ips6(self, scope: str = "global", *, usable: bool = True) -> list[str]:
        """IPv6 addresses of one scope ("global" or "link"); ``usable``: not tentative or
        failed."""
        return [a["ip"] for a in self.addrs6() if a["scope"] == scope
                and not (usable and {"tentative", "dadfailed"} & set(a["flags"]))]

    @property
    def link_local(self) -> str | None:
        found = self.ips6("link")
        return found[0] if found else None

    def wait_ip6(self, ip: str | None = None, timeout: float = 20, *, scope: str = "global",
                 other_than: Sequence[str] = ()) -> str | None:
        """Wait until the interface has a usable IPv6 address (``ip`` if given)."""
        def found() -> str | None:
            have = [a for a in self.ips6(scope) if a not in other_than]
            if ip is not None:
                want = str(ipaddress.ip_address(ip))
                return want if want in have else None
            return have[0] if have else None

        return wait_for(found, timeout, interval=0.2)

    def ping6(self, dst: str, *, count: int = 1, timeout: float = 2, src: str | None = None,
              interval: float = 0.2) -> bool:
        """True if dst (IPv6; a link-local one is reached through the LAN interface) answers."""
        ip = ipaddress.ip_interface(dst).ip
        argv = ["ping", "-6", "-n", "-q", "-c", str(count), "-W", str(timeout),
                "-i", str(interval)]
        if src:
            argv += ["-I", src]
        elif ip.is_link_local:
            argv += ["-I", self.ifname]
        res = self.run(*argv, str(ip), timeout=count * (interval + timeout) + 5)
        return res.returncode == 0

    def restart_ipv6(self) -> None:
        """Take the LAN interface down and up: the kernel forgets SLAAC addresses, does DAD
        again and sends Router Solicitations (a guest booting); a static IPv6 address is
        added again."""
        self.run("ip", "link", "set", self.ifname, "down", check=True)
        self.run("ip", "link", "set", self.ifname, "up", check=True)
        if self.addr6:  # a static address goes with the link (keep_addr_on_down is 0)
            self.set_addr6(self.addr6, nodad=self.role != "guest")

    def mcast_argv(self, *args: str) -> list[str]:
        """argv of the group/discovery tool (`topologies.mcast`) on this node's interface."""
        import sys

        return [sys.executable, "-m", "topologies.mcast", "--ifname", self.ifname, *args]

    def dhclient6(self, *, stateless: bool = False, oneshot: bool = False,
                  extra: Sequence[str] = (), timeout: float = 10) -> Proc:
        """Start ISC dhclient -6 (``stateless``: -S, Information-Request only) with private
        files and a script that only sets the address here.  Waits for a usable link-local
        address first (dhclient -6 exits when it cannot bind to it)."""
        self.stop_dhcp()
        wait_for(lambda: self.link_local, timeout, interval=0.2)
        argv = dhcp.dhclient6_argv(self.ifname, self._client_files(), stateless=stateless,
                                   oneshot=oneshot, extra=tuple(extra))
        self._dhcp = self.popen(*argv, name=f"{self.name}-dhclient6")
        return self._dhcp

    def dhcp6_events(self) -> list[str]:
        """What the dhclient -6 script was called for: "reason new-ip old-ip dns=.. search=.."."""
        path = self.processes.tmp_path("dhcp") / f"{self.name}.dhcp6-events"
        return path.read_text().splitlines() if path.exists() else []

    # ------------------------------------------------------------ DHCP clients

    def _client_files(self) -> dict:
        return dhcp.write_client_files(self.processes.tmp_path("dhcp"), self.name)

    def dhclient(self, *, oneshot: bool = False, extra: Sequence[str] = ()) -> Proc:
        """Start ISC dhclient (no broadcast flag) with private lease/pid files and a script
        that only sets the address in this namespace."""
        self.stop_dhcp()
        argv = dhcp.dhclient_argv(self.ifname, self._client_files(), oneshot=oneshot,
                                  extra=tuple(extra))
        self._dhcp = self.popen(*argv, name=f"{self.name}-dhclient")
        return self._dhcp

    def udhcpc(self, *, broadcast: bool = True, oneshot: bool = False,
               extra: Sequence[str] = ()) -> Proc:
        """Start busybox udhcpc; broadcast=True sets the BOOTP broadcast flag (-B)."""
        self.stop_dhcp()
        argv = dhcp.udhcpc_argv(self.ifname, self._client_files(), broadcast=broadcast,
                                oneshot=oneshot, extra=tuple(extra))
        self._dhcp = self.popen(*argv, name=f"{self.name}-udhcpc")
        return self._dhcp

    def dhcp(self, client: str = "dhclient", *, timeout: float = 20,
             broadcast: bool = True) -> str | None:
        """Start a DHCP client (kept running for renewals) and wait for an address."""
        before = self.ips()
        if client == "dhclient":
            self.dhclient()
        elif client == "udhcpc":
            self.udhcpc(broadcast=broadcast)
        else:
            raise ValueError(f"unknown DHCP client {client!r} (dhclient or udhcpc)")
        return self.wait_ip(timeout, other_than=before)

    @property
    def client(self) -> Proc | None:
        """The DHCP client (dhclient, dhclient -6, udhcpc) this host runs, if any."""
        return self._dhcp

    def stop_dhcp(self) -> None:
        if self._dhcp is not None:
            self._dhcp.stop()
            self._dhcp = None

    def dhcp_events(self) -> list[str]:
        """What the client script was called for, one "reason new-ip [old-ip]" line each."""
        path = self.processes.tmp_path("dhcp") / f"{self.name}.dhcp-events"
        return path.read_text().splitlines() if path.exists() else []
