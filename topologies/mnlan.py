"""The emulated Wi-Fi LAN as Mininet nodes (test tooling): what `topologies/mininet_wifi.py`
gives `mn --custom`, and what a script gives `Mininet(topo=WifiLan(guests=2), ...)`.

The LAN is the one `topologies.basic_lan` describes (addresses, MACs, the DHCP and RA settings
come from that graph), realised by Mininet instead of `topologies.World`:

* ``ap`` (`WifiAP`, a Mininet switch in its own namespace): a Linux bridge with the 802.11
  one-MAC rule and its counters (`topologies.apfilter`, the same nftables rules as the World's
  AP); ``ap_m2u=1`` makes it convert group frames to unicast towards the station.
* ``router`` (`LanRouter`): the DHCP server (dnsmasq as in `topologies.dhcp`, or ISC dhcpd,
  `topologies.dhcpd`) and, with ``ipv6=1``, radvd (`topologies.ra`) and DHCPv6 (dnsmasq).
* ``peer`` (`LanHost`): another LAN host.
* ``s1`` (`WlbridgeSwitch`): the station's OVS bridge in the root namespace.  Its uplink
  ``s1-wl0`` is the station's Wi-Fi interface (the station MAC, the station address); with a
  remote controller the bridge is made by ``wlbridge setup`` itself (`wlbridge_argv`), and
  removed by ``wlbridge teardown``; without one it is Mininet's plain OVS bridge with one
  ``NORMAL`` flow: the positive control, which the AP defeats.
* ``g1`` .. ``gN`` (`Guest`): guests without an address; ``g1 dhclient g1-eth0`` gets one
  through the AP (a private /run and /var/lib/dhcp per guest, so each dhclient has its own pid
  and lease files).

Everything the topology starts carries ``WLBRIDGE_MININET`` in its environment, and its files
live under ``/tmp/wlbridge-mininet:SWITCH``: `cleanup_leftovers` (registered as a Mininet
cleanup callback, so ``mn -c --custom topologies/mininet_wifi.py`` runs it) removes both, and
``mn -c`` alone already kills those processes (it kills every command line holding
``mininet:``).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from mininet.clean import addCleanupCallback
from mininet.log import info, warn
from mininet.node import Host, OVSSwitch, Switch
from mininet.topo import Topo

from . import apfilter, dhcp, dhcpd, ra
from .graph import basic_lan, make_mac, the
from .procs import kill_pids

#: The environment variable marking every process the topology starts (its value: the switch).
MARK = "WLBRIDGE_MININET"
#: Where the topology keeps its files (+ the switch name); "mininet:" makes `mn -c` kill
#: whatever has such a path on its command line.
WORKDIR_BASE = "/tmp/wlbridge-mininet:"
DHCP_SERVERS = ("dnsmasq", "isc")
REPO = Path(__file__).resolve().parent.parent
OVS_MODULE = "/sys/module/openvswitch"


def wlbridge_argv() -> list[str]:
    """How to run the `wlbridge` command: $WLBRIDGE_CLI (a command line), else `wlbridge` on
    PATH, else this repository's .venv/bin/wlbridge (what `make install` creates)."""
    env = os.environ.get("WLBRIDGE_CLI")
    if env:
        return shlex.split(env)
    found = shutil.which("wlbridge")
    if found:
        return [found]
    venv = REPO / ".venv" / "bin" / "wlbridge"
    if venv.exists():
        return [str(venv)]
    raise RuntimeError("wlbridge not found: set WLBRIDGE_CLI, put it on PATH, or run "
                       "`make install` in the repository (it creates .venv/bin/wlbridge)")


def _flag(value) -> bool:
    """A topology parameter as a bool (`mn --topo wifilan,ipv6=1` passes ints or strings)."""
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _ns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _pids():
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            yield int(entry)


def marked_pids(switch: str | None = None) -> list[int]:
    """Processes carrying `MARK` (for `switch`, or any)."""
    want = f"{MARK}={switch}".encode() if switch else f"{MARK}=".encode()
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(e == want if switch else e.startswith(want) for e in env):
            found.append(pid)
    return found


def cleanup_leftovers(switch: str | None = None) -> list[int]:
    """Kill what a topology (for `switch`, or any) left running and remove its files; the pids
    killed.  A Mininet cleanup callback (``mn -c``)."""
    pids = marked_pids(switch)
    kill_pids(pids)
    pattern = f"{Path(WORKDIR_BASE).name}{switch or '*'}"
    for d in Path(WORKDIR_BASE).parent.glob(pattern):
        shutil.rmtree(d, ignore_errors=True)
    return pids


addCleanupCallback(cleanup_leftovers)


