"""The radio world inside the test bed VM (run there as root; see `topologies.wifibed`).

    wf-srv (dnsmasq, radvd) ─┐
    wf-peer (LAN peer) ──────┤ br-lan ── AP wlan0 (hostapd, WPA2-PSK) ))) (( wlan1 station
                wf-ap netns ─┘          [AP2 wlan2, same SSID, for roaming]     (wpa_supplicant,
                                                                                 root netns)

`start_second_lan` adds another network (issue 24 item 4): AP2 on wlan2 with another SSID,
bridged to its own LAN (br-lan2, wf-srv2 with dnsmasq for 10.78.0.0/24); the station moves to
it with `join` (wpa_supplicant's select_network).

mac80211_hwsim gives the radios (hwsim0 sees every frame on the air); the APs' phys live in
netns wf-ap, so the station's path to the LAN really crosses the air.  Open vSwitch runs on a
fresh database under /run, with the openvswitch kernel module: `wlbridge setup` picks the
`system` datapath there by default.  Guests are namespaces with a veth whose host end is
attached to the bridge, as a container runtime would.
"""

from __future__ import annotations

import ipaddress
import os
import re
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import dhcp
from ..procs import Proc, run, wait_for
from . import security

PREFIX = "wf"
AP_NS, SRV_NS, PEER_NS = f"{PREFIX}-ap", f"{PREFIX}-srv", f"{PREFIX}-peer"
SSID, PASSPHRASE = "wf-wifibed", security.PASSPHRASE
LAN = ipaddress.ip_network("10.77.0.0/24")
LAN6 = ipaddress.ip_network("fd77::/64")
SRV_IP, PEER_IP, STATION_IP = "10.77.0.1", "10.77.0.2", "10.77.0.10"
SRV_IP6 = str(LAN6[1])
DHCP_RANGE = ("10.77.0.100", "10.77.0.199")
STATION = "wlan1"
#: AP interface -> (channel, frequency); the second AP is started only for roaming.
APS = {"wlan0": (1, 2412), "wlan2": (6, 2437)}
HOSTAPD_CTRL = "/run/wf-hostapd"
WPA_CTRL = "/run/wpa_supplicant"
OVS_DB_SOCK = "/run/openvswitch/db.sock"
#: The second network (`start_second_lan`): another SSID on AP2 (wlan2), its own LAN.
SSID2, SRV2_NS = "wf-other", f"{PREFIX}-srv2"
LAN2 = ipaddress.ip_network("10.78.0.0/24")
SRV2_IP, STATION_IP2 = "10.78.0.1", "10.78.0.10"
DHCP_RANGE2 = ("10.78.0.100", "10.78.0.199")


def sh(*argv: str, netns: str | None = None, check: bool = True,
       timeout: float = 60) -> str:
    return run(netns, argv, check=check, timeout=timeout).stdout


def ping(dst: str, netns: str | None = None, count: int = 1, wait: float = 2) -> bool:
    """dst answers a ping from netns (None: the VM's root namespace, i.e. the station host)."""
    return run(netns, ["ping", "-n", "-q", "-c", str(count), "-W", str(wait), "-i", "0.2", dst],
               check=False, timeout=count * (wait + 1) + 10).returncode == 0


def mac_of(ifname: str, netns: str | None = None) -> str:
    out = sh("cat", f"/sys/class/net/{ifname}/address", netns=netns)
    return out.strip().lower()


