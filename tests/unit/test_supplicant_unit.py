"""How the supplicant gets EAPOL (issue 13 item 5): /proc/net/packet and command lines, faked."""

from __future__ import annotations

from wlbridge.host import supplicant as sp
from wlbridge.host.addr_manager import Process

PACKET = """sk               RefCnt Type Proto  Iface R Rmem   User   Inode
000000001fa6dabe 2      3    0003   3     1 0      0      1111
00000000877211b8 3      3    888e   3     1 0      0      2222
000000006548a044 3      3    888e   9     1 0      0      3333
"""
UPLINK, BRIDGE = 3, 9


def wpa(pid: int, *args: str) -> sp.Supplicant:
    found = sp.parse_supplicant(Process(pid, 1, "wpa_supplicant",
                                        ("/sbin/wpa_supplicant", *args)))
    assert found is not None
    return found


def path(supplicants, sockets, owners=None, datapath="system"):
    return sp.eapol_path("wlan0", UPLINK, "br-wl", datapath, supplicants, sockets,
                         owners or {}, BRIDGE)


def test_proc_net_packet_rows():
    rows = sp.parse_proc_net_packet(PACKET + "garbage line\n")
    assert rows[1] == sp.PacketSocket(2222, sp.ETH_P_PAE, UPLINK)
    assert rows[0].proto == 0x0003 and len(rows) == 3


def test_wpa_supplicant_command_lines():
    s = wpa(10, "-B", "-iwlan0", "-Dnl80211,wext", "-c", "/etc/wpa.conf", "-N", "-i", "wlan1",
            "-b", "br0", "-p", "control_port=0")
    assert s.ifaces == (sp.WpaIface("wlan0", "nl80211,wext"),
                        sp.WpaIface("wlan1", "", "br0", "control_port=0"))
    assert sp.parse_supplicant(Process(11, 1, "bash", ("bash",))) is None
    assert sp.parse_supplicant(Process(12, 1, "iwd", ("/usr/libexec/iwd",))).name == "iwd"


def test_packet_socket_on_the_uplink_needs_dash_b_on_the_kernel_datapath():
    sockets = sp.parse_proc_net_packet(PACKET)[:2]       # EAPOL socket on the uplink only
    s = wpa(10, "-i", "wlan0", "-c", "x")
    found = path([s], sockets, {2222: 10})
    assert found.how == sp.PACKET_SOCKET and found.pids == (10,)
    assert "wpa_supplicant PID 10" in found.detail and "-b br-wl" in found.advice
    netdev = path([s], sockets, {2222: 10}, datapath="netdev")
    assert "still passes EAPOL" in netdev.detail and netdev.advice.startswith("for the kernel")


def test_dash_b_on_our_bridge_is_fine_and_on_another_is_not():
    ok = path([wpa(10, "-i", "wlan0", "-b", "br-wl")], [])
    assert ok.how == sp.BRIDGE_SOCKET and ok.advice is None
    other = path([wpa(10, "-i", "wlan0", "-b", "br0")], [])
    assert other.advice and "-b br-wl" in other.advice


def test_control_port_off_by_driver_parameter():
    found = path([wpa(10, "-i", "wlan0", "-D", "nl80211", "-p", "control_port=0")], [])
    assert found.how == sp.PACKET_SOCKET and found.advice


def test_no_eapol_socket_means_control_port():
    found = path([wpa(10, "-u", "-s", "-O", "/run/wpa_supplicant")], [])   # NetworkManager's
    assert found.how == sp.CONTROL_PORT and found.advice is None
    assert path([], []).how == sp.NO_SUPPLICANT
    assert path([], sp.parse_proc_net_packet(PACKET)[2:]).how == sp.BRIDGE_SOCKET
