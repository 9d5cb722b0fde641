"""The state file's lifetime (issue 15): a save never holds less than what was known, saves
are atomic even under SIGKILL, a bad file is kept aside and reported, one controller per
bridge, and the listening/liveness options."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ofsim import arp_request, icmp_echo
from rig import ROUTER, ROUTER_IP, STATION, UP, Rig, ip, mac
from wlbridge.app.persist import StateDirError, StateStore
from wlbridge.core import Core
from wlbridge.model.state import parse_persistent

G1, G2 = 2, 3
CONTROLLER = Path(__file__).resolve().parents[2] / "controller"


def populated() -> Rig:
    rig = Rig()
    rig.send(G1, arp_request(mac(G1), ip(G1), ip(G1)))
    rig.send(G2, arp_request(mac(G2), ip(G2), ip(G2)))
    return rig


def saved(core: Core) -> tuple[dict, dict]:
    """(guest MAC by port name, binding port by IP) of what a save would write now."""
    _, guests, bindings = parse_persistent(json.loads(json.dumps(core.export_state())))
    return ({n: g["mac"] for n, g in guests.items()}, {b["ip"]: b["port"] for b in bindings})


def restarted(rig: Rig) -> Core:
    """A new controller process that loaded `rig`'s saved state; the switch not back yet."""
    core = Core(rig.config)
    core.restore_state(json.loads(json.dumps(rig.core.export_state())))
    return core


def test_restored_state_is_saved_again_before_the_switch_connects():
    rig = populated()
    known = saved(rig.core)
    assert known == ({"g2": mac(G1), "g3": mac(G2)}, {ip(G1): "g2", ip(G2): "g3"})
    core = restarted(rig)
    assert saved(core) == known  # stop now: the next start still knows every guest
    again = Core(rig.config)
    again.restore_state(json.loads(json.dumps(core.export_state())))
    assert saved(again) == known


def test_a_guest_whose_port_is_missing_at_connect_stays_saved_until_it_returns():
    rig = populated()
    known = saved(rig.core)
    rig.core = restarted(rig)
    rig.guest_ports.remove(G2)
    rig.sw.remove_port(G2)
    rig.connect()
    assert ip(G2) not in rig.core.bindings
    assert saved(rig.core) == known
    rig.add_port(G2)
    assert rig.core.bindings[ip(G2)].source == "arp"
    assert saved(rig.core) == known  # confirmed: saved once, as a live binding
    d = rig.send(UP, icmp_echo(ROUTER, STATION, ROUTER_IP, ip(G2)))
    assert d.ports() == {G2}


def test_a_waiting_dhcp_binding_is_dropped_when_its_lease_ends():
    rig = populated()
    core = restarted(rig)
    core.restore_state({"version": 1, "generation": 1, "guests": [], "bindings": [
        {"ip": "10.0.0.99", "port": "g9", "mac": mac(9), "source": "dhcp", "learned_at": 1.0,
         "expires": rig.now + 60, "lease": 120}]})
    assert core.next_due() == rig.now + 60  # the shell ticks then, not a minute late
    core.tick(rig.now + 30)
    assert "10.0.0.99" in saved(core)[1]
    core.take_dirty()
    core.tick(rig.now + 61)
    assert core.dirty and "10.0.0.99" not in saved(core)[1]


def test_status_lists_unconfirmed_guests_while_the_switch_is_away():
    rig = populated()
    core = restarted(rig)
    snap = core.status(rig.now)
    assert not snap["connected"]
    listed = {g["port"]: g for g in snap["guests"]}
    assert set(listed) == {"g2", "g3"}
    assert all(not g["confirmed"] and g["port_no"] is None for g in listed.values())
    assert [b["ip"] for b in listed["g2"]["ips"]] == [ip(G1)]
    assert listed["g2"]["ips"][0]["source"] == "arp" and listed["g2"]["mac"] == mac(G1)
    rig.core = core
    rig.connect()
    snap = core.status(rig.now)
    assert [(g["port"], g["confirmed"]) for g in snap["guests"]] == [("g2", True), ("g3", True)]


