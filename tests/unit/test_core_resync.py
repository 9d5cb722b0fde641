"""Invariants: idempotent batches, reconnect without flush, generations, saved state."""

from __future__ import annotations

import json

import pytest
from flowsnap import without_generation
from ofsim import arp_request, icmp_echo
from rig import LOCAL, ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge import core as core_mod
from wlbridge.core import Core, CoreConfig
from wlbridge.flows import cookies
from wlbridge.flows.pipeline import PipelineError
from wlbridge.model.state import Port, StateFormatError

G1, G2 = 2, 3


def inbound(rig: Rig, addr: str) -> set[int]:
    return rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr)).ports()


def populated() -> Rig:
    rig = Rig()
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    rig.send(G1, arp_request(mac(G1), "10.0.0.40", "10.0.0.40"))
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    return rig


def test_applying_a_batch_twice_changes_nothing():
    rig = populated()
    msgs = rig.core.switch_connected(0xAB, rig.port_list(), rig.now)
    flow_mods = [m for m in msgs if type(m).__name__ == "OFPFlowMod"]
    rig.sw.apply(flow_mods)
    before = rig.sw.snapshot()
    result = rig.sw.apply(flow_mods)
    assert rig.sw.snapshot() == before
    assert not result.added and not result.replaced and not result.deleted


def test_reconnect_yields_same_tables_without_deleting_live_flows():
    rig = populated()
    before = without_generation(rig.sw.snapshot())
    gen = rig.core.generation
    mark = rig.sw.mark()
    rig.connect()
    assert rig.core.generation == gen + 1
    assert without_generation(rig.sw.snapshot()) == before
    assert rig.sw.deleted_keys(mark) == set()
    assert {cookies.decode(f.cookie).generation for f in rig.sw.flows()} == {gen + 1}


def test_reconnect_removes_stale_flows_of_older_generations():
    rig = populated()
    # the controller restarts (from its saved state) while a port vanishes: the switch
    # still has that port's flows
    saved = json.loads(json.dumps(rig.core.export_state()))
    rig.core = Core(rig.config)
    rig.core.restore_state(saved)
    rig.guest_ports.remove(G2)
    rig.sw.remove_port(G2)
    assert [f for f in rig.sw.flows() if cookies.decode(f.cookie).subject == G2]
    rig.connect()
    assert not [f for f in rig.sw.flows() if cookies.decode(f.cookie).subject == G2]
    assert rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G1))).ports() == {G1}


def test_foreign_flows_are_left_alone():
    from wlbridge.compat import ofp, parser

    rig = populated()
    foreign = parser.OFPFlowMod(datapath=None, cookie=0x1234, table_id=60, priority=1,
                                command=ofp.OFPFC_ADD, match=parser.OFPMatch(),
                                instructions=[])
    rig.sw.apply([foreign])
    rig.connect()
    assert [f for f in rig.sw.flows() if f.cookie == 0x1234]


def test_state_round_trip_reprograms_guests_before_they_speak():
    rig = populated()
    saved = json.loads(json.dumps(rig.core.export_state()))
    fresh = Rig(connect=False)
    fresh.core.restore_state(saved)
    fresh.connect()
    assert fresh.core.generation > saved["generation"] % cookies.MAX_GENERATION
    for addr, port in ((ip(G1), G1), ("10.0.0.40", G1), (ip(G2), G2)):
        d = fresh.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, addr))
        assert d.ports() == {port}
    assert fresh.core.guests[G1].mac == mac(G1)
    d = fresh.send(G1, icmp_echo(mac(G1), ROUTER, ip(G1), ROUTER_IP))
    assert d.ports() == {UP} and d.packet_ins == 0


def test_state_with_ports_renumbered_follows_port_names():
    rig = populated()
    saved = rig.core.export_state()
    fresh = Rig(guests=(5, 6), connect=False)
    fresh.core.restore_state(saved)
    # the switch has ports g5/g6 only: the saved g2/g3 records apply to neither
    fresh.connect()
    assert inbound(fresh, ip(G1)) == {LOCAL}
    # g2 comes back under another number: its guest and bindings follow its name
    fresh.guest_ports.append(7)
    fresh.sw.add_port(7, "g2")
    fresh.apply(fresh.core.port_added(Port(7, "g2", "fe:00:00:00:00:07"), fresh.now))
    assert inbound(fresh, ip(G1)) == {7} and inbound(fresh, "10.0.0.40") == {7}
    assert inbound(fresh, ip(G2)) == {LOCAL}