@dataclass
class Guest:
    """A namespace with eth0, whose veth peer `port` is attached to the bridge."""

    name: str
    mac: str
    logs: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def port(self) -> str:
        return f"{PREFIX}-{self.name}p"

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return run(self.netns, argv, check=False, timeout=timeout)

    def ip(self) -> str | None:
        out = self.run("ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        m = re.search(r"inet (\S+)/", out)
        return m.group(1) if m else None

    def ip6(self) -> str | None:
        """The guest's global IPv6 address (SLAAC from the LAN's radvd), once DAD is done."""
        out = self.run("ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
                       "-tentative").stdout
        m = re.search(r"inet6 (\S+)/", out)
        return m.group(1) if m else None

    def ping(self, dst: str, count: int = 1, wait: float = 2) -> bool:
        return ping(dst, self.netns, count, wait)

    def dhcp(self, client: str, timeout: float = 60) -> str | None:
        """Start ISC dhclient or busybox udhcpc (without -B) and wait for an address."""
        files = dhcp.write_client_files(self.logs / "dhcp", self.name, timeout=int(timeout))
        if client == "dhclient":
            argv = dhcp.dhclient_argv("eth0", files)
        else:
            argv = dhcp.udhcpc_argv("eth0", files, broadcast=False,
                                    extra=("-t", "20", "-T", "3"))
        self.procs.append(Proc(f"{self.name}-{client}", self.netns, argv,
                               self.logs / f"{self.name}-{client}.log"))
        return wait_for(self.ip, timeout, interval=0.5)


class Bed:
    """The hwsim radios, APs, LAN and station; OVS on a fresh database."""

    def __init__(self, logs: Path, *, hostapd_extra: dict[str, str] | None = None) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.hostapd_extra = dict(hostapd_extra or {})
        #: how the AP and the station authenticate (`security.MODES`); see `use_security`
        self.security = "psk"
        self.procs: dict[str, Proc] = {}
        self.guests: dict[str, Guest] = {}
        self.ap_macs: dict[str, str] = {}
        self.station_mac = ""
        #: AP interface -> (SSID, LAN bridge) where not (SSID, br-lan)
        self.ap_networks: dict[str, tuple[str, str]] = {}

    # ------------------------------------------------------------ building
    def start(self) -> Bed:
        sh("modprobe", "mac80211_hwsim", f"radios={len(APS) + 1}")
        sh("modprobe", "openvswitch")
        wait_for(lambda: all(os.path.exists(f"/sys/class/net/{i}") for i in (*APS, STATION)),
                 10)
        self.station_mac = mac_of(STATION)
        for ns in (AP_NS, SRV_NS, PEER_NS):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", netns=ns)
        for ap in APS:
            phy = Path(f"/sys/class/net/{ap}/phy80211/name").read_text().strip()
            self.ap_macs[ap] = mac_of(ap)
            sh("iw", "phy", phy, "set", "netns", "name", AP_NS)
        sh("ip", "link", "add", "br-lan", "type", "bridge", netns=AP_NS)
        sh("ip", "link", "set", "br-lan", "up", netns=AP_NS)
        for ns, ip, tag in ((SRV_NS, SRV_IP, "srv"), (PEER_NS, PEER_IP, "peer")):
            sh("ip", "link", "add", f"lan-{tag}", "type", "veth", "peer", "name", "eth0",
               "netns", ns, netns=AP_NS)
            sh("ip", "link", "set", f"lan-{tag}", "master", "br-lan", "up", netns=AP_NS)
            sh("ip", "addr", "add", f"{ip}/{LAN.prefixlen}", "dev", "eth0", netns=ns)
            sh("ip", "link", "set", "eth0", "up", netns=ns)
        self._lan_services()
        self.capture = self.start_proc("air", None, ["tcpdump", "-i", "hwsim0", "-n", "-U",
                                                     "-w", str(self.logs / "air.pcap"),
                                                     "not", "subtype", "beacon"],
                                       before=lambda: sh("ip", "link", "set", "hwsim0", "up"))
        self.start_ap("wlan0")
        self.start_station()
        self.start_ovs()
        return self

    def start_proc(self, name: str, netns: str | None, argv: list[str], *,
                   before=None, log: str | None = None) -> Proc:
        if before is not None:
            before()
        proc = Proc(name, netns, argv, self.logs / f"{log or name}.out")
        self.procs[name] = proc
        return proc

    def _lan_services(self) -> None:
        work = self.logs / "dnsmasq"
        work.mkdir(exist_ok=True)
        conf = {"range": DHCP_RANGE, "lease_time": 600}
        self.start_proc("dnsmasq", SRV_NS,
                        dhcp.dnsmasq_argv("eth0", f"{SRV_IP}/{LAN.prefixlen}", conf, work))
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", netns=SRV_NS)
        sh("ip", "-6", "addr", "add", f"{SRV_IP6}/64", "dev", "eth0", "nodad", netns=SRV_NS)
        radvd_conf = self.logs / "radvd.conf"
        radvd_conf.write_text(
            "interface eth0 {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n"
            f"  MaxRtrAdvInterval 10;\n  prefix {LAN6} {{ AdvOnLink on; AdvAutonomous on; }};\n"
            "};\n")
        self.start_proc("radvd", SRV_NS, ["radvd", "-n", "-C", str(radvd_conf),
                                          "-p", str(self.logs / "radvd.pid"), "-m", "stderr"])

    def hostapd_conf(self, ap: str) -> Path:
        channel, _ = APS[ap]
        ssid, bridge = self.ap_networks.get(ap, (SSID, "br-lan"))
        lines = {
            "interface": ap, "bridge": bridge, "driver": "nl80211",
            "ctrl_interface": HOSTAPD_CTRL, "ssid": ssid, "hw_mode": "g",
            "channel": str(channel), **security.hostapd_settings(self.security, self.logs),
            # hostapd resends 4-way handshake message 1 after only 100 ms, then 1 s, and gives
            # up after 4 tries: too little under software emulation (seen: a roam ending in
            # "4WAY_HANDSHAKE_TIMEOUT").  More tries, same protocol.
            "wpa_pairwise_update_count": "10",
            **self.hostapd_extra,
        }
        path = self.logs / f"hostapd-{ap}.conf"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def start_ap(self, ap: str) -> None:
        name = f"hostapd-{ap}"
        self.stop_ap(ap)
        n = len(list(self.logs.glob(f"{name}*.out")))
        self.start_proc(name, AP_NS, ["hostapd", "-t", "-dd", str(self.hostapd_conf(ap))],
                        log=f"{name}{n or ''}")
        if not wait_for(lambda: "state=ENABLED" in self.hostapd_cli(ap, "status"), 30, 0.5):
            raise RuntimeError(f"hostapd on {ap} did not start:\n{self.procs[name].output()[-2000:]}")

    def stop_ap(self, ap: str) -> None:
        old = self.procs.pop(f"hostapd-{ap}", None)
        if old is not None:
            old.stop()

    def hostapd_cli(self, ap: str, *args: str) -> str:
        return sh("hostapd_cli", "-p", HOSTAPD_CTRL, "-i", ap, *args, check=False)

    def hostapd_log(self, ap: str = "wlan0") -> str:
        return self.procs[f"hostapd-{ap}"].output()

    def start_station(self, driver_param: str | None = None, bridge: str | None = None) -> None:
        old = self.procs.pop("wpa_supplicant", None)
        if old is not None:
            old.stop()
        conf = self.logs / "wpa_supplicant.conf"
        freqs = " ".join(str(f) for _, f in APS.values())
        network = [f'ssid="{SSID}"', *security.supplicant_network(self.security, self.logs),
                   f"scan_freq={freqs}"]
        conf.write_text(f"ctrl_interface={WPA_CTRL}\nnetwork={{\n"
                        + "".join(f"  {line}\n" for line in network) + "}\n")
        argv = ["wpa_supplicant", "-t", "-dd", "-i", STATION, "-D", "nl80211", "-c", str(conf)]
        if driver_param:
            argv += ["-p", driver_param]
        if bridge:
            argv += ["-b", bridge]
        n = sum(1 for p in self.logs.glob("wpa_supplicant*.out"))
        self.start_proc("wpa_supplicant", None, argv, log=f"wpa_supplicant{n or ''}")

    def use_security(self, mode: str, ap: str = "wlan0") -> str | None:
        """Restart the AP and the station in another security mode (the other AP stopped);
        the BSSID once the station is associated again, or None."""
        for other in APS:
            if other != ap:
                self.stop_ap(other)
        self.security = mode
        self.start_ap(ap)
        self.start_station()
        return self.wait_associated(90)

    def start_second_lan(self) -> None:
        """Another network: AP2 (wlan2) with SSID2, bridged to a LAN of its own (br-lan2 in
        the APs' namespace, wf-srv2 with dnsmasq for LAN2)."""
        sh("ip", "netns", "add", SRV2_NS)
        sh("ip", "link", "set", "lo", "up", netns=SRV2_NS)
        sh("ip", "link", "add", "br-lan2", "type", "bridge", netns=AP_NS)
        sh("ip", "link", "set", "br-lan2", "up", netns=AP_NS)
        sh("ip", "link", "add", "lan-srv2", "type", "veth", "peer", "name", "eth0",
           "netns", SRV2_NS, netns=AP_NS)
        sh("ip", "link", "set", "lan-srv2", "master", "br-lan2", "up", netns=AP_NS)
        sh("ip", "addr", "add", f"{SRV2_IP}/{LAN2.prefixlen}", "dev", "eth0", netns=SRV2_NS)
        sh("ip", "link", "set", "eth0", "up", netns=SRV2_NS)
        work = self.logs / "dnsmasq2"
        work.mkdir(exist_ok=True)
        self.start_proc("dnsmasq2", SRV2_NS, dhcp.dnsmasq_argv(
            "eth0", f"{SRV2_IP}/{LAN2.prefixlen}", {"range": DHCP_RANGE2, "lease_time": 600},
            work))
        self.ap_networks["wlan2"] = (SSID2, "br-lan2")
        self.start_ap("wlan2")

    def join(self, ssid: str) -> None:
        """The station joins the network `ssid` (added to wpa_supplicant if new; the others
        disabled), as a user picking another network does."""
        ids = {line.split("\t")[1]: line.split("\t")[0]
               for line in self.wpa_cli("list_networks").splitlines()[1:] if "\t" in line}
        nid = ids.get(ssid)
        if nid is None:
            nid = self.wpa_cli("add_network").strip().splitlines()[-1]
            freqs = " ".join(str(f) for _, f in APS.values())
            for line in [f'ssid="{ssid}"', *security.supplicant_network(self.security,
                                                                        self.logs),
                         f"scan_freq={freqs}"]:
                key, _, value = line.partition("=")
                if "OK" not in self.wpa_cli("set_network", nid, key, value):
                    raise RuntimeError(f"wpa_cli set_network {nid} {key} refused")
        if "OK" not in self.wpa_cli("select_network", nid):
            raise RuntimeError(f"wpa_cli select_network {nid} ({ssid}) refused")

    def wpa_cli(self, *args: str) -> str:
        return sh("wpa_cli", "-p", WPA_CTRL, "-i", STATION, *args, check=False)

    def wpa_status(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.wpa_cli("status").splitlines()
                    if "=" in line)

    def associated(self) -> str | None:
        """The BSSID the station is associated with (4-way handshake done), or None."""
        st = self.wpa_status()
        return st.get("bssid") if st.get("wpa_state") == "COMPLETED" else None

    def wait_associated(self, timeout: float = 60) -> str | None:
        return wait_for(self.associated, timeout, 0.3)

    def start_ovs(self) -> None:
        db = Path("/run/openvswitch/conf.db")
        sh("ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema")
        self.start_proc("ovsdb-server", None, [
            "ovsdb-server", str(db), f"--remote=punix:{OVS_DB_SOCK}",
            "--pidfile=/run/openvswitch/ovsdb-server.pid", f"--log-file={self.logs}/ovsdb.log"])
        wait_for(lambda: os.path.exists(OVS_DB_SOCK), 20)
        sh("ovs-vsctl", "--timeout=30", "--no-wait", "init")
        self.start_proc("ovs-vswitchd", None, [
            "ovs-vswitchd", f"unix:{OVS_DB_SOCK}", "--pidfile=/run/openvswitch/ovs-vswitchd.pid",
            f"--log-file={self.logs}/ovs-vswitchd.log"])
        sh("ovs-vsctl", "--timeout=60", "show")

    # ------------------------------------------------------------ guests
    def add_guest(self, name: str, bridge: str | None) -> Guest:
        """A guest namespace; its port added to `bridge` (None: left for the caller to put
        somewhere, e.g. behind a shared port, `topologies.SharedPort`)."""
        n = len(self.guests) + 1
        g = Guest(name, f"02:77:00:00:00:{n:02x}", self.logs)
        sh("ip", "netns", "add", g.netns)
        sh("ip", "link", "set", "lo", "up", netns=g.netns)
        sh("ip", "link", "add", g.port, "type", "veth", "peer", "name", "eth0", "netns", g.netns)
        sh("ip", "link", "set", "eth0", "address", g.mac, "up", netns=g.netns)
        sh("ip", "link", "set", g.port, "up")
        if bridge is not None:
            sh("ovs-vsctl", "--timeout=30", "add-port", bridge, g.port)
        self.guests[name] = g
        return g

    def run_in_peer(self, *argv: str) -> str:
        return sh(*argv, netns=PEER_NS, check=False)

    def peer_ping(self, dst: str, count: int = 1, wait: float = 2) -> bool:
        return ping(dst, PEER_NS, count, wait)

    def srv_ping(self, dst: str, count: int = 1, wait: float = 2) -> bool:
        return ping(dst, SRV_NS, count, wait)

    def stop(self) -> None:
        for g in self.guests.values():
            for p in g.procs:
                p.stop()
        for p in reversed(list(self.procs.values())):
            p.stop()


def settle(pred, timeout: float, interval: float = 0.2):
    """Poll pred; its value (falsy on timeout) and the seconds it took."""
    t0 = time.monotonic()
    value = wait_for(pred, timeout, interval)
    return value, time.monotonic() - t0


@dataclass(frozen=True)
class Frame:
    """The addresses of one 802.11 frame from a radiotap capture."""

    kind: str                   # "mgmt", "ctrl", "data"
    to_ds: bool
    from_ds: bool
    ta: str | None              # transmitter (addr2); None for ACK/CTS
    addrs: frozenset[str]


def air_frames(pcap: Path):
    """The frames of a (possibly still growing) hwsim0 capture (pcap, radiotap headers).

    Only the 802.11 header's frame control and addresses are read, with `struct`: scapy
    took minutes for a capture of a few MB under the VM's software emulation.
    """
    with open(pcap, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}.get(data[:4])
    if endian is None:
        raise ValueError(f"{pcap}: not a pcap file")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != LINKTYPE_RADIOTAP:
        raise ValueError(f"{pcap}: link type {linktype}, not radiotap")
    pos = 24
    while pos + 16 <= len(data):
        (caplen,) = struct.unpack_from(endian + "I", data, pos + 8)
        pkt = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        if len(pkt) < caplen:
            return                              # a record still being written
        frame = _dot11(pkt[struct.unpack_from("<H", pkt, 2)[0]:]) if len(pkt) >= 4 else None
        if frame is not None:
            yield frame


LINKTYPE_RADIOTAP = 127
#: Control frame subtypes with only a receiver address (CTS, ACK).
_CTRL_RA_ONLY = (12, 13)


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _dot11(h: bytes) -> Frame | None:
    """The addresses of an 802.11 header (None: too short to hold them)."""
    if len(h) < 10:
        return None
    fc0, flags = h[0], h[1]
    ftype, subtype = (fc0 >> 2) & 3, fc0 >> 4
    to_ds, from_ds = bool(flags & 1), bool(flags & 2)
    if ftype == 1:
        n = 1 if subtype in _CTRL_RA_ONLY else 2
    else:
        n = 4 if to_ds and from_ds else 3
    offsets = [4, 10, 16, 24][:n]
    if len(h) < offsets[-1] + 6:
        return None
    addrs = [_mac(h[o:o + 6]) for o in offsets]
    kind = {0: "mgmt", 1: "ctrl", 2: "data"}.get(ftype, str(ftype))
    return Frame(kind, to_ds, from_ds, addrs[1] if n > 1 else None, frozenset(addrs))