def test_metrics_count_confirmed_guests_and_unconfirmed_bindings_apart():
    from prometheus_client import CollectorRegistry, generate_latest
    from wlbridge.app.status_server import MetricsCollector

    rig = populated()
    core = restarted(rig)
    registry = CollectorRegistry()
    registry.register(MetricsCollector(lambda: core.status(rig.now)))
    text = generate_latest(registry).decode()
    assert "wlbridge_guests 0.0" in text
    assert "wlbridge_unconfirmed_bindings 2.0" in text
    assert "wlbridge_switch_connected 0.0" in text


# ------------------------------------------------------------------ the file itself
def test_a_corrupt_state_file_is_kept_aside_and_reported(tmp_path):
    store = StateStore(str(tmp_path), "br-wl")
    store.check_writable()
    store.path.write_text('{"version": 1, "guests": [')  # truncated
    with pytest.raises(ValueError):
        store.load()
    moved = store.move_aside("truncated")
    assert moved.read_text() == '{"version": 1, "guests": ['
    assert store.load() is None
    assert store.report() == {"path": str(store.path),
                              "problem": {"error": "truncated", "moved_to": str(moved)}}
    store.path.write_text("garbage")
    second = store.move_aside("again")
    assert second != moved and moved.exists() and second.exists()


def test_a_corrupt_state_file_that_cannot_be_moved_is_a_startup_error(tmp_path,
                                                                       monkeypatch):
    store = StateStore(str(tmp_path), "br-wl")
    store.path.write_text("garbage")

    def refuse(*_args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StateDirError, match="cannot be moved aside"):
        store.move_aside("bad")
    assert store.path.read_text() == "garbage"


SAVER = r"""
import sys
from wlbridge.app.persist import StateStore
store = StateStore(sys.argv[1], "br-wl")
n = 0
print("ready", flush=True)
while True:
    n += 1
    # big enough that a write takes a while: a kill lands inside a save, not between two
    store.save({"n": n, "pad": [n] * 200000})
"""


def test_saves_killed_with_sigkill_leave_the_old_or_the_new_state(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{CONTROLLER}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    rnd = random.Random(15)
    seen = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path)], env=env,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rnd.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        data = json.loads((tmp_path / "br-wl.json").read_text())  # always complete
        assert data["pad"] == [data["n"]] * 200000
        seen.add(data["n"])
    assert len(seen) > 1  # the kills landed after various saves
    # leftover temporary files are never taken for the state
    assert StateStore(str(tmp_path), "br-wl").load()["n"] in seen


# ------------------------------------------------------------------ one controller per bridge
def test_a_second_instance_lock_names_the_running_one(tmp_path):
    from wlbridge.app.instance_lock import InstanceError, InstanceLock

    first = InstanceLock(tmp_path / "state", "br-x", run_dir=tmp_path / "run")
    first.acquire()
    other_state = InstanceLock(tmp_path / "other", "br-x", run_dir=tmp_path / "run")
    with pytest.raises(InstanceError, match=rf"pid {os.getpid()}\) is already running for "
                                            rf"bridge br-x"):
        other_state.acquire()  # another state directory, the same bridge
    same_state = InstanceLock(tmp_path / "state", "br-x", run_dir=None)
    with pytest.raises(InstanceError, match="br-x.lock"):
        same_state.acquire()
    InstanceLock(tmp_path / "state", "br-y", run_dir=tmp_path / "run").acquire()  # others: fine
    first.release()
    other_state.acquire()
    other_state.release()


def test_the_lock_goes_with_a_killed_process(tmp_path):
    from wlbridge.app.instance_lock import InstanceLock

    code = ("import sys, time; from wlbridge.app.instance_lock import InstanceLock; "
            "InstanceLock(sys.argv[1], 'br-z', run_dir=None).acquire(); print('locked', "
            "flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(CONTROLLER)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(Exception, match=f"pid {proc.pid}"):
            InstanceLock(tmp_path, "br-z", run_dir=None).acquire()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    InstanceLock(tmp_path, "br-z", run_dir=None).acquire()