class _Marked:
    """A node whose shell (and so whatever is started in it) carries `MARK`."""

    def mark(self, switch: str) -> None:
        self.cmd(f"export {MARK}={shlex.quote(switch)}")

    def netns_pids(self) -> list[int]:
        """Processes in this node's network namespace, other than its shell."""
        ino = _ns_inode(self.pid)
        if ino is None or ino == _ns_inode(1):
            return []
        return [p for p in _pids() if p != self.pid and _ns_inode(p) == ino]

    def terminate(self) -> None:
        kill_pids(self.netns_pids())   # daemons and DHCP clients, which outlive the shell
        super().terminate()


class LanHost(_Marked, Host):
    """A LAN machine (the peer): its address, and on an IPv6 LAN its static IPv6 address
    (no DAD: the LAN is there already, not under test; no SLAAC)."""

    def config(self, switch: str = "s1", addr6: str | None = None, router: bool = False,
               **params):
        r = super().config(**params)
        self.mark(switch)
        if addr6:
            keys = ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                    f"net.ipv6.conf.{self.defaultIntf()}.accept_dad=0"]
            keys += (["net.ipv6.conf.all.forwarding=1"] if router else
                     ["net.ipv6.conf.all.accept_ra=0",
                      f"net.ipv6.conf.{self.defaultIntf()}.accept_ra=0"])
            self.cmd("sysctl -qw " + " ".join(keys))
            self.cmd(f"ip -6 addr add {addr6} dev {self.defaultIntf()} nodad")
        self.cmd(f"ethtool -K {self.defaultIntf()} tx off")
        return r


class LanRouter(LanHost):
    """The LAN's router: its DHCP server (``dhcp_server``: dnsmasq or isc) and radvd."""

    def config(self, switch: str = "s1", workdir: str = "", dhcp_server: str = "dnsmasq",
               dhcp4: dict | None = None, dhcp6: dict | None = None, ra_conf: dict | None = None,
               subnet6: str | None = None, **params):
        r = super().config(switch=switch, router=True, **params)
        self.workdir = Path(workdir)
        self.switch = switch
        self.daemons: list[subprocess.Popen] = []
        ifname, addr = str(self.defaultIntf()), params["ip"]
        addr6 = params.get("addr6")
        if dhcp_server == "isc":
            conf = self.workdir / "dhcpd.conf"
            conf.write_text(dhcpd.dhcpd_conf(addr, dhcp4))
            (self.workdir / "dhcpd.leases").touch()
            self._start("dhcpd", dhcpd.dhcpd_argv(ifname, conf, self.workdir))
            if dhcp6:
                self._start("dnsmasq", dhcp.dnsmasq_argv(ifname, addr, None, self.workdir,
                                                         addr6=addr6, dhcp6=dhcp6))
        else:
            self._start("dnsmasq", dhcp.dnsmasq_argv(ifname, addr, dhcp4, self.workdir,
                                                     addr6=addr6, dhcp6=dhcp6))
        if ra_conf and subnet6:
            conf = self.workdir / "radvd.conf"
            conf.write_text(ra.radvd_conf(ifname, subnet6, ra_conf))
            self._start("radvd", ra.radvd_argv(conf, self.workdir))
        return r

    def _start(self, name: str, argv: list[str]) -> None:
        with open(self.workdir / f"{name}.out", "ab") as out:
            # popen runs from Mininet's process, not the node's shell: the mark goes along
            proc = self.popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, env={**os.environ, MARK: self.switch})
        time.sleep(0.3)
        if proc.poll() is not None:
            raise RuntimeError(f"{self.name}: {name} exited at once ({proc.returncode}): "
                               f"{(self.workdir / f'{name}.out').read_text(errors='replace')}")
        self.daemons.append(proc)

    def terminate(self) -> None:
        super().terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)   # the topology's files: last user

    def leases(self) -> list[dhcp.Lease]:
        """dnsmasq's leases (ISC dhcpd: the hardware addresses and addresses it leased)."""
        path = self.workdir / "leases"
        if path.exists():
            return dhcp.parse_leases(path.read_text())
        return dhcpd.parse_leases((self.workdir / "dhcpd.leases").read_text()) \
            if (self.workdir / "dhcpd.leases").exists() else []


class Guest(_Marked, Host):
    """A guest: no address until its DHCP client gets one; ``IP()`` reads the interface, so
    ``pingall`` and ``g1 ping peer`` use the leased address."""

    def __init__(self, name, **params):
        params.setdefault("privateDirs", ["/run", "/var/lib/dhcp"])
        super().__init__(name, **params)

    def config(self, switch: str = "s1", **params):
        r = super().config(**params)
        self.mark(switch)
        self.cmd(f"ethtool -K {self.defaultIntf()} tx off")
        return r

    def IP(self, intf=None):
        i = self.intf(intf)
        return i.updateIP() if i is not None else None

    def dhcp(self, timeout: int = 20) -> str | None:
        """ISC dhclient, once, unmodified (no broadcast flag): the address, or None."""
        self.cmd(f"timeout {timeout} dhclient -1 -v {self.defaultIntf()} "
                 f"> /run/dhclient.out 2>&1")
        return self.IP()


