"""The packet-in policies decide without a `Core`: given a model they return effects and
change nothing themselves (the core applies effects in one place, see `effects`)."""

from __future__ import annotations

import copy
import logging
from collections import Counter

from dhcp_frames import ack, discover
from ofsim import data_of
from ofsim_packets import arp_request, icmp_echo
from wlbridge.core import Core, CoreConfig
from wlbridge.flows import cookies
from wlbridge.flows.pipeline import PORT_LOCAL
from wlbridge.model.state import Model, Port
from wlbridge.policy import lifecycle
from wlbridge.policy.dhcp_service import DhcpService
from wlbridge.policy.effects import (
    AddGuest,
    Adopt,
    Announce,
    Bind,
    Deliver,
    DropGuest,
    HostAddresses,
    LearnMac,
    Park,
    Refresh,
    Reinject,
    SetUplink,
    SyncPort,
    Unbind,
)
from wlbridge.policy.learning import PacketInPolicy
from wlbridge.ratelog import RateLimitedLog
from wlbridge.telemetry import Telemetry

UPLINK, PORT = 1, 2
STATION = "02:11:22:33:44:55"
GUEST = "52:54:00:12:34:56"
NOW = 1000.0


def policy(guest_mac: str | None = GUEST, max_macs: int = 32
           ) -> tuple[PacketInPolicy, Model, Counter]:
    model = Model(uplink=UPLINK, station_mac=STATION)
    model.add_guest(PORT, "vm1")
    if guest_mac:
        model.learn_mac(PORT, guest_mac)
    counters: Counter = Counter()
    log = logging.getLogger("test.policy")
    tel = Telemetry(counters, log, RateLimitedLog(log, "binding changes"))
    config = CoreConfig(max_macs_per_port=max_macs)
    return PacketInPolicy(model, config, tel, DhcpService(model, config, tel)), model, counters


def bind_old_lease(model: Model, ip: str) -> None:
    model.bind(PORT, ip, "dhcp", NOW - 10, NOW + 100, 3600)


def test_an_arp_announcement_binds_then_reinjects_and_changes_nothing_itself():
    pol, model, counters = policy()
    data = data_of(arp_request(GUEST, "192.168.1.50", "192.168.1.50"))
    before = copy.deepcopy(model)
    assert pol.packet_in(PORT, data, NOW) == [Bind(PORT, "192.168.1.50", "arp"),
                                              Reinject(PORT, data)]
    assert (model.bindings, model.guests) == (before.bindings, before.guests)
    assert counters["packet_in.arp"] == 1
    # the same claim once bound: only a refresh of its flows, then the frame goes on
    bind_old_lease(model, "192.168.1.50")
    assert pol.packet_in(PORT, data, NOW) == [Refresh("192.168.1.50"), Reinject(PORT, data)]


def test_a_first_frame_teaches_the_mac_and_leaves_the_guest_unchanged():
    pol, model, _ = policy(guest_mac=None)
    data = data_of(arp_request(GUEST, "0.0.0.0", "192.168.1.50"))
    assert pol.packet_in(PORT, data, NOW) == [LearnMac(PORT, GUEST), Reinject(PORT, data)]
    assert model.guests[PORT].mac is None and model.by_mac == {}


def test_a_refused_frame_has_no_effect_and_is_counted():
    pol, _, counters = policy(max_macs=1)  # a port that carries one guest
    spoofed = data_of(arp_request("52:54:00:99:99:99", "192.168.1.50", "192.168.1.50"))
    assert pol.packet_in(PORT, spoofed, NOW) == []
    assert counters["refused.spoofed-mac"] == 1


