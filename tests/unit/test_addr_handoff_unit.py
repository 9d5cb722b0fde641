"""Who manages the uplink's addresses (detection from fake process tables and state files),
the hand-off plan setup computes from it, its steps run on a fake host (handoff_fakes:
files, processes, commands in memory) with rollback, records stored by older versions
(tests/unit/data), and setup's and teardown's hooks.  The facts and the host are passed
in: nothing of the hand-off is patched.

NetworkManager does not run on these machines: its hand-off is proved here, by the plan,
and listed in docs/troubleshooting.md as not verified.  systemd-networkd runs here standalone
(tests/integration/test_addr_handoff_networkd.py); the cases that test does not reach are
here.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from handoff_fakes import FakeSystem
from hostnet_fakes import FakeDb, FakeNet, bridge, opts
from wlbridge.cli import bridge_setup, bridge_teardown
from wlbridge.errors import UserError
from wlbridge.host import addr_handoff as ah
from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff import steps
from wlbridge.host.addr_handoff.plan import PHASES
from wlbridge.host.hostnet import Address, SavedState

NOW = 1_800_000_000.0
LEASED = Address(4, "192.168.1.5", 24, "192.168.1.255", valid_lft=3600, preferred_lft=3600)
STATIC = Address(4, "192.168.1.5", 24, "192.168.1.255")
SLAAC = Address(6, "2001:db8::5", 64, valid_lft=86400, preferred_lft=14400, flags=0x100)
IFUPDOWN = ("/sbin/dhclient", "-4", "-v", "-i", "-pf", "/run/dhclient.wlan0.pid", "-lf",
            "/var/lib/dhcp/dhclient.wlan0.leases", "-I", "-df",
            "/var/lib/dhcp/dhclient6.wlan0.leases", "wlan0")


def proc(pid: int, *argv: str, ppid: int = 1, name: str | None = None) -> am.Process:
    return am.Process(pid, ppid, name or argv[0].rsplit("/", 1)[-1][:15], tuple(argv))


def facts(*procs: am.Process, **kw) -> am.HostFacts:
    return am.HostFacts(processes=[proc(1, "/sbin/init"), *procs], **kw)


def detect(f: am.HostFacts, *addrs: Address) -> am.Detection:
    return am.detect(f, "wlan0", list(addrs or [LEASED]))


def plan(mode: str, det: am.Detection, *addrs: Address, sysctls=None) -> ah.Plan:
    return ah.make_plan(mode, det, "wlan0", "br-wl", "/var/lib/wlbridge", list(addrs or [LEASED]),
                        sysctls or {}, NOW)


# ---- detection ------------------------------------------------------------------------
def test_ifupdown_dhclient_is_detected_with_its_files():
    interfaces = "auto wlan0\niface wlan0 inet dhcp\n  wpa-conf /etc/wpa.conf\n"
    det = detect(facts(proc(500, *IFUPDOWN), interfaces_file=interfaces))
    assert det.manager == am.DHCLIENT and det.problem is None
    assert "ifupdown" in det.detail and det.ifupdown == "dhcp"
    (cmd,) = det.dhclients
    assert cmd.pid == 500 and cmd.pidfile == "/run/dhclient.wlan0.pid"
    assert cmd.leasefile == "/var/lib/dhcp/dhclient.wlan0.leases" and not cmd.foreground


def test_dhclient_for_other_interfaces_or_release_is_not_the_manager():
    det = detect(facts(proc(5, "dhclient", "eth0"), proc(6, "dhclient", "-r", "wlan0")),
                 STATIC)
    assert det.manager == am.STATIC and det.problem is None


@pytest.mark.parametrize("argv, why", [
    (("dhclient",), "every interface"),
    (("dhclient", "wlan0", "eth0"), "together"),
])
def test_dhclient_that_cannot_be_stopped_for_the_uplink_alone_is_a_problem(argv, why):
    det = detect(facts(proc(7, *argv)))
    assert det.manager == am.DHCLIENT and why in det.problem
    with pytest.raises(ah.HandoffRefused) as exc:
        plan("auto", det)
    line = exc.value.one_line()
    assert "\n" not in line and "dhclient" in line and "br-wl" in line


def test_foreground_dhclient_under_a_supervisor_is_refused():
    det = detect(facts(proc(40, "/usr/bin/supervise", name="supervise"),
                       proc(41, "dhclient", "-d", "wlan0", ppid=40)))
    assert "foreground" in det.problem and "supervise" in det.problem


def test_networkmanager_child_dhclient_means_networkmanager():
    nm = proc(30, "/usr/sbin/NetworkManager", "--no-daemon", name="NetworkManager")
    child = proc(31, "/sbin/dhclient", "-d", "-q", "-sf",
                 "/usr/lib/NetworkManager/nm-dhcp-helper", "-pf", "/run/dhclient-wlan0.pid",
                 "wlan0", ppid=30)
    det = detect(facts(nm, child, nm=am.NmDevice("100 (connected)", "Home")))
    assert det.manager == am.NETWORKMANAGER and det.nm_connection == "Home"
    assert det.problem is None


def test_networkmanager_not_answering_is_refused():
    det = detect(facts(nm=am.NmDevice(error="`nmcli ...` did not answer within 5s")))
    assert det.manager == am.UNKNOWN and "not answering" in det.problem
    with pytest.raises(ah.HandoffRefused, match="not answering"):
        plan("auto", det)


def test_networkmanager_unmanaged_device_falls_through_to_static():
    det = detect(facts(nm=am.parse_nmcli_device("GENERAL.STATE:10 (unmanaged)\n"
                                                "GENERAL.CONNECTION:\n")), STATIC)
    assert det.manager == am.STATIC


def test_networkd_state_file():
    state = am.parse_networkd_state("# This is private data.\nADMIN_STATE=configured\n"
                                    "NETWORK_FILE=/etc/systemd/network/25-wlan.network\n")
    det = detect(facts(networkd_link=state))
    assert det.manager == am.NETWORKD
    assert det.networkd_file == "/etc/systemd/network/25-wlan.network"


@pytest.mark.parametrize("title, ifaces, families", [
    ("dhcpcd: [manager] [ip4] [ip6]", (), (4, 6)),
    ("dhcpcd: wlan0 [ip4]", ("wlan0",), (4,)),
])
def test_dhcpcd_from_its_process_title(title, ifaces, families):
    helpers = [proc(61, "dhcpcd: [privileged proxy] wlan0 [ip4]", name="dhcpcd"),
               proc(62, "dhcpcd: [BPF ARP] wlan0 192.168.1.5", name="dhcpcd")]
    det = detect(facts(proc(60, title, name="dhcpcd"), *helpers))
    assert det.manager == am.DHCPCD and det.dhcpcd == am.DhcpcdProc(60, ifaces, families)


def test_static_and_slaac_need_nobody():
    det = detect(facts(), STATIC, SLAAC)
    assert det.manager == am.STATIC and "router advertisements" in det.detail
    p = plan("auto", det, STATIC, SLAAC, sysctls={"accept_ra": "1", "autoconf": "1"})
    assert p.manager.startswith("static")
    assert [s.kind for s in p.setup] == ["sysctl"]
    assert p.setup[0].data == {"paths": {"/proc/sys/net/ipv6/conf/br-wl/accept_ra": "1",
                                         "/proc/sys/net/ipv6/conf/br-wl/autoconf": "1"}}


def test_a_lease_nobody_known_renews_is_refused():
    det = detect(facts())
    assert det.manager == am.UNKNOWN
    with pytest.raises(ah.HandoffRefused, match="no DHCP client wlbridge knows"):
        plan("auto", det)
    assert plan("keep", det).setup == []        # keep: today's behaviour
    assert plan("dhclient", det).manager.startswith("dhclient on br-wl")


def test_two_leased_addresses_are_refused():
    second = dataclasses.replace(LEASED, address="192.168.1.6")
    det = detect(facts(proc(500, *IFUPDOWN)), LEASED, second)
    with pytest.raises(ah.HandoffRefused, match="2 leased IPv4 addresses"):
        plan("auto", det, LEASED, second)


# ---- plans ----------------------------------------------------------------------------
def test_dhclient_plan_moves_the_same_command_line_to_the_bridge_and_back():
    det = detect(facts(proc(500, *IFUPDOWN)))
    p = plan("auto", det)
    kinds = [s.kind for s in p.setup]
    assert kinds == ["forever", "conf", "write", "stop", "start"]
    stop = p.setup[3]
    assert stop.data["pid"] == 500 and stop.data["argv"] == list(IFUPDOWN)
    argv = p.setup[-1].data["argv"]
    files = ah.dhclient_files("/var/lib/wlbridge", "br-wl", 4)
    assert argv[0] == "/sbin/dhclient" and argv[-2:] == ["-nw", "br-wl"] and "wlan0" not in argv
    assert argv[argv.index("-pf") + 1] == files["pidfile"]
    assert argv[argv.index("-lf") + 1] == files["leasefile"]
    assert argv[argv.index("-df") + 1] == "/var/lib/dhcp/dhclient6.wlan0.leases"  # same DUID
    assert "-I" in argv and "-i" in argv
    seed = p.setup[2].data["text"]
    assert 'interface "br-wl";' in seed and "fixed-address 192.168.1.5;" in seed
    assert ah.last_lease(seed, "br-wl") == seed.strip()
    assert [s.kind for s in p.teardown_before] == ["stop", "forever"]
    assert [s.kind for s in p.teardown_after] == ["lease-back", "respawn"]
    assert p.teardown_after[-1].data["argv"] == list(IFUPDOWN)     # exactly as it was
    assert ah.Plan.from_json(p.to_json()) == p


def test_foreground_dhclient_is_refused_even_when_forced():
    det = detect(facts(proc(41, "dhclient", "-d", "wlan0", ppid=1)))
    with pytest.raises(ah.HandoffRefused):
        plan("dhclient", det)


def test_patient_conf_and_dhclient_times():
    conf = ah.patient_conf('timeout 30;\ninterface "wlan0" { send host-name "x"; }\n',
                           "wlan0", "br-wl")
    assert 'interface "br-wl"' in conf and conf.endswith(
        f"reboot {ah.PATIENCE};\ntimeout {ah.PATIENCE};\n")
    # 2027-01-15 08:00:00 UTC is a Friday: dhclient writes weekday 5
    lease = ah.seed_lease(LEASED, "br-wl", 1_800_000_000 - 3600)
    assert "expire 5 2027/01/15 08:00:00;" in lease


def test_networkmanager_plan_is_transient_and_reapplied():
    det = detect(facts(nm=am.NmDevice("100 (connected)", "Home")))
    p = plan("auto", det)
    commands = [s.data["argv"] for s in p.setup if s.kind == "command"]
    assert ["nmcli", "device", "set", "br-wl", "managed", "no"] in commands
    modify = next(s for s in p.setup if s.kind == "command" and "modify" in s.data["argv"])
    argv = modify.data["argv"]
    assert argv[:4] == ["nmcli", "device", "modify", "wlan0"]
    props = dict(zip(argv[4::2], argv[5::2]))
    assert props == {"ipv4.method": "disabled", "ipv4.addresses": "", "ipv4.gateway": "",
                     "ipv4.routes": "", "ipv6.method": "ignore", "ipv6.addresses": "",
                     "ipv6.gateway": "", "ipv6.routes": ""}
    assert modify.data["undo"] == ["nmcli", "device", "reapply", "wlan0"]
    assert p.setup[-1].kind == "start" and p.setup[-1].data["argv"][-1] == "br-wl"
    assert p.teardown_after[0].data["argv"] == ["nmcli", "device", "reapply", "wlan0"]
    # the bridge's dhclient starts from the system's configuration, as `dhclient br-wl` would
    conf = next(s for s in p.setup if s.kind == "conf")
    assert conf.data["src"] == "/etc/dhcp/dhclient.conf"



def test_the_bridges_dhclient_replaces_the_moved_default_route_instead_of_adding_one():
    """NetworkManager's default route (metric 600 for Wi-Fi) moves to the bridge with the
    address; the dhclient wlbridge starts there adds the same route with the same metric
    (Debian's dhclient-script: IF_METRIC), so there are not two default routes."""
    det = detect(facts(nm=am.NmDevice("100 (connected)", "Home")))
    p = ah.make_plan("auto", det, "wlan0", "br-wl", "/var/lib/wlbridge", [LEASED], {},
                     NOW, default_metric=600)
    argv = p.setup[-1].data["argv"]
    assert argv[argv.index("-e") + 1] == "IF_METRIC=600" and argv[-1] == "br-wl"
    assert ah.Plan.from_json(p.to_json()).setup[-1].data["argv"] == argv  # kept for renewals
    without = ah.make_plan("auto", det, "wlan0", "br-wl", "/var/lib/wlbridge", [LEASED],
                           {}, NOW)
    assert "-e" not in without.setup[-1].data["argv"]

NETWORKD_LINK = {"ADMIN_STATE": "configured", "NETWORK_FILE": "/etc/systemd/network/wl.network"}
NETWORKD_LEASE = "ADDRESS=192.168.1.5\nLIFETIME=3600\nCLIENTID=ffaba055f200020000ab110033bdebf95e192c\n"


def test_networkd_plan_uses_runtime_files():
    det = detect(facts(networkd_link=NETWORKD_LINK))
    p = plan("auto", det)
    up_file, br_file = ah.networkd_files("wlan0", "br-wl", "/etc/systemd/network/wl.network")
    assert up_file.startswith("/run/systemd/network/")
    writes = {s.data["path"] for s in p.setup if s.kind in ("write", "networkd-copy")}
    assert writes == {up_file, br_file}
    assert p.setup[-1].data["argv"] == ["networkctl", "reload"]
    text = ah.networkd_bridge_text("[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n", "br-wl")
    assert "Name=br-wl" in text and "Name=wlan0" not in text and "DHCP=yes" in text
    assert "DHCP=no" in ah.networkd_uplink_text("wlan0")
    assert p.teardown_after[-1].data["argv"] == ["networkctl", "reconfigure", "wlan0"]


def test_networkd_iaid_comes_from_the_uplinks_lease():
    lease = am.parse_networkd_state(NETWORKD_LEASE)
    det = detect(facts(networkd_link=NETWORKD_LINK, networkd_lease=lease))
    assert det.networkd_iaid == 0xaba055f2
    copy = next(s for s in plan("auto", det).setup if s.kind == "networkd-copy")
    assert copy.data["iaid"] == 0xaba055f2
    assert ah.Plan.from_json(plan("auto", det).to_json()).setup == plan("auto", det).setup
    for cid in ("", "01025a4c000200", "ffzz", "ff12"):       # MAC client id, junk, short
        assert am.networkd_iaid({"CLIENTID": cid}) is None
    assert am.networkd_iaid(None) is None
    assert detect(facts(networkd_link=NETWORKD_LINK)).networkd_iaid is None
    assert any("another address" in n for n in plan("auto", detect(
        facts(networkd_link=NETWORKD_LINK))).notes)


def test_networkd_bridge_file_keeps_the_moved_address_and_the_client_identity():
    """systemd-networkd 252 removes addresses it did not set from a link it starts managing
    (the host's, moved to the bridge, before the controller forwards any DHCP), derives the
    IAID, so the client identifier, from the interface, and releases the lease when it stops
    managing a link: all seen in the integration test before the bridge's file said
    otherwise."""
    text = ah.networkd_bridge_text("[Match]\nName=wlan0\n\n[Network]\nDHCP=yes\n", "br-wl",
                                   0xaba055f2)
    assert "KeepConfiguration=static" in text and f"IAID={0xaba055f2}" in text
    assert text.index("DHCP=yes") < text.index("KeepConfiguration=static")
    # teardown: no release of the lease the uplink asks for next (theirs or not: it is last)
    text = ah.networkd_bridge_text("[DHCPv4]\nSendRelease=yes\n", "br-wl", None)
    assert text.rindex("SendRelease=no") > text.index("SendRelease=yes")
    assert "IAID" not in ah.networkd_bridge_text("[Network]\nDHCP=yes\n", "br-wl", None)
    own = ("[Match]\nName=wlan0\n[Network]\nKeepConfiguration=yes\n"
           "[DHCPv4]\nClientIdentifier=mac\n")
    text = ah.networkd_bridge_text(own, "br-wl", 7)
    assert "KeepConfiguration=static" not in text and "IAID" not in text   # theirs stand
    text = ah.networkd_bridge_text("[DHCPv4]\nIAID=5\n", "br-wl", 7)
    assert "IAID=7" not in text
    # a [DHCPv4] key in another section is not theirs for [DHCPv4]
    assert "IAID=7" in ah.networkd_bridge_text("[Network]\n# IAID=5\nDHCP=yes\n", "br-wl", 7)


def test_networkd_runtime_files_must_sort_before_the_uplinks_file():
    """networkd applies the first matching .network file by name, whatever its directory."""
    ok = ah.networkd_files("wlan0", "br-wl", "/etc/systemd/network/10-netplan-wlan0.network")
    assert [f.rsplit("/", 1)[1] for f in ok] == ["00-wlbridge-wlan0.network",
                                                  "00-wlbridge-br-wl.network"]
    with pytest.raises(ValueError):
        ah.networkd_files("wlan0", "br-wl", "/etc/systemd/network/00-wlan0.network")
    det = detect(facts(networkd_link={**NETWORKD_LINK,
                                      "NETWORK_FILE": "/etc/systemd/network/00-wl.network"}))
    with pytest.raises(ah.HandoffRefused, match="00-wl.network") as exc:
        plan("auto", det)
    assert "\n" not in exc.value.one_line()


def test_dhcpcd_instance_plan_asks_for_the_current_address():
    """The uplink's instance stops before the addresses move (it would put them back), the
    bridge's asks for the current address, without the resolv.conf hook when the uplink's
    did not write /etc/resolv.conf."""
    one = plan("auto", detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd"))))
    assert [s.data["argv"] for s in one.before_move] == [["dhcpcd", "-4", "-x", "wlan0"]]
    assert [s.data["argv"] for s in one.setup if s.kind == "command"] == [
        ["dhcpcd", "-4", "-b", "-C", "resolv.conf", "-r", "192.168.1.5", "br-wl"]]
    assert [s.data["argv"] for s in one.teardown_before if s.kind == "command"] == [
        ["dhcpcd", "-4", "-x", "br-wl"]]
    assert one.teardown_after[0].data["argv"] == [
        "dhcpcd", "-4", "-b", "-C", "resolv.conf", "-r", "192.168.1.5", "wlan0"]
    assert ah.Plan.from_json(one.to_json()) == one


@pytest.mark.parametrize("kw", [
    {"resolv_conf_head": "# Generated by dhcpcd from wlan0.dhcp\nnameserver 192.168.1.1\n"},
    {"resolvconf_records": ("lo.dnsmasq", "wlan0.dhcp")},
])
def test_dhcpcd_that_wrote_resolv_conf_keeps_its_hook_on_the_bridge(kw):
    det = detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd"), **kw))
    assert det.writes_dns
    one = plan("auto", det)
    for argv in (one.setup[-1].data["argv"], one.teardown_after[0].data["argv"]):
        assert "-C" not in argv, argv


def test_dhcpcd_not_writing_resolv_conf_is_not_taken_for_one_that_does():
    for kw in ({"resolv_conf_head": "# Generated by NetworkManager\nnameserver 10.0.0.1\n"},
               {"resolvconf_records": ("eth0.dhcp", "wlan0x.dhcp")}):
        assert not detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd"), **kw)).writes_dns


def test_stopping_a_dhcpcd_that_is_not_running_is_done():
    one = plan("auto", detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd"))))
    [stop] = [s for s in one.teardown_before if s.kind == "command"]
    restart = one.teardown_after[0]
    host = FakeSystem(failing={shlex.join(stop.data["argv"]): "dhcpcd not running",
                               shlex.join(restart.data["argv"]): "dhcpcd not running"})
    ah.HostOps(system=host).do(stop)          # already stopped: nothing to undo, no error
    with pytest.raises(RuntimeError, match="not running"):
        ah.HostOps(system=host).do(restart)   # a start that fails is a failure
    assert host.ran == [stop.data["argv"], restart.data["argv"]]


def test_an_old_record_without_steps_before_the_move_still_reads():
    one = plan("auto", detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd"))))
    data = json.loads(one.to_json())
    del data["before_move"]
    assert ah.Plan.from_json(json.dumps(data)).before_move == []


def test_dhcpcd_manager_is_refused_with_what_to_do():
    """`dhcpcd -n IFACE` sent to a manager replaces its options (seen on dhcpcd 9.4.1: a
    manager limited by allowinterfaces went on to manage every interface)."""
    det = detect(facts(proc(60, "dhcpcd: [manager] [ip4] [ip6]", name="dhcpcd")))
    for mode in ("auto", "dhcpcd"):
        with pytest.raises(ah.HandoffRefused, match="every interface") as exc:
            plan(mode, det)
        assert "denyinterfaces wlan0" in exc.value.one_line() and "\n" not in str(exc.value)


def test_forced_manager_not_found_is_refused():
    det = detect(facts(), STATIC)
    for mode in ("dhcpcd", "networkd"):
        with pytest.raises(ah.HandoffRefused):
            plan(mode, det, STATIC)


def test_bad_record_is_a_value_error():
    for text in ("", "{}", '{"version": 1}', "[1]"):
        with pytest.raises(ValueError):
            ah.Plan.from_json(text)


# ---- steps: the registry and the stored form ------------------------------------------
RECORDS = json.loads((Path(__file__).parent / "data" / "handoff_plan_v1.json").read_text())
BRIDGE_PID = {4: 700, 6: 701}


def all_steps(p: ah.Plan) -> list[ah.Step]:
    return [s for phase in PHASES for s in getattr(p, phase)]


def every_plan() -> list[ah.Plan]:
    six = ("dhclient", "-6", "-pf", "/run/dhclient6.wlan0.pid", "-lf",
           "/var/lib/dhcp/dhclient6.wlan0.leases", "wlan0")
    na = Address(6, "2001:db8::77", 128, valid_lft=7200, preferred_lft=3600)
    nwd = {"networkd_link": NETWORKD_LINK, "networkd_lease": am.parse_networkd_state(
        NETWORKD_LEASE)}
    return [plan("auto", detect(facts(proc(500, *IFUPDOWN), proc(501, *six)), LEASED, na),
                 LEASED, na, sysctls={"accept_ra": "1"}),
            plan("dhclient", detect(facts())),
            plan("auto", detect(facts(proc(60, "dhcpcd: wlan0 [ip4]", name="dhcpcd")))),
            plan("auto", detect(facts(nm=am.NmDevice("100 (connected)", "Home", None, "auto")))),
            plan("auto", detect(facts(**nwd))),
            plan("auto", detect(facts(), STATIC), STATIC, sysctls={"autoconf": "1"}),
            plan("keep", detect(facts()))]


def test_every_step_a_plan_makes_is_registered_with_its_arguments():
    kinds = set()
    for p in every_plan():
        for step in all_steps(p):
            steps.bind(step)
            kinds.add(step.kind)
        assert ah.Plan.from_json(p.to_json()) == p
    stored = {s.kind for text in RECORDS.values() for s in all_steps(ah.Plan.from_json(text))}
    assert kinds == stored == {k for k, _ in steps.REGISTRY} - {"rebind"}  # rebind: renewals


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_record_stored_by_version_1_still_reads_and_every_step_binds(name):
    """Records captured from OVSDB as version 1 wrote them (every step kind): this version
    must tear them down; and it writes them back the same."""
    p = ah.Plan.from_json(RECORDS[name])
    for step in all_steps(p):
        bound = steps.bind(step)
        assert bound.kind.version == step.version == 1
    assert p.to_json() == RECORDS[name]


def test_a_step_kind_or_version_it_does_not_know_or_other_arguments_cannot_run():
    with pytest.raises(steps.StepError, match=r"step kind 'respawn-later' is unknown: 'later'"):
        steps.bind(ah.Step("respawn-later", "later", {"argv": ["x"]}))
    with pytest.raises(steps.StepError, match=r"version 2 of step kind 'stop' is unknown "
                       r"\(known: 1\)"):
        steps.bind(ah.Step("stop", "stop it", {"argv": ["x"], "pidfile": None}, version=2))
    with pytest.raises(steps.StepError, match=r"missing pidfile; unknown pid_file; it takes "
                       r"argv, pidfile, \[pid\]\): 'stop it'"):
        steps.bind(ah.Step("stop", "stop it", {"argv": ["x"], "pid_file": None}))
    # stored as before versions existed; a later version is written with its number
    assert "version" not in json.loads(plan("auto", detect(facts(proc(500, *IFUPDOWN))))
                                       .to_json())["setup"][0]
    later = ah.Step("stop", "x", {"argv": ["x"], "pidfile": None}, version=2)
    assert later.stored()["version"] == 2


def test_a_kind_is_registered_once_with_an_undo_taking_its_arguments():
    def do(host, path, text):
        pass

    def undo(host, path):
        pass

    with pytest.raises(TypeError, match="undo's arguments"):
        steps.register("test-kind", do, undo)
    with pytest.raises(TypeError, match="twice"):
        steps.register("write", steps.write, steps.undo_write)
    assert ("test-kind", 1) not in steps.REGISTRY
    lease_back = steps.REGISTRY[("lease-back", 1)]
    assert lease_back.params == ("src", "path", "from", "to")    # from_ is stored as from


# ---- execution ------------------------------------------------------------------------
def test_a_failed_step_undoes_the_done_ones_in_reverse():
    """The bridge's dhclient does not start: the uplink's, stopped just before, runs again
    exactly as it was, and the files written for the bridge's are gone."""
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    host = FakeSystem(procs={500: IFUPDOWN}, dies_on=["br-wl"])
    lines: list[str] = []
    with pytest.raises(ah.HandoffError, match="did not start") as exc:
        ah.execute(p.setup, ah.HostOps(system=host), lines.append)
    assert exc.value.undo_errors == []
    files = ah.dhclient_files("/var/lib/wlbridge", "br-wl", 4)
    bridge_argv = shlex.join(p.setup[-1].data["argv"])
    assert host.log == ["forever br-wl", f"write {files['conffile']}",
                        f"write {files['leasefile']}", f"kill {shlex.join(IFUPDOWN)}",
                        f"spawn {bridge_argv}", f"spawn {shlex.join(IFUPDOWN)}",
                        f"unlink {files['leasefile']}", f"unlink {files['conffile']}"]
    assert host.running() == [list(IFUPDOWN)]
    assert lines == [s.text for s in p.setup[:4]]


def test_a_step_that_cannot_run_stops_a_run_before_anything_is_done():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    host = FakeSystem(procs={500: IFUPDOWN})
    bad = dataclasses.replace(p.setup[-1], kind="start-later")
    with pytest.raises(ah.HandoffError, match="start-later' is unknown"):
        ah.execute([*p.setup[:-1], bad], ah.HostOps(system=host), lambda line: None)
    assert host.log == []
    skipped: list[str] = []       # teardown's way: the others run, the problem said
    ah.execute([p.setup[1], bad], ah.HostOps(system=host), lambda line: None, skipped.append)
    assert len(skipped) == 1 and p.setup[-1].text in skipped[0]
    assert host.log == [f"write {p.setup[1].data['path']}"]


def test_stop_waits_for_the_process_and_kills_one_that_stays():
    argv = ["dhclient", "-4", "-nw", "br-wl"]
    host = FakeSystem(procs={700: argv})
    stubborn = {700}

    def kill(pid, sig):       # SIGTERM ignored, SIGKILL not
        host.signals.append((pid, sig))
        if sig == signal.SIGKILL or pid not in stubborn:
            host.procs.pop(pid)

    host.kill = kill
    steps.stop(host, argv, None, 700)
    assert host.signals == [(700, signal.SIGTERM), (700, signal.SIGKILL)]
    assert host.now >= steps.STOP_TIMEOUT
    host.procs[701] = ["dhclient", "-4", "-nw", "br-wl2"]      # another command line
    steps.stop(host, argv, None, 701)
    assert 701 in host.procs and len(host.signals) == 2


def test_a_removed_file_comes_back_when_undone():
    host = FakeSystem(files={"/run/systemd/network/x.network": "[Match]\n"})
    step = ah.Step("remove", "x removed", {"path": "/run/systemd/network/x.network"})
    ops = ah.HostOps(system=host)
    ops.do(step)
    assert host.files == {}
    ops.undo(step)
    assert host.files == {"/run/systemd/network/x.network": "[Match]\n"}


def test_stop_kills_only_the_exact_command_line(tmp_path):
    """On the real host: /proc's command lines, signals, a pid file that is not there."""
    system = ah.System()
    argv = ["sleep", "30"]
    pid = system.spawn(argv)
    try:
        for _ in range(500):                          # until it has exec'd (loaded CI)
            if system.cmdline(pid) == argv:
                break
            time.sleep(0.02)
        steps.stop(system, ["sleep", "31"], None, pid)      # another command line: left alone
        assert system.cmdline(pid) == argv
        steps.stop(system, argv, str(tmp_path / "no.pid"), pid)
        assert system.cmdline(pid) in (None, [])
    finally:
        subprocess.run(["kill", str(pid)], capture_output=True, check=False)


def test_status_fields():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    fields = ah.status_fields(p.to_json(), [LEASED], NOW)
    assert fields == {"address_manager": p.manager, "lease_ends": int(NOW) + 3600}
    assert ah.status_fields(None, [STATIC], NOW)["lease_ends"] is None
    assert "unreadable" in ah.status_fields("nope", [], NOW)["address_manager"]
    line = ah.render_line({"host_address": fields}, NOW + 600)
    assert line == f"address  managed by {p.manager}; lease ends in 3000s"
    assert ah.render_line({}, NOW) is None


# ---- setup's hooks --------------------------------------------------------------------
class LeasedNet(FakeNet):
    def snapshot(self, name: str) -> SavedState:
        self.calls.append(("snapshot", name))
        return SavedState(uplink=name, mac="02:aa:bb:cc:dd:01", allmulticast=False,
                          addresses=[LEASED])

    def set_tx_checksum(self, name, wanted):
        return True


def _net() -> LeasedNet:
    return LeasedNet({"wlan0": {}})


def on(f: am.HostFacts, host: FakeSystem | None = None) -> ah.Handoff:
    return ah.Handoff(read_facts=lambda uplink, index: f, system=host or FakeSystem())


def test_setup_refusal_changes_nothing():
    net = _net()
    db = FakeDb(net=net)
    host = FakeSystem(procs={7: ["dhclient"]})
    with pytest.raises(UserError) as exc:
        bridge_setup.setup(db, net, opts(), out=lambda line: None,
                           handoff_host=on(facts(proc(7, "dhclient")), host))
    assert "every interface" in str(exc.value) and "nothing changed" in str(exc.value)
    assert "\n" not in str(exc.value)
    assert db.calls == [] and [c[0] for c in net.calls] == ["snapshot"] and host.log == []


def test_setup_rolls_back_when_the_handoff_fails(tmp_path):
    state_dir = str(tmp_path)
    host = FakeSystem(procs={500: IFUPDOWN}, dies_on=["br-wl"])
    net = _net()
    db = FakeDb(net=net)
    with pytest.raises(UserError, match="rolled back") as exc:
        bridge_setup.setup(db, net, opts(state_dir=state_dir), out=lambda line: None,
                           handoff_host=on(facts(proc(500, *IFUPDOWN)), host))
    assert "did not start" in str(exc.value)
    assert [line.split()[0] for line in host.log] == [
        "forever", "write", "write", "kill", "spawn", "spawn", "unlink", "unlink"]
    assert host.running() == [list(IFUPDOWN)]             # the uplink's dhclient again
    assert not [f for f in host.files if f.startswith(state_dir)]
    assert ("move", "wlan0", "br-wl") in net.calls and ("move", "br-wl", "wlan0") in net.calls
    assert db.calls[-1] == ("delete", "br-wl")


def test_keep_mode_does_not_look():
    def boom(*a, **k):
        raise AssertionError("detection ran")

    net = _net()
    db = FakeDb(net=net)
    host = FakeSystem()
    bridge_setup.setup(db, net, opts(address_manager="keep"), out=lambda line: None,
                       handoff_host=ah.Handoff(read_facts=boom, system=host))
    spec = db.calls[0][1]
    assert ah.Plan.from_json(spec.external_ids[ah.HANDOFF_KEY]).mode == "keep"
    assert host.log == []


def _bridge_with(p: ah.Plan | str):
    info = bridge()
    text = p if isinstance(p, str) else p.to_json()
    return dataclasses.replace(info, external_ids={**info.external_ids, ah.HANDOFF_KEY: text})


def test_setup_run_again_restarts_a_dead_bridge_client():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    host = FakeSystem()                             # nobody runs
    net = FakeNet({"wlan0": {}, "br-wl": {}})
    lines: list[str] = []
    bridge_setup.setup(FakeDb([_bridge_with(p)], net=net), net, opts(), out=lines.append,
                       handoff_host=on(facts(), host))
    assert host.running() == [p.setup[-1].data["argv"]]
    assert any("dhclient -4 on br-wl" in line for line in lines), lines
    assert any("address manager: dhclient on br-wl" in line for line in lines), lines
    host.log.clear()                                # and again: it runs, left alone
    bridge_setup.setup(FakeDb([_bridge_with(p)], net=net), net, opts(), out=lines.append,
                       handoff_host=on(facts(), host))
    assert host.log == []


def test_setup_run_again_restarts_no_client_from_a_step_it_cannot_run():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    data = json.loads(p.to_json())
    data["setup"][-1]["data"]["pid_file"] = data["setup"][-1]["data"].pop("pidfile")
    host = FakeSystem()
    net = FakeNet({"wlan0": {}, "br-wl": {}})
    bridge_setup.setup(FakeDb([_bridge_with(json.dumps(data))], net=net), net, opts(),
                       out=lambda line: None, handoff_host=on(facts(), host))
    assert host.log == []


# ---- teardown's hooks -----------------------------------------------------------------
class LoggingNet(FakeNet):
    def __init__(self, log: list[str], fail_move: bool = False) -> None:
        super().__init__({"wlan0": {}, "br-wl": {}})
        self.log, self.fail_move = log, fail_move

    def move(self, st, src, dst, nodad=False):
        if self.fail_move:
            raise OSError("simulated")
        self.log.append(f"move {src}->{dst}")
        return []

    def set_tx_checksum(self, name, wanted):
        return True


class LoggingDb(FakeDb):
    def delete_bridge(self, name: str) -> bool:
        self.net.log.append("delete")
        return super().delete_bridge(name)


BRIDGE_LEASE = ('lease {\n  interface "br-wl";\n  fixed-address 192.168.1.5;\n'
                '  expire 5 2027/01/15 08:00:00;\n}\n')


def set_up_host(p: ah.Plan, log: list[str]) -> FakeSystem:
    """The host as setup left it: the bridge's dhclients running, its lease file."""
    host = FakeSystem(log=log)
    for start in (s for s in p.setup if s.kind == "start"):
        host.daemon(start.data["argv"], start.data["pidfile"], BRIDGE_PID[int(
            start.data["argv"][1][1])])
    if p.lease_file:
        host.files[p.lease_file] = BRIDGE_LEASE
    log.clear()
    return host


def tear_down(p: ah.Plan | str, host: FakeSystem, net: LoggingNet) -> tuple[LoggingDb, list]:
    db = LoggingDb([_bridge_with(p)], net=net)
    lines: list[str] = []
    assert bridge_teardown.teardown(db, net, "br-wl", out=lines.append,
                                    handoff_host=ah.Handoff(system=host))
    return db, lines


def test_teardown_hands_back_around_the_move():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    log: list[str] = []
    host = set_up_host(p, log)
    tear_down(p, host, LoggingNet(log))
    bridge_argv = p.setup[-1].data["argv"]
    assert log == [f"kill {shlex.join(bridge_argv)}", "forever br-wl", "move br-wl->wlan0",
                   "delete", "append /var/lib/dhcp/dhclient.wlan0.leases",
                   f"spawn {shlex.join(IFUPDOWN)}"]
    assert host.running() == [list(IFUPDOWN)]
    back = host.files["/var/lib/dhcp/dhclient.wlan0.leases"]
    assert back == "\n" + BRIDGE_LEASE.replace('"br-wl"', '"wlan0"')


def test_teardown_restarts_the_bridge_client_when_the_move_fails():
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    log: list[str] = []
    host = set_up_host(p, log)
    net = LoggingNet(log, fail_move=True)
    db = FakeDb([_bridge_with(p)], net=net)
    with pytest.raises(UserError, match="teardown stopped before removing"):
        bridge_teardown.teardown(db, net, "br-wl", out=lambda line: None,
                                 handoff_host=ah.Handoff(system=host))
    bridge_argv = shlex.join(p.setup[-1].data["argv"])
    assert log == [f"kill {bridge_argv}", "forever br-wl", f"spawn {bridge_argv}"]
    assert "br-wl" in db.bridges


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_bridge_set_up_by_version_1_tears_down(name):
    """Teardown with a record as version 1 stored it: every step runs and says so."""
    p = ah.Plan.from_json(RECORDS[name])
    log: list[str] = []
    host = set_up_host(p, log)
    db, lines = tear_down(RECORDS[name], host, LoggingNet(log))
    assert not [line for line in lines if "error" in line or "warning" in line], lines
    shown = [s.text for s in p.teardown_before + p.teardown_after
             if s.kind != "command" or s.data["argv"]]
    assert [line.strip() for line in lines if line.strip() in shown] == shown
    assert "br-wl" not in db.bridges
    assert host.running() == sorted(s.data["argv"] for s in p.teardown_after
                                    if s.kind == "respawn")
    assert host.ran == [s.data["argv"] for s in p.teardown_before + p.teardown_after
                        if s.kind == "command"]


@pytest.mark.parametrize("phase, change, why", [
    ("teardown_after", {"kind": "respawn-later"}, "step kind 'respawn-later' is unknown"),
    ("teardown_after", {"version": 3}, "version 3 of step kind 'respawn' is unknown"),
    ("teardown_before", {"data": {"argv": ["x"], "pid_file": "/run/x.pid"}},
     "missing pidfile; unknown pid_file"),
])
def test_a_record_with_a_step_this_version_cannot_run_tears_down_what_it_can(phase, change,
                                                                              why):
    """One error line naming the step (what to do by hand) and why; the addresses move
    back, the bridge goes, and the other steps run."""
    p = plan("auto", detect(facts(proc(500, *IFUPDOWN))))
    data = json.loads(p.to_json())
    bad = data[phase][-1 if phase == "teardown_after" else 0]
    bad.update(change)
    log: list[str] = []
    host = set_up_host(p, log)
    db, lines = tear_down(json.dumps(data), host, LoggingNet(log))
    [error] = [line for line in lines if "error" in line]
    assert why in error and bad["text"] in error and "by hand" in error
    assert "\n" not in error
    assert "move br-wl->wlan0" in log and "br-wl" not in db.bridges
    bridge_argv = p.setup[-1].data["argv"]
    if phase == "teardown_after":          # the bridge's client stopped, the lease carried
        assert f"kill {shlex.join(bridge_argv)}" in log
        assert "append /var/lib/dhcp/dhclient.wlan0.leases" in log
        assert host.running() == []
    else:                                  # the original client is back
        assert host.running() == sorted([bridge_argv, list(IFUPDOWN)])


# ---- reading the host -----------------------------------------------------------------
def test_read_processes_from_a_proc_tree(tmp_path):
    for pid, argv, stat in ((500, b"dhclient\0-4\0wlan0\0", "500 (dhclient) S 1 500"),
                            (2, b"", "2 (kthreadd) S 0 0")):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(argv)
        (d / "stat").write_text(stat)
        (d / "comm").write_text(stat.split("(")[1].split(")")[0] + "\n")
    (tmp_path / "self").mkdir()
    assert am.read_processes(str(tmp_path)) == [proc(500, "dhclient", "-4", "wlan0")]


def test_networkmanager_that_does_not_answer(tmp_path, monkeypatch):
    nmcli = tmp_path / "nmcli"
    nmcli.write_text("#!/bin/sh\nexec sleep 10\n")
    nmcli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    nm = proc(30, "/usr/sbin/NetworkManager", name="NetworkManager")
    found = am.read_nm("wlan0", [nm], timeout=0.3)
    assert found is not None and "did not answer" in found.error
    assert am.read_nm("wlan0", []) is None                 # not running: not asked


def test_networkmanager_connection_ipv6_method_is_read(tmp_path, monkeypatch):
    nmcli = tmp_path / "nmcli"
    nmcli.write_text('#!/bin/sh\ncase "$*" in\n'
                     '  *"device show wlan0") printf "GENERAL.STATE:100 (connected)\\n'
                     'GENERAL.CONNECTION:Home\\n" ;;\n'
                     '  "-g ipv6.method connection show Home") echo auto ;;\n'
                     '  *) exit 10 ;;\nesac\n')
    nmcli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    nm = proc(30, "/usr/sbin/NetworkManager", name="NetworkManager")
    assert am.read_nm("wlan0", [nm]) == am.NmDevice("100 (connected)", "Home", None, "auto")


def test_networkmanager_plan_lets_the_kernel_accept_ras_on_the_bridge():
    """NetworkManager (ipv6.method auto) does RAs itself and sets the uplink's accept_ra to 0:
    copied to the bridge, nobody would renew SLAAC addresses or the IPv6 default route."""
    sysctls = {"accept_ra": "0", "autoconf": "1", "use_tempaddr": "2"}
    det = detect(facts(nm=am.NmDevice("100 (connected)", "Home", None, "auto")))
    assert det.nm_ipv6_method == "auto"
    (step,) = [s for s in plan("auto", det, sysctls=sysctls).setup if s.kind == "sysctl"]
    conf = "/proc/sys/net/ipv6/conf/br-wl/"
    assert step.data["paths"] == {conf + "accept_ra": "1", conf + "autoconf": "1",
                                  conf + "use_tempaddr": "2"}
    det = detect(facts(nm=am.NmDevice("100 (connected)", "Home", None, "ignore")))
    (step,) = [s for s in plan("auto", det, sysctls=sysctls).setup if s.kind == "sysctl"]
    assert step.data["paths"][conf + "accept_ra"] == "0"          # copied as it was
    det = detect(facts(nm=am.NmDevice("100 (connected)", "Home", None, "dhcp")))
    assert any("ipv6.method dhcp" in n for n in plan("auto", det, sysctls=sysctls).notes)


def test_dhcpv6_client_goes_along_with_its_leases():
    six = ("dhclient", "-6", "-pf", "/run/dhclient6.wlan0.pid", "-lf",
           "/var/lib/dhcp/dhclient6.wlan0.leases", "wlan0")
    na = Address(6, "2001:db8::77", 128, valid_lft=7200, preferred_lft=3600)
    det = detect(facts(proc(500, *IFUPDOWN), proc(501, *six)), LEASED, na)
    p = plan("auto", det, LEASED, na)
    starts = [s.data["argv"] for s in p.setup if s.kind == "start"]
    assert [a[1] for a in starts] == ["-4", "-6"] and all(a[-1] == "br-wl" for a in starts)
    copy = next(s for s in p.setup if s.kind == "copy-leases")
    assert copy.data["src"] == "/var/lib/dhcp/dhclient6.wlan0.leases"
    lifted = p.setup[0].data["addresses"]
    assert {a["address"] for a in lifted} == {"192.168.1.5", "2001:db8::77"}
    assert [s.data["argv"] for s in p.teardown_after if s.kind == "respawn"] == [
        list(IFUPDOWN), list(six)]


def test_unparsable_lease_file_gives_no_lease():
    assert ah.last_lease("lease { garbage", "br-wl") is None
    assert ah.last_lease("}}} lease {\n interface \"eth0\";\n}\n", "br-wl") is None


def test_forced_dhclient_where_none_ran_leaves_resolv_conf_alone(tmp_path):
    """`--address-manager dhclient` on a host where no DHCP client ran: nothing wrote
    /etc/resolv.conf before, so wlbridge's dhclient runs the system's script without the
    DNS options; the script really drops them and passes the rest."""
    p = plan("dhclient", detect(facts()))
    [start] = [s for s in p.setup if s.kind == "start"]
    [write] = [s for s in p.setup if s.kind == "write" and s.data["path"].endswith(".script")]
    argv = start.data["argv"]
    assert argv[argv.index("-sf") + 1] == write.data["path"] and argv[-1] == "br-wl"
    assert write.data["mode"] == 0o755
    system = tmp_path / "system-script"
    system.write_text('#!/bin/sh\necho "dns=$new_domain_name_servers ip=$new_ip_address $1"\n')
    system.chmod(0o755)
    ours = tmp_path / "ours"
    ah.System.write_text(str(ours), ah.no_dns_script(str(system)), 0o755)
    out = subprocess.run([str(ours), "arg"], capture_output=True, text=True, check=True,
                         env={"new_domain_name_servers": "10.0.0.1", "new_ip_address": "10.0.0.5",
                              "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "dns= ip=10.0.0.5 arg"
    # where a dhclient ran, its own script and options are kept, DNS included
    kept = plan("dhclient", detect(facts(proc(500, *IFUPDOWN))))
    assert not [s for s in kept.setup if s.kind == "write" and s.data["path"].endswith(".script")]
    assert "-sf" not in next(s for s in kept.setup if s.kind == "start").data["argv"]
