"""How the host's supplicant receives EAPOL, and whether that survives the uplink becoming a
bridge port (issue 13 item 5).  Read-only; setup prints the verdict, it never refuses.

A supplicant (wpa_supplicant, also under NetworkManager; iwd) receives the AP's EAPOL either
over nl80211's control port (wpa_supplicant >= 2.10, iwd, with drivers that support it: no
socket involved, nothing to do) or from a packet socket bound to the interface with protocol
ETH_P_PAE (0x888e).  Such a socket on the uplink gets nothing on the kernel datapath once the
uplink is an Open vSwitch port (OVS's rx_handler consumes the frame before protocol
handlers); on the userspace datapath wlbridge's uplink ingress filter still hands EAPOL to the
host stack.  wpa_supplicant's ``-b BRIDGE`` moves that socket to the bridge, where wlbridge
delivers the AP's EAPOL.

What tells: ``/proc/net/packet`` (protocol and ifindex of every packet socket, the owner found
through ``/proc/PID/fd``) and wpa_supplicant's command line (``-i``/``-b``/``-D``, and
``-p control_port=0``, which turns nl80211's control port off).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wlbridge.host.addr_manager import Process, read_processes

ETH_P_PAE = 0x888E
SUPPLICANTS = ("wpa_supplicant", "iwd")
CONTROL_PORT = "control-port"
PACKET_SOCKET = "packet-socket"       # on the uplink
BRIDGE_SOCKET = "bridge-socket"       # on a bridge (-b)
NO_SUPPLICANT = "none"
UNKNOWN = "unknown"
_WPA_VALUE_OPTS = {"-i", "-c", "-D", "-b", "-C", "-P", "-g", "-G", "-e", "-f", "-o", "-O",
                   "-p", "-I", "-m"}


@dataclass(frozen=True)
class PacketSocket:
    inode: int
    proto: int
    ifindex: int


@dataclass(frozen=True)
class WpaIface:
    ifname: str
    driver: str = ""
    bridge: str | None = None
    params: str = ""


@dataclass(frozen=True)
class Supplicant:
    pid: int
    name: str
    ifaces: tuple[WpaIface, ...] = ()    # () = interfaces added over D-Bus / by iwd itself


@dataclass(frozen=True)
class EapolPath:
    how: str                        # CONTROL_PORT, PACKET_SOCKET, BRIDGE_SOCKET, none, unknown
    detail: str                     # one line: what was seen
    advice: str | None = None       # what to do, when something must be done
    pids: tuple[int, ...] = field(default=())


def parse_proc_net_packet(text: str) -> list[PacketSocket]:
    """Rows of /proc/net/packet: ``sk RefCnt Type Proto Iface R Rmem User Inode``."""
    found = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 9:
            continue
        try:
            found.append(PacketSocket(int(cols[8]), int(cols[3], 16), int(cols[4])))
        except ValueError:
            continue
    return found


def parse_supplicant(proc: Process) -> Supplicant | None:
    """A wpa_supplicant (its interfaces, split by -N) or iwd; None for anything else."""
    if not proc.argv:
        return None
    base = os.path.basename(proc.argv[0])
    if base == "iwd" or proc.name == "iwd":
        return Supplicant(proc.pid, "iwd")
    if base != "wpa_supplicant":
        return None
    ifaces: list[WpaIface] = []
    cur: dict[str, str] = {}

    def flush() -> None:
        if "-i" in cur:
            ifaces.append(WpaIface(cur["-i"], cur.get("-D", ""), cur.get("-b"),
                                   cur.get("-p", "")))

    args, i = list(proc.argv[1:]), 0
    while i < len(args):
        arg = args[i]
        if arg == "-N":
            flush()
            cur = {}
        elif arg[:2] in _WPA_VALUE_OPTS:
            if len(arg) > 2:            # -iwlan0
                cur[arg[:2]] = arg[2:]
            elif i + 1 < len(args):
                cur[arg] = args[i + 1]
                i += 1
        i += 1
    flush()
    return Supplicant(proc.pid, "wpa_supplicant", tuple(ifaces))


def eapol_path(uplink: str, ifindex: int, bridge: str, datapath: str,
               supplicants: Sequence[Supplicant], sockets: Iterable[PacketSocket],
               owners: dict[int, int], bridge_ifindex: int | None = None) -> EapolPath:
    """Pure: how the supplicant for `uplink` gets EAPOL and what to do about it."""
    pae = [s for s in sockets if s.proto == ETH_P_PAE]
    on_uplink = [s for s in pae if s.ifindex == ifindex]
    by_pid = {s.pid: s for s in supplicants}
    mine = [s for s in supplicants if any(i.ifname == uplink for i in s.ifaces)]
    fix = (f"restart the supplicant with `-b {bridge}` (wpa_supplicant: -i {uplink} -b {bridge};"
           f" NetworkManager: see docs/troubleshooting.md#eapol)")
    if on_uplink:
        pids = tuple(sorted({owners[s.inode] for s in on_uplink if s.inode in owners}))
        names = ", ".join(f"{by_pid[p].name} PID {p}" if p in by_pid else f"PID {p}"
                          for p in pids) or "an unknown process"
        if datapath == "system":
            return EapolPath(PACKET_SOCKET, f"{names} reads EAPOL from a packet socket on "
                             f"{uplink}, which gets nothing once {uplink} is a kernel-datapath "
                             "port (the first rekey drops the Wi-Fi connection)", fix, pids)
        return EapolPath(PACKET_SOCKET, f"{names} reads EAPOL from a packet socket on "
                         f"{uplink}; on the userspace datapath wlbridge's uplink filter still "
                         "passes EAPOL to it", f"for the kernel datapath: {fix}", pids)
    for s in mine:
        iface = next(i for i in s.ifaces if i.ifname == uplink)
        if iface.bridge == bridge:
            return EapolPath(BRIDGE_SOCKET, f"wpa_supplicant PID {s.pid} reads EAPOL on "
                             f"{bridge} (-b {bridge}), where wlbridge delivers it", None,
                             (s.pid,))
        if iface.bridge:
            return EapolPath(BRIDGE_SOCKET, f"wpa_supplicant PID {s.pid} reads EAPOL on "
                             f"{iface.bridge} (-b), not on {bridge}", fix, (s.pid,))
        if "control_port=0" in iface.params:
            return EapolPath(PACKET_SOCKET, f"wpa_supplicant PID {s.pid} has nl80211's control "
                             "port off (-p control_port=0) but no packet socket on "
                             f"{uplink} yet", fix, (s.pid,))
    if bridge_ifindex is not None and any(s.ifindex == bridge_ifindex for s in pae):
        return EapolPath(BRIDGE_SOCKET, f"a supplicant reads EAPOL on {bridge}")
    if mine or supplicants:
        s = (mine or list(supplicants))[0]
        return EapolPath(CONTROL_PORT, f"{s.name} PID {s.pid} opens no EAPOL packet socket "
                         f"on {uplink}: it uses nl80211's control port; nothing to do",
                         None, (s.pid,))
    return EapolPath(NO_SUPPLICANT, "no supplicant runs (open network, or it starts later: "
                     f"with a packet socket on {uplink} it needs -b {bridge})")


def socket_owners(inodes: set[int], proc_root: str = "/proc") -> dict[int, int]:
    """inode -> pid for the given socket inodes (through /proc/PID/fd)."""
    found: dict[int, int] = {}
    if not inodes:
        return found
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        fd_dir = os.path.join(proc_root, entry, "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                found[int(target[8:-1])] = int(entry)
    return found


def check(uplink: str, ifindex: int, bridge: str, datapath: str,
          bridge_ifindex: int | None = None) -> EapolPath:
    """Read /proc and tell how EAPOL reaches the supplicant (never raises)."""
    try:
        with open("/proc/net/packet") as f:
            sockets = parse_proc_net_packet(f.read())
        procs = read_processes()
    except OSError as exc:
        return EapolPath(UNKNOWN, f"cannot tell how the supplicant gets EAPOL ({exc})")
    supplicants = [s for s in (parse_supplicant(p) for p in procs) if s is not None]
    owners = socket_owners({s.inode for s in sockets if s.proto == ETH_P_PAE})
    return eapol_path(uplink, ifindex, bridge, datapath, supplicants, sockets, owners,
                      bridge_ifindex)