def test_another_mac_on_a_port_is_a_new_guest_behind_it_up_to_the_bound():
    pol, model, counters = policy(max_macs=2)
    second = data_of(arp_request("52:54:00:99:99:99", "192.168.1.50", "192.168.1.50"))
    assert pol.packet_in(PORT, second, NOW) == [LearnMac(PORT, "52:54:00:99:99:99"),
                                                Reinject(PORT, second)]
    assert list(model.guests[PORT].macs) == [GUEST]  # (the core applies it)
    model.learn_mac(PORT, "52:54:00:99:99:99")
    assert pol.packet_in(PORT, second, NOW) == [Bind(PORT, "192.168.1.50", "arp",
                                                     mac="52:54:00:99:99:99"),
                                                Reinject(PORT, second)]
    third = data_of(arp_request("52:54:00:77:77:77", "192.168.1.51", "192.168.1.51"))
    assert pol.packet_in(PORT, third, NOW) == []
    assert counters["refused.mac-limit"] == 1


def test_a_dhcp_ack_is_delivered_first_then_replaces_the_old_lease():
    pol, model, _ = policy()
    bind_old_lease(model, "192.168.1.40")
    effects = pol.packet_in(UPLINK, ack(GUEST, 7, "192.168.1.50", lease=600), NOW)
    deliver, *changes = effects
    assert isinstance(deliver, Deliver) and (deliver.in_port, deliver.out_port) == (UPLINK, PORT)
    assert changes == [Unbind("192.168.1.40", "new-lease"),
                       Bind(PORT, "192.168.1.50", "dhcp", NOW + 600, 600)]
    assert set(model.bindings) == {"192.168.1.40"}  # the policy changed nothing


def test_the_hosts_own_dhcp_reply_goes_to_local_unchanged():
    pol, _, _ = policy()
    data = ack(STATION, 8, "192.168.1.9")
    assert pol.packet_in(UPLINK, data, NOW) == [Deliver(UPLINK, PORT_LOCAL, data)]


def test_the_core_sends_a_dhcp_reply_before_its_bindings_flows():
    """The one ordering rule: deliveries, then flow changes (re-injections last)."""
    core = Core(CoreConfig(uplink="wlan0"))
    core.switch_connected(1, [Port(UPLINK, "wlan0", STATION), Port(PORT, "vm1", GUEST)], NOW)
    core.packet_in(PORT, data_of(arp_request(GUEST, "0.0.0.0", "192.168.1.50")), NOW)
    msgs = core.packet_in(UPLINK, ack(GUEST, 7, "192.168.1.50"), NOW)
    kinds = [type(m).__name__ for m in msgs]
    assert kinds[0] == "OFPPacketOut" and msgs[0].actions[0].port == PORT
    assert len(kinds) > 1 and set(kinds[1:]) == {"OFPFlowMod"}, kinds
    assert "192.168.1.50" in core.bindings


# ------------------------------------------------------------ the core's other events
# (`lifecycle`: host addresses, idle flows, leases, ports) decide the same way: effects only

def telemetry() -> tuple[Telemetry, Counter]:
    counters: Counter = Counter()
    log = logging.getLogger("test.lifecycle")
    return Telemetry(counters, log, RateLimitedLog(log, "binding changes")), counters


def test_host_addresses_drop_the_guest_bindings_of_them_and_change_nothing_themselves():
    _, model, _ = policy()
    bind_old_lease(model, "192.168.1.40")
    bind_old_lease(model, "192.168.1.41")
    tel, _ = telemetry()
    before = copy.deepcopy(model)
    assert lifecycle.host_addresses(model, ["192.168.1.41", "192.168.1.2"], tel) == [
        HostAddresses(frozenset({"192.168.1.41", "192.168.1.2"})),
        Unbind("192.168.1.41", "host-ip")]
    assert (model.bindings, model.host_ips) == (before.bindings, before.host_ips)


def test_only_a_current_idle_learned_binding_flow_unbinds():
    _, model, _ = policy()
    model.bind(PORT, "192.168.1.50", "arp", NOW)
    model.bind(PORT, "192.168.1.60", "dhcp", NOW, NOW + 60)
    tel, counters = telemetry()
    guest_ip = cookies.make(cookies.Purpose.GUEST_IP, 3, PORT)

    def removed(ip, cookie=guest_ip, idle=True, generation=3):
        return lifecycle.idle_flow_removed(model, cookie, {"ipv4_src": ip}, idle, generation,
                                           tel, NOW)

    assert removed("192.168.1.50") == [Unbind("192.168.1.50", "idle")]
    assert counters["bindings.expired.idle"] == 1
    assert removed("192.168.1.50", idle=False) == []  # a switch deleting its flows
    assert removed("192.168.1.50", generation=4) == []  # an older generation's flow
    assert removed("192.168.1.50", cookie=cookies.make(cookies.Purpose.GUEST_PORT, 3, PORT)) == []
    assert removed("192.168.1.50", cookie=0) == []  # not ours
    assert removed("192.168.1.60") == []  # a DHCP lease ends by its time, not by idleness
    assert removed("192.168.1.70") == []  # not bound
    assert "192.168.1.50" in model.bindings and counters["bindings.expired.idle"] == 1


