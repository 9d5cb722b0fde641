"""`wlbridge doctor` and `--uplink auto`: each finding from a host that has the condition.

The checks are pure over `preflight.Facts`; `healthy()` is a host where setup works (an
associated station on an in-tree driver, Open vSwitch running, a static address), and each
test changes the one fact that makes a finding.  The host readers are checked on a fake
sysfs tree and fake unit directories.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from wlbridge.cli import doctor
from wlbridge.cli import main as cli
from wlbridge.errors import UserError
from wlbridge.host import addr_manager, preflight, supplicant, wireless
from wlbridge.host.preflight import Facts, Ovs
from wlbridge.host.wireless import WirelessLink


def healthy(**changes) -> Facts:
    facts = Facts(
        uplink="wlan0", bridge="br-wl",
        ovs=Ovs(running=True, version="3.1.0", datapath_types=("netdev", "system"),
                kernel_module=True, unit="openvswitch-switch.service"),
        link=WirelessLink("wlan0", wireless.STATION, "up", "iwlwifi", False),
        features={"rx-lro": False, "tx-checksum-ipv4": True},
        manager=addr_manager.Detection(addr_manager.STATIC, "nobody (static addresses)"),
        binaries={"dhclient": "/sbin/dhclient", "dhcpcd": None},
        firewalld_zone=None,
        eapol=supplicant.EapolPath(supplicant.CONTROL_PORT, "wpa_supplicant PID 7 uses the "
                                   "control port"))
    for name, value in changes.items():
        setattr(facts, name, value)
    return facts


def by_topic(facts: Facts, topic: str) -> list[doctor.Finding]:
    return [f for f in doctor.findings(facts) if f.topic == topic]


def levels(facts: Facts) -> set[str]:
    return {f.level for f in doctor.findings(facts)}


def test_a_healthy_host_has_no_warning_and_setup_would_work() -> None:
    found = doctor.findings(healthy())
    assert {f.level for f in found} == {doctor.OK}
    assert {f.topic for f in found} >= {"openvswitch", "datapath", "uplink", "driver",
                                        "offloads", "address", "eapol"}
    for f in found:
        assert "\n" not in f.line() and f.line().startswith("ok   ")


def test_open_vswitch_not_running_fails_with_the_unit_to_start() -> None:
    facts = healthy(ovs=Ovs(running=False, error="database connection failed",
                            unit="openvswitch.service"))
    [f] = by_topic(facts, "openvswitch")
    assert f.level == doctor.FAIL and "database connection failed" in f.text
    assert f.fix == "systemctl start openvswitch.service"


def test_no_usable_datapath_fails() -> None:
    facts = healthy(ovs=Ovs(running=True, version="3.1.0", datapath_types=("system",),
                            kernel_module=False))
    [f] = by_topic(facts, "datapath")
    assert f.level == doctor.FAIL and f.fix == "modprobe openvswitch"
    facts.ovs.datapath_types = ("netdev", "system")
    assert by_topic(facts, "datapath")[0].level == doctor.OK


def test_an_interface_that_is_not_wifi_fails() -> None:
    [f] = by_topic(healthy(wireless=False, link=None, uplink="eth0"), "uplink")
    assert f.level == doctor.FAIL and "eth0 is not a Wi-Fi station" in f.text


def test_a_missing_uplink_fails() -> None:
    [f] = by_topic(healthy(exists=False, wireless=False, link=None), "uplink")
    assert f.level == doctor.FAIL and "does not exist" in f.text


def test_auto_without_a_station_fails_with_its_reason() -> None:
    facts = healthy(uplink=None, exists=False, wireless=False, link=None,
                    uplink_problem="--uplink auto: no associated Wi-Fi station; nothing changed")
    [f] = by_topic(facts, "uplink")
    assert f.level == doctor.FAIL and "no associated Wi-Fi station" in f.text
    assert "nothing changed" not in f.text


def test_an_access_point_interface_fails() -> None:
    link = WirelessLink("wlan0", "AP", "up", "iwlwifi")
    [f] = [x for x in by_topic(healthy(link=link), "uplink")]
    assert f.level == doctor.FAIL and "AP mode" in f.text


def test_a_station_not_associated_warns() -> None:
    link = WirelessLink("wlan0", wireless.STATION, "dormant", "iwlwifi")
    [f] = by_topic(healthy(link=link), "uplink")
    assert f.level == doctor.WARN and "not associated" in f.text and f.fix


@pytest.mark.parametrize("driver", ["8188eu", "8192eu", "88x2bu", "8821cu", "8812au",
                                    "rtl88x2bu", "8189fs"])
def test_realtek_vendor_drivers_with_nat25_warn(driver: str) -> None:
    link = WirelessLink("wlan0", wireless.STATION, "up", driver)
    [f] = by_topic(healthy(link=link), "driver")
    assert f.level == doctor.WARN and "NAT25" in f.text and "rtl8xxxu" in (f.fix or "")


@pytest.mark.parametrize("driver", ["rtl8xxxu", "rtw88_8822bu", "rtw89_8852be", "rtl8192cu",
                                    "iwlwifi", "ath9k_htc", "mt7921u", "brcmfmac"])
def test_in_tree_drivers_do_not_warn(driver: str) -> None:
    link = WirelessLink("wlan0", wireless.STATION, "up", driver)
    assert [f.level for f in by_topic(healthy(link=link), "driver")] == [doctor.OK]


def test_four_address_mode_warns() -> None:
    link = WirelessLink("wlan0", wireless.STATION, "up", "ath9k", True)
    [f] = by_topic(healthy(link=link), "4addr")
    assert f.level == doctor.WARN and f.fix == "iw dev wlan0 set 4addr off, to use wlbridge"


def test_large_receive_offload_warns() -> None:
    [f] = by_topic(healthy(features={"rx-lro": True}), "offloads")
    assert f.level == doctor.WARN and f.fix == "ethtool -K wlan0 lro off"


def test_an_unsafe_hand_off_fails_as_setup_would_refuse() -> None:
    det = addr_manager.Detection(addr_manager.DHCLIENT, "dhclient (PID 9) on every interface",
                                 problem="dhclient PID 9 runs on every interface")
    [f] = by_topic(healthy(manager=det), "address")
    assert f.level == doctor.FAIL and "every interface" in f.text
    assert "--address-manager keep" in (f.fix or "")


@pytest.mark.parametrize("manager,client", [(addr_manager.NETWORKMANAGER, "dhclient"),
                                            (addr_manager.DHCLIENT, "dhclient"),
                                            (addr_manager.DHCPCD, "dhcpcd")])
def test_a_hand_off_whose_dhcp_client_is_missing_fails(manager: str, client: str) -> None:
    det = addr_manager.Detection(manager, manager)
    facts = healthy(manager=det, binaries={"dhclient": None, "dhcpcd": None})
    [f] = by_topic(facts, "address")
    assert f.level == doctor.FAIL and f"runs {client}, which is not installed" in f.text
    assert f.fix is not None and f.fix.startswith(f"install {client}")
    facts.binaries = {client: f"/usr/sbin/{client}"}
    assert by_topic(facts, "address")[0].level == doctor.OK


def test_networkd_needs_no_dhcp_client_binary() -> None:
    det = addr_manager.Detection(addr_manager.NETWORKD, "systemd-networkd (x.network)")
    facts = healthy(manager=det, binaries={"dhclient": None, "dhcpcd": None})
    assert by_topic(facts, "address")[0].level == doctor.OK


def test_a_firewalld_zone_on_the_uplink_warns_with_the_bridge_to_add() -> None:
    [f] = by_topic(healthy(firewalld_zone="home"), "firewall")
    assert f.level == doctor.WARN and "zone home" in f.text
    assert f.fix == ("firewall-cmd --permanent --zone=home --add-interface=br-wl && "
                     "firewall-cmd --reload")
    assert by_topic(healthy(firewalld_zone=""), "firewall")[0].level == doctor.OK
    assert by_topic(healthy(firewalld_zone=None), "firewall") == []


def test_eapol_on_a_packet_socket_with_the_kernel_datapath_warns() -> None:
    path = supplicant.eapol_path("wlan0", 3, "br-wl", "system",
                                 [supplicant.Supplicant(7, "wpa_supplicant")],
                                 [supplicant.PacketSocket(99, supplicant.ETH_P_PAE, 3)], {99: 7})
    [f] = by_topic(healthy(eapol=path), "eapol")
    assert f.level == doctor.WARN and "-b br-wl" in (f.fix or "")
    userspace = supplicant.eapol_path("wlan0", 3, "br-wl", "netdev",
                                      [supplicant.Supplicant(7, "wpa_supplicant")],
                                      [supplicant.PacketSocket(99, supplicant.ETH_P_PAE, 3)],
                                      {99: 7})
    assert by_topic(healthy(eapol=userspace), "eapol")[0].level == doctor.OK
    elsewhere = supplicant.eapol_path(
        "wlan0", 3, "br-wl", "netdev",
        [supplicant.Supplicant(7, "wpa_supplicant",
                               (supplicant.WpaIface("wlan0", bridge="br-old"),))], [], {})
    [f] = by_topic(healthy(eapol=elsewhere), "eapol")
    assert f.level == doctor.WARN and "br-old" in f.text


def test_exit_status_two_and_one_line_each_when_setup_would_not_work(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    broken = healthy(wireless=False, link=None)
    monkeypatch.setattr(preflight, "gather", lambda *a: broken)
    args = argparse.Namespace(uplink="wlan0", bridge="br-wl", db=None)
    assert doctor.main(args) == 2
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(doctor.findings(broken)) + 1
    assert lines[-1].startswith("setup would not work")
    monkeypatch.setattr(preflight, "gather", lambda *a: healthy())
    assert doctor.main(args) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "setup would work"


# ---- --uplink auto -----------------------------------------------------------------------
def test_auto_picks_the_one_associated_station() -> None:
    links = [WirelessLink("wlan1", "AP", "up"), WirelessLink("wlp2s0", wireless.STATION, "up"),
             WirelessLink("wlan2", wireless.STATION, "down"), WirelessLink("mon0", "monitor")]
    assert wireless.pick_station(links) == "wlp2s0"


def test_auto_refuses_none_and_several() -> None:
    with pytest.raises(UserError, match="no associated Wi-Fi station.*wlan2 .station, down."):
        wireless.pick_station([WirelessLink("wlan2", wireless.STATION, "down")])
    with pytest.raises(UserError, match=r"several associated Wi-Fi stations \(wlan0, wlan1\)"):
        wireless.pick_station([WirelessLink("wlan0", None, "up"),
                               WirelessLink("wlan1", wireless.STATION, "up")])


def fake_interface(net: Path, name: str, *, wifi: bool, operstate: str,
                   driver: Path | None = None) -> None:
    dev = net / name
    dev.mkdir(parents=True)
    (dev / "operstate").write_text(operstate + "\n")
    if wifi:
        (dev / "wireless").mkdir()
    if driver:
        driver.mkdir(parents=True, exist_ok=True)
        (dev / "device").mkdir()
        (dev / "device" / "driver").symlink_to(driver)


def test_the_sysfs_reader_finds_wifi_interfaces_their_state_and_driver(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, drivers = tmp_path / "net", tmp_path / "drivers"
    fake_interface(net, "eth0", wifi=False, operstate="up", driver=drivers / "e1000e")
    fake_interface(net, "wlp2s0", wifi=True, operstate="up", driver=drivers / "iwlwifi")
    fake_interface(net, "wlan9", wifi=True, operstate="down")
    monkeypatch.setattr(wireless, "nl80211_modes", lambda: {"wlan9": ("AP", None)})
    links = wireless.read_links(str(net))
    assert links == [WirelessLink("wlan9", "AP", "down", None, None),
                     WirelessLink("wlp2s0", None, "up", "iwlwifi", None)]
    assert wireless.pick_station(links) == "wlp2s0"


def test_setup_with_auto_and_no_station_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(wireless, "read_links", lambda *a: [])
    assert cli.main(["setup", "--uplink", "auto"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [("wlbridge setup: --uplink auto: no associated Wi-Fi station (Wi-Fi "
                   "interfaces: none); associate it first or name it with --uplink; nothing "
                   "changed")]


def test_setup_with_auto_runs_on_the_station(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(wireless, "read_links",
                        lambda *a: [WirelessLink("wlp3s0", wireless.STATION, "up")])
    from wlbridge.cli import bridge_setup

    monkeypatch.setattr(bridge_setup, "main", lambda args: seen.append(args.uplink) or 0)
    assert cli.main(["setup", "--uplink", "auto"]) == 0
    assert seen == ["wlp3s0"]


def test_the_ovs_unit_is_the_distributions(tmp_path: Path) -> None:
    debian, fedora, arch = (tmp_path / d for d in ("debian", "fedora", "arch"))
    for d, unit in ((debian, "openvswitch-switch.service"), (fedora, "openvswitch.service"),
                    (arch, "ovs-vswitchd.service")):
        d.mkdir()
        (d / unit).write_text("")
        (d / "ovsdb-server.service").write_text("")
    (debian / "ovs-vswitchd.service").write_text("")      # Debian has both
    assert preflight.ovs_unit((str(debian),)) == "openvswitch-switch.service"
    assert preflight.ovs_unit((str(fedora),)) == "openvswitch.service"
    assert preflight.ovs_unit((str(arch),)) == "ovs-vswitchd.service"
    assert preflight.ovs_unit((str(tmp_path / "none"),)) is None


# ---- the same facts in `wlbridge status` (issue 25 item 5): wireless.translation
def test_status_names_a_nat25_driver_and_what_to_do() -> None:
    from wlbridge.cli.status_client import render

    t = wireless.translation("wlan0", WirelessLink("wlan0", wireless.STATION, "up", "8812au",
                                                   False))
    assert t["nat25"] and t["four_addr"] is False and "CONFIG_BR_EXT" in t["advice"][0]
    text = render({"uplink_translation": t, "guests": []}, now=0)
    assert "driver 8812au (NAT25: translates MACs itself); 4-address mode off" in text
    assert "-> 8812au is a Realtek vendor driver" in text


def test_status_says_4_address_mode_is_on_and_an_in_tree_driver_is_fine() -> None:
    from wlbridge.cli.status_client import render

    t = wireless.translation("wlan0", WirelessLink("wlan0", wireless.STATION, "up", "ath9k",
                                                   True))
    assert not t["nat25"] and t["advice"] == [
        ("4-address mode is on: an AP that accepts it bridges the guests itself (a plain "
         "bridge would do): iw dev wlan0 set 4addr off, to use wlbridge")]
    text = render({"uplink_translation": t, "guests": []}, now=0)
    assert "driver ath9k (no MAC translation of its own); 4-address mode on" in text
    plain = wireless.translation("wlan0", WirelessLink("wlan0", wireless.STATION, "up",
                                                       "iwlwifi", False))
    assert plain["advice"] == [] and not plain["nat25"]
    assert "wi-fi    the uplink is not a Wi-Fi" in render(
        {"uplink_translation": wireless.translation("veth0", None), "guests": []}, now=0)


def test_the_status_reads_the_host_at_most_every_half_minute(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(wireless, "is_wireless", lambda name: calls.append(name) or False)
    first = wireless.uplink_translation("xhwl0", 100.0)
    assert wireless.uplink_translation("xhwl0", 120.0) is first and calls == ["xhwl0"]
    wireless.uplink_translation("xhwl0", 131.0)
    assert calls == ["xhwl0", "xhwl0"] and first["wireless"] is False
