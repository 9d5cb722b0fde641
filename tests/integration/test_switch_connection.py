"""How `wlbridge run` finds its bridge (issue 13 item 3, issue 15 item 5): the bridge
listens and the controller connects; a missing bridge is a one-line refusal after a
timeout; a bridge set up with the old active target is waited for with a message naming
it, and `wlbridge setup` again switches it to the passive target."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from harness import CLI, free_port, wait_for, wlbridge

from topologies.ovs import vsctl

pytestmark = pytest.mark.integration


def test_run_without_the_bridge_refuses_in_one_line(wl_prefix, tmp_path):
    bridge = f"{wl_prefix}-nobr"
    started = time.monotonic()
    res = subprocess.run(CLI + ["run", "--bridge", bridge, "--uplink", "lo",
                                "--bridge-timeout", "1", "--state-dir", str(tmp_path),
                                "--status-port", "0", "--listen-port", str(free_port())],
                         capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - started
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert f"bridge {bridge} does not exist in Open vSwitch" in last, res.stderr
    assert "wlbridge setup" in last
    assert f"waiting up to 1s for bridge {bridge}" in res.stderr   # it said what it waits for
    assert not list(tmp_path.iterdir()), "no state file may be written"
    print(f"refused after {took:.1f}s")


def test_old_active_target_is_named_and_setup_again_switches_to_passive(make_world,
                                                                        wlbridge_on):
    world = make_world(n_guests=1)
    wl = wlbridge_on(world, start=False)
    other = free_port()
    # a bridge set up before: the bridge connects to a controller port, not ours
    vsctl("set-controller", wl.bridge, f"tcp:127.0.0.1:{other}")
    wl.proc = subprocess.Popen(
        CLI + ["run", "--bridge", wl.bridge, "--listen-port", str(wl.of_port), "--state-dir",
               str(wl.state_dir), "--status-port", str(wl.status_port)],
        stdout=open(wl.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    wait_for(lambda: "waiting for bridge" in wl.logs(), timeout=20, what="the wait message")
    line = next(ln for ln in wl.logs().splitlines() if "waiting for bridge" in ln)
    assert f"waiting for bridge {wl.bridge} to connect to 127.0.0.1:{wl.of_port}" in line
    assert f"its controller target is tcp:127.0.0.1:{other}: it will not connect here" in line
    assert not wl.status()["connected"]

    # `wlbridge setup` again: the bridge gets the passive target, the controller connects
    out = wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge, "--datapath",
                   "netdev").stdout
    assert f"was tcp:127.0.0.1:{other}" in out, out
    target = vsctl("get-controller", wl.bridge).strip()
    assert target == f"punix:/var/run/openvswitch/{wl.bridge}.controller"
    wl.stop()
    wl.start()   # waits for the switch to connect
    assert "connected to the bridge at unix:" in wl.logs()
    g1 = world.guests[0]
    assert g1.ping(world.peers[0].addr.split("/")[0], count=2)


def test_a_lost_bridge_connection_is_noticed_and_made_again(make_world, wlbridge_on):
    """The bridge's controller target removed: the controller hears the connection end
    (under os-ken's native threads too), says so in /status, and connects again as soon
    as the bridge listens again (`wlbridge setup` puts the target back)."""
    world = make_world(n_guests=1)
    wl = wlbridge_on(world)
    generation = wl.status()["generation"]
    vsctl("del-controller", wl.bridge)
    wait_for(lambda: not wl.status()["connected"], timeout=10,
             what="the controller to notice the lost connection")
    assert re.search(r"switch [0-9a-f]+ disconnected", wl.logs()), wl.logs()
    wlbridge("setup", "--uplink", world.uplink, "--bridge", wl.bridge, "--datapath", "netdev")
    wait_for(lambda: wl.status()["connected"] and wl.status()["generation"] > generation,
             timeout=10, what="the controller to connect again")
    assert world.guests[0].ping(world.peers[0].addr.split("/")[0], count=2)