class WifiAP(Switch):
    """The access point: a Linux bridge in the AP's namespace, with the 802.11 one-MAC rule on
    the port towards the station (`topologies.apfilter`), counted."""

    def __init__(self, name, station_port: str = "to-station", station_mac: str = "",
                 m2u: bool = False, **params):
        params["inNamespace"] = True     # Mininet's default for switches is the root namespace
        params.setdefault("dpid", "1")
        super().__init__(name, **params)
        self.station_port, self.station_mac, self.m2u = station_port, station_mac, m2u

    def start(self, controllers) -> None:
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                 "net.ipv6.conf.default.disable_ipv6=1")
        self.cmd("ip link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0")
        for intf in self.intfList():
            if intf.name != "lo":
                self.cmd(f"ip link set {intf} master br0 up")
        self.cmd("ip link set br0 up")
        self.nft(apfilter.ruleset(self.station_port, self.station_mac, filter=True,
                                  group_to_unicast=self.m2u))

    def nft(self, script: str) -> None:
        proc = self.popen(["nft", "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
        out = proc.communicate(script.encode())[0]
        if proc.returncode:
            raise RuntimeError(f"{self.name}: nft failed: {out.decode(errors='replace')}")

    def counters(self) -> dict[str, apfilter.Counter]:
        """from_station, to_station, foreign_src, foreign_dst, group_to_unicast."""
        return apfilter.parse_counters(self.cmd(" ".join(apfilter.list_counters_argv())))

    def connected(self) -> bool:
        return True


class WlbridgeSwitch(OVSSwitch):
    """The station's OVS bridge.  With a controller, ``wlbridge setup --bridge NAME --uplink
    UPLINK --controller tcp:IP:PORT`` makes it (OpenFlow 1.3, fail_mode=secure, out-of-band,
    the packet-in limit, the station MAC as the bridge's, the station address moved onto the
    internal port, the uplink's ingress filter) and Mininet's guest ports are added to it;
    ``wlbridge teardown`` removes it.  Without one: Mininet's own bridge plus ``NORMAL``.

    ``datapath``: Mininet's ``user`` (netdev) or ``kernel`` (system); default: the kernel
    datapath when the openvswitch module is loaded, as ``wlbridge setup`` chooses."""

    def __init__(self, name, uplink: str = "", station_mac: str = "", station_addr: str = "",
                 station_addr6: str | None = None, workdir: str = "", **params):
        params.setdefault("protocols", "OpenFlow13")
        if params.get("datapath") is None:
            params["datapath"] = "kernel" if os.path.isdir(OVS_MODULE) else "user"
        super().__init__(name, **params)
        self.batch = False            # started at once by start(), not by batchStartup
        self.uplink, self.station_mac = uplink, station_mac
        self.station_addr, self.station_addr6 = station_addr, station_addr6
        self.workdir = workdir
        self.by_wlbridge = False

    def _station_up(self) -> None:
        """The station's Wi-Fi interface: the station MAC and address, as after association."""
        up = self.uplink
        self.cmd(f"ip link set {up} address {self.station_mac} up")
        self.cmd(f"ip addr replace {self.station_addr} dev {up}")
        if self.station_addr6:
            self.cmd(f"sysctl -qw net.ipv6.conf.{up}.accept_dad=0")
            self.cmd(f"ip -6 addr replace {self.station_addr6} dev {up} nodad")
        for intf in self.intfList():
            if intf.name != "lo":
                self.cmd(f"ethtool -K {intf} tx off")
                if intf.name != up:   # a guest's host end: a bare OVS port, no IPv6 chatter
                    self.cmd(f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=1")

    def start(self, controllers) -> None:
        self._station_up()
        if not controllers:
            info(f"\n*** {self}: no controller: a plain OVS bridge with one NORMAL flow "
                 "(the positive control: the AP drops the guests' frames)\n")
            super().start(controllers)
            self.cmd(f"ovs-ofctl -O OpenFlow13 add-flow {self} priority=0,actions=NORMAL")
            return
        if len(controllers) > 1:
            warn(f"*** {self}: wlbridge takes one controller; using {controllers[0]}\n")
        c = controllers[0]
        target = f"{c.protocol}:{c.IP()}:{c.port}"
        dp = "netdev" if self.datapath == "user" else "system"
        argv = [*wlbridge_argv(), "setup", "--bridge", str(self), "--uplink", self.uplink,
                "--datapath", dp, "--controller", target, "--address-manager", "keep",
                "--state-dir", self.workdir]
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        info(res.stdout)
        if res.returncode != 0:
            raise RuntimeError(f"{self}: {' '.join(argv)} failed ({res.returncode}): "
                               f"{res.stderr.strip()}")
        self.by_wlbridge = True
        ports = "".join(f" -- --may-exist add-port {self} {i} -- set Interface {i} "
                        f"ofport_request={self.ports[i]}"
                        for i in self.intfList() if i.name not in ("lo", self.uplink))
        if ports:
            out = self.cmd(f"ovs-vsctl {ports}")
            if out.strip():
                raise RuntimeError(f"{self}: adding the guest ports: {out.strip()}")

    @classmethod
    def batchStartup(cls, switches, run=None):
        return switches                          # start() did it

    @classmethod
    def batchShutdown(cls, switches, run=None):
        for s in switches:
            s.stop(deleteIntfs=False)
        return switches

    def stop(self, deleteIntfs: bool = True) -> None:
        if self.by_wlbridge:
            argv = [*wlbridge_argv(), "teardown", "--bridge", str(self)]
            res = subprocess.run(argv, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                warn(f"*** {self}: wlbridge teardown: {res.stderr.strip()}; deleting the "
                     "bridge (stop the controller first to let teardown do it)\n")
                self.cmd("ovs-vsctl --if-exists del-br", self)
            self.by_wlbridge = False
        else:
            self.cmd("ovs-vsctl --if-exists del-br", self)
        if self.datapath == "user":
            self.cmd("ip link del", self)
        Switch.stop(self, deleteIntfs)


class WifiLan(Topo):
    """``wifilan``: the emulated Wi-Fi LAN of `topologies.basic_lan`, guests on ``s1``.

    Parameters (``mn --topo wifilan,guests=3,ipv6=1``): ``guests`` (1-40, default 2),
    ``ap_m2u`` (the AP converts group frames to unicast to the station), ``dhcp`` (the
    router's server: ``dnsmasq`` or ``isc``), ``ipv6`` (radvd, SLAAC, and with dnsmasq stateful
    DHCPv6), ``datapath`` (``user`` or ``kernel``), ``switch`` (the bridge's name, default s1),
    ``prefix`` (picks the LAN's /24 under 10.231.0.0/16, as for `basic_lan`)."""

    def build(self, guests=2, ap_m2u=0, dhcp="dnsmasq", ipv6=0, datapath=None, switch="s1",
              prefix="mn"):
        guests = int(guests)
        if dhcp not in DHCP_SERVERS:
            raise ValueError(f"wifilan: dhcp must be one of {', '.join(DHCP_SERVERS)}, "
                             f"not {dhcp!r}")
        v6 = _flag(ipv6)
        g = basic_lan(n_guests=guests, prefix=prefix, group_to_unicast=_flag(ap_m2u),
                      static_guests=False, ipv6=v6,
                      dhcpv6="stateful" if dhcp == "dnsmasq" else None)
        self.graph = g
        workdir = f"{WORKDIR_BASE}{switch}"
        shutil.rmtree(workdir, ignore_errors=True)
        Path(workdir).mkdir(parents=True)
        rt, st = g.nodes["router"], g.nodes[the(g, "station")]
        ap = self.addSwitch("ap", cls=WifiAP, station_port="to-station",
                            station_mac=st["mac"], m2u=_flag(ap_m2u))
        sw = self.addSwitch(switch, cls=WlbridgeSwitch, uplink=f"{switch}-wl0",
                            station_mac=st["mac"], station_addr=st["addr"],
                            station_addr6=st.get("addr6"), workdir=workdir, datapath=datapath)
        router = self.addHost("router", cls=LanRouter, ip=rt["addr"], mac=rt["mac"],
                              switch=switch, workdir=workdir, dhcp_server=dhcp,
                              dhcp4=rt["dhcp"], dhcp6=rt.get("dhcp6"), ra_conf=rt.get("ra"),
                              subnet6=g.graph.get("subnet6"), addr6=rt.get("addr6"))
        self.addLink(router, ap, intfName1="router-eth0", intfName2="to-router")
        for i, name in enumerate(n for n in sorted(g) if g.nodes[n]["role"] == "peer"):
            p = g.nodes[name]
            host = self.addHost("peer" if i == 0 else f"peer{i + 1}", cls=LanHost, ip=p["addr"],
                                mac=p["mac"], switch=switch, addr6=p.get("addr6"))
            self.addLink(host, ap, intfName2=f"to-peer{i + 1}")
        self.addLink(sw, ap, intfName1=f"{switch}-wl0", intfName2="to-station")
        for i in range(1, guests + 1):
            guest = self.addHost(f"g{i}", cls=Guest, ip=None, mac=make_mac("guest", i),
                                 switch=switch)
            self.addLink(guest, sw)

    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.graph.graph["subnet"])
