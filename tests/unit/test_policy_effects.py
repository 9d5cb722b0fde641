"""The packet-in policies decide without a `Core`: given a model they return effects and
change nothing themselves (the core applies effects in one place, see `effects`)."""

from __future__ import annotations

import copy
import logging
from collections import Counter

from dhcp_frames import ack
from ofsim import data_of
from ofsim_packets import arp_request
from wlbridge.core import Core, CoreConfig
from wlbridge.dhcp_service import DhcpService
from wlbridge.effects import Bind, Deliver, LearnMac, Refresh, Reinject, Unbind
from wlbridge.learning import PacketInPolicy
from wlbridge.pipeline import PORT_LOCAL
from wlbridge.ratelog import RateLimitedLog
from wlbridge.state import Binding, GuestPort, Model, Port
from wlbridge.telemetry import Telemetry

UPLINK, PORT = 1, 2
STATION = "02:11:22:33:44:55"
GUEST = "52:54:00:12:34:56"
NOW = 1000.0


def policy(guest_mac: str | None = GUEST) -> tuple[PacketInPolicy, Model, Counter]:
    guest = GuestPort(PORT, "vm1", guest_mac)
    model = Model(guests={PORT: guest}, by_mac={guest_mac: guest} if guest_mac else {},
                  uplink=UPLINK, station_mac=STATION)
    counters: Counter = Counter()
    log = logging.getLogger("test.policy")
    tel = Telemetry(counters, log, RateLimitedLog(log, "binding changes"))
    config = CoreConfig()
    return PacketInPolicy(model, config, tel, DhcpService(model, config, tel)), model, counters


def bind_old_lease(model: Model, ip: str) -> None:
    model.bindings[ip] = Binding(ip, PORT, GUEST, "dhcp", NOW - 10, NOW + 100, 3600)
    model.guests[PORT].ips.add(ip)


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
    pol, _, counters = policy()
    spoofed = data_of(arp_request("52:54:00:99:99:99", "192.168.1.50", "192.168.1.50"))
    assert pol.packet_in(PORT, spoofed, NOW) == []
    assert counters["refused.spoofed-mac"] == 1


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