def test_expired_leases_are_not_restored():
    core = Core(CoreConfig(uplink="wlan0"))
    core.restore_state({"version": 1, "generation": 3, "guests": [
        {"name": "g2", "mac": mac(G1), "mac_source": "learned"}], "bindings": [
        {"ip": "10.0.0.9", "port": "g2", "mac": mac(G1), "source": "dhcp", "learned_at": 1,
         "expires": 10.0, "lease": 9},
        {"ip": "10.0.0.8", "port": "g2", "mac": mac(G1), "source": "dhcp", "learned_at": 1,
         "expires": 5000.0, "lease": 4999}]})
    rig = Rig(connect=False)
    rig.core = core
    rig.connect()
    assert inbound(rig, "10.0.0.9") == {LOCAL}
    assert inbound(rig, "10.0.0.8") == {G1}  # the lease still running is restored


@pytest.mark.parametrize("bad", [
    None, [], {"version": 2}, {"version": 1, "guests": [{"name": 1}]},
    {"version": 1, "bindings": [{"ip": "999.1.1.1", "port": "g2", "mac": mac(2),
                                 "source": "arp"}]},
    {"version": 1, "bindings": [{"ip": "10.0.0.1", "port": "g2", "mac": mac(2),
                                 "source": "magic"}]},
])
def test_corrupt_state_is_rejected(bad):
    with pytest.raises(StateFormatError):
        Core().restore_state(bad)


def test_state_file_store_is_atomic_and_moves_corrupt_files_aside(tmp_path):
    from wlbridge.app.persist import StateStore

    store = StateStore(str(tmp_path), "br-wl")
    store.check_writable()
    store.save({"a": 1})
    assert store.load() == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["br-wl.json"]
    store.path.write_text("{not json")
    with pytest.raises(ValueError):
        store.load()
    moved = store.move_aside("test")
    assert moved is not None and moved.exists() and store.load() is None


def test_unwritable_state_dir_is_a_clear_error(tmp_path):
    from wlbridge.app.persist import StateDirError, StateStore

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateDirError, match="not writable"):
        StateStore(str(blocker / "sub"), "br-wl").check_writable()


def test_flow_text_is_readable():
    from wlbridge.flows.flowtext import instruction_texts
    from wlbridge.flows.pipeline import build_add

    rig = populated()
    texts = [" ".join(instruction_texts(build_add(s, 1).instructions))
             for s in rig.core.flow_specs()]
    assert f"set_field:eth_src={STATION} set_field:arp_sha={STATION} output:1" in texts
    assert "output:CONTROLLER goto:switch_local" in texts
    assert "drop" in texts
    assert ("set_field:eth_dst=33:33:00:00:00:00 move:ipv6_dst[0..31]->eth_dst[0..31] "
            "output:ALL") in texts


def test_flows_that_cannot_be_built_leave_the_previous_ones_and_are_retried(monkeypatch):
    """A controller-side error never leaves the bridge flowless: a section whose flow-mods
    cannot be built is not recorded as installed (the next sync builds it again), and the
    reconnection holds back its stale sweep, so the previous generation's flows stay."""
    rig = populated()
    gen = rig.core.generation
    real, failed = core_mod.build_add, []

    def build_once_failing(spec, generation):
        if not failed and spec.subject == 0:  # the first flow of the static section
            failed.append(spec)
            raise PipelineError("injected")
        return real(spec, generation)

    def generations(subject=None):
        return {cookies.decode(f.cookie).generation for f in rig.sw.flows()
                if subject is None or cookies.decode(f.cookie).subject == subject}

    monkeypatch.setattr(core_mod, "build_add", build_once_failing)
    rig.guest_ports.remove(G2)  # a port gone while we were away: its flows are stale
    rig.sw.remove_port(G2)
    rig.connect()
    assert failed and rig.core.counters["errors.internal"] == 1
    rig.core.counters["errors.internal"] = 0
    # the older generation's flows are still there (no sweep): the guest still reachable
    assert generations() == {gen, gen + 1} and generations(G2) == {gen}
    assert inbound(rig, ip(G1)) == {G1}
    # the next full sync (the uplink reported again) builds the section, then sweeps
    rig.apply(rig.core.port_modified(Port(UP, "wlan0", STATION), rig.now))
    assert generations() == {gen + 1} and generations(G2) == set()
    assert inbound(rig, ip(G1)) == {G1}
    assert rig.core.counters["errors.internal"] == 0