def test_leases_end_at_their_time_not_before():
    _, model, _ = policy()
    model.bind(PORT, "192.168.1.50", "dhcp", NOW, NOW + 10)
    model.bind(PORT, "192.168.1.51", "dhcp", NOW, NOW + 11)
    model.bind(PORT, "192.168.1.52", "arp", NOW)
    tel, counters = telemetry()
    assert lifecycle.leases_ended(model, NOW + 9.9, tel) == []
    assert lifecycle.leases_ended(model, NOW + 10, tel) == [Unbind("192.168.1.50", "lease")]
    assert counters["bindings.expired.lease"] == 1 and len(model.bindings) == 3


def ports(*extra: Port) -> dict[int, Port]:
    return {p.port_no: p for p in (Port(UPLINK, "wlan0", STATION), Port(PORT, "vm1", GUEST),
                                   *extra)}


def test_a_new_port_becomes_a_guest_with_its_configured_mac_then_is_synced():
    _, model, _ = policy()
    tel, _ = telemetry()
    config = CoreConfig(static_macs={"vm2": "52:54:00:AA:BB:CC"})
    new = Port(3, "vm2", "00:00:00:00:00:03")
    assert lifecycle.port_changed(model, ports(new), new, None, config, tel) == [
        AddGuest(3, "vm2", "52:54:00:aa:bb:cc"), Adopt(), SyncPort(3)]
    # a guest port reported again: no new guest, its meter and flows brought up to date
    known = Port(PORT, "vm1", GUEST)
    assert lifecycle.port_changed(model, ports(), known, known, config, tel) == [
        Adopt(), SyncPort(PORT)]
    # the same number under another name: the old guest goes, a new one comes
    renamed = Port(PORT, "vm9", GUEST)
    assert lifecycle.port_changed(model, ports(renamed), renamed, known, config, tel) == [
        DropGuest(PORT), AddGuest(PORT, "vm9", None), Adopt(), SyncPort(PORT)]
    assert set(model.guests) == {PORT}


def test_the_uplink_port_resets_the_uplink_and_announces_on_a_new_mac_or_coming_up():
    _, model, _ = policy()
    tel, counters = telemetry()
    config = CoreConfig(uplink="wlan0")
    up = Port(UPLINK, "wlan0", STATION)
    assert lifecycle.port_changed(model, ports(), up, up, config, tel) == [
        SetUplink(UPLINK, STATION)]
    down = Port(UPLINK, "wlan0", STATION, up=False)
    assert lifecycle.port_changed(model, ports(), up, down, config, tel) == [
        SetUplink(UPLINK, STATION), Announce()]
    moved = Port(UPLINK, "wlan0", "02:AA:BB:CC:DD:EE")
    assert lifecycle.port_changed(model, ports(moved), moved, up, config, tel) == [
        SetUplink(UPLINK, "02:aa:bb:cc:dd:ee"), Announce()]
    assert counters["station.mac_changes"] == 1 and model.station_mac == STATION


