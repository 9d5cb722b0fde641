"""Helpers of bench_resync.py and bench_packet_in.py: a core with many guests (no switch, no
root), frames, a stand-in datapath for serialising messages as os-ken's ``send_msg`` does."""

from __future__ import annotations

import importlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "controller"))

from wlbridge import compat
from wlbridge.compat import ofp
from wlbridge.core import Core, CoreConfig
from wlbridge.model.state import Port

UPLINK = 1
STATION = "02:5a:00:00:00:01"
FIRST_GUEST = 2


def guest_mac(i: int) -> str:
    return "02:00:" + struct.pack("!I", i).hex(":")


def guest_ip(i: int, k: int) -> str:
    """Address k of guest i, all in 10.0.0.0/8."""
    n = (i * 8 + k + 256) & 0xFFFFFF
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def ip_bytes(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def arp_frame(sha: str, spa: str, tpa: str, op: int = 1) -> bytes:
    eth = mac_bytes("ff:ff:ff:ff:ff:ff") + mac_bytes(sha) + b"\x08\x06"
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac_bytes(sha) + ip_bytes(spa) \
        + bytes(6) + ip_bytes(tpa)
    return eth + arp + bytes(18)


def ports(n_guests: int) -> list[Port]:
    out = [Port(UPLINK, "wlan0", STATION), Port(ofp.OFPP_LOCAL, "br-wl", STATION)]
    out += [Port(FIRST_GUEST + i, f"vm{i}", "fe:00:00:00:00:01") for i in range(n_guests)]
    return out


def core_with_guests(n_guests: int, *, meters: bool = True, max_bindings: int = 65536,
                     now: float = 1000.0) -> Core:
    """A connected core whose guests' MACs are known (configured), nothing bound yet."""
    static = {f"vm{i}": guest_mac(i) for i in range(n_guests)}
    core = Core(CoreConfig(uplink="wlan0", static_macs=static, meters=meters,
                           max_bindings=max_bindings))
    core.switch_connected(0xAB, ports(n_guests), now)
    return core


def saved_state(n_guests: int, ips_per_guest: int, now: float = 1000.0) -> dict:
    """A state file's contents: n guests with their MACs and addresses (ARP and DHCP)."""
    guests = [{"name": f"vm{i}", "mac": guest_mac(i), "mac_source": "learned"}
              for i in range(n_guests)]
    bindings = []
    for i in range(n_guests):
        for k in range(ips_per_guest):
            dhcp = k == 0
            bindings.append({"ip": guest_ip(i, k), "port": f"vm{i}", "mac": guest_mac(i),
                             "source": "dhcp" if dhcp else "arp", "learned_at": now,
                             "expires": now + 3600 if dhcp else None,
                             "lease": 3600 if dhcp else None})
    return {"version": 1, "generation": 1, "guests": guests, "bindings": bindings}


def stand_in_datapath():
    proto = importlib.import_module(f"{compat.FRAMEWORK}.ofproto.ofproto_protocol")
    return proto.ProtocolDesc(version=ofp.OFP_VERSION)


def serialise(msgs: list, dp) -> int:
    """Serialise like Datapath.send_msg does; returns the bytes produced."""
    total = 0
    for msg in msgs:
        msg.datapath = dp
        msg.xid = None  # (again: a benchmark serialises the same messages repeatedly)
        msg.set_xid(1)
        msg.serialize()
        total += len(msg.buf)
    return total


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