def test_a_connection_finds_the_uplink_parks_missing_guests_and_adds_new_ones():
    """A (re)connect is decided like a port event: effects, nothing changed by the policy."""
    _, model, _ = policy()
    model.add_guest(3, "vm3")
    model.add_guest(4, "vm4")
    tel, counters = telemetry()
    config = CoreConfig(uplink="wlan0", static_macs={"vm5": "52:54:00:00:00:05"})
    before = copy.deepcopy(model)
    # vm1 still there; vm3's port now called vm9; vm4 missing; vm5 new
    now = ports(Port(3, "vm9", GUEST), Port(5, "vm5", GUEST))
    assert lifecycle.connected(model, now, config, tel) == [
        SetUplink(UPLINK, STATION), Park(3), Park(4), AddGuest(3, "vm9", None),
        AddGuest(5, "vm5", "52:54:00:00:00:05"), Adopt(), SyncPort(PORT), SyncPort(3),
        SyncPort(5)]
    assert (model.guests, model.by_mac) == (before.guests, before.by_mac)
    # the guest's port is now the uplink: parked; a new station MAC: announced
    now = {UPLINK: Port(UPLINK, "eth9", STATION), PORT: Port(PORT, "wlan0", "02:AA:00:00:00:01")}
    assert lifecycle.connected(model, now, config, tel) == [
        SetUplink(PORT, "02:aa:00:00:00:01"), Park(PORT), Park(3), Park(4),
        AddGuest(UPLINK, "eth9", None), Adopt(), SyncPort(UPLINK), Announce()]
    assert counters["station.mac_changes"] == 1


def test_a_port_gone_drops_its_guest_or_the_uplink():
    _, model, _ = policy()
    tel, _ = telemetry()
    config = CoreConfig(uplink="wlan0")
    left = ports()
    guest = left.pop(PORT)
    assert lifecycle.port_gone(model, left, guest, config, tel) == [DropGuest(PORT)]
    uplink = left.pop(UPLINK)
    assert lifecycle.port_gone(model, left, uplink, config, tel) == [SetUplink(None, None)]
    assert set(model.guests) == {PORT} and model.uplink == UPLINK


def test_malformed_frames_and_unknown_ports_are_only_counted():
    pol, model, counters = policy()
    for _ in range(2):
        assert pol.packet_in(PORT, b"\x00" * 10, NOW) == []
        assert pol.packet_in(7, data_of(arp_request(GUEST, "192.168.1.50", "192.168.1.50")),
                             NOW) == []
    assert counters == {"malformed.truncated": 2, "packet_in.unknown_port": 2}
    assert model.bindings == {} and set(model.guests) == {PORT}


def test_packet_ins_are_counted_by_kind():
    pol, _, counters = policy()
    for _ in range(2):
        pol.packet_in(PORT, discover(GUEST, 5), NOW)
        pol.packet_in(PORT, data_of(arp_request(GUEST, "192.168.1.50", "192.168.1.50")), NOW)
        pol.packet_in(UPLINK, ack(GUEST, 5, "192.168.1.60"), NOW)
        pol.packet_in(PORT, data_of(icmp_echo(GUEST, STATION, "192.168.1.51", "192.168.1.1")),
                      NOW)
        pol.packet_in(PORT, bytes.fromhex("ffffffffffff" + GUEST.replace(":", "") + "88b5")
                      + bytes(46), NOW)  # another ethertype
    assert (counters["packet_in.dhcp"], counters["packet_in.arp"],
            counters["packet_in.ipv4"], counters["packet_in.other"]) == (4, 2, 2, 2)


def test_probes_sender_mismatches_and_lan_arp_are_told_apart():
    pol, _, counters = policy()
    probe = data_of(arp_request(GUEST, "0.0.0.0", "192.168.1.50"))
    forged = bytes.fromhex("ffffffffffff" + GUEST.replace(":", "") + "0806") + data_of(
        arp_request("52:54:00:99:99:99", "192.168.1.50", "192.168.1.50"))[14:]
    lan = data_of(arp_request("02:aa:00:00:00:01", "192.168.1.1", "192.168.1.99"))
    for _ in range(2):
        assert pol.packet_in(PORT, probe, NOW) == []
        assert pol.packet_in(PORT, forged, NOW) == []
        assert pol.packet_in(UPLINK, lan, NOW) == []
    assert counters["arp.probes"] == 2 and counters["refused.arp-sha-mismatch"] == 2
    assert counters["packet_in.uplink_other"] == 2
    assert not [name for name in counters if name.startswith("refused.")
                and name != "refused.arp-sha-mismatch"]
