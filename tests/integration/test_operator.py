"""What a user types: setup -> run -> status -> flows -> teardown, config files, the demo."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from harness import CLI, free_port, wait_for, wlbridge
from pyroute2 import IPRoute


def host_view(ifname: str) -> dict:
    """Addresses, routes and flags of one root-namespace interface, comparable."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        link = ipr.get_links(idx)[0]
        addrs = sorted((a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx)
                       if not str(a.get("IFA_ADDRESS")).startswith("fe80"))
        routes = sorted((r.get("RTA_DST"), r["dst_len"], r.get("RTA_GATEWAY"),
                         r.get("RTA_PRIORITY"))
                        for r in ipr.get_routes(oif=idx, table=254))
        return {"addrs": addrs, "routes": routes, "flags": link["flags"],
                "mac": link.get("IFLA_ADDRESS")}


def bridges() -> list[str]:
    return subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_full_cycle_leaves_the_host_as_it_was(make_world, wlbridge_on):
    world = make_world(n_guests=2)
    g1, g2 = world.guests
    peer = world.peers[0]
    before = host_view(world.uplink)
    wl = wlbridge_on(world)
    assert wl.bridge in bridges()
    assert host_view(world.uplink)["addrs"] == []
    assert g1.ping(peer.ip) and peer.ping(g1.ip) and g2.ping(peer.ip)
    url = f"http://127.0.0.1:{wl.status_port}"

    text = wlbridge("status", "--url", url).stdout
    assert g1.port in text and g1.ip in text and "arp" in text, text
    snap = json.loads(wlbridge("status", "--json", "--url", url).stdout)
    assert snap["connected"] and snap["uplink"]["name"] == world.uplink
    guest = next(g for g in snap["guests"] if g["port"] == g1.port)
    assert guest["mac"] == g1.mac and guest["ips"][0]["ip"] == g1.ip

    flows = wlbridge("flows", "--url", url).stdout
    assert "[reflect]" in flows and "[guest_ip port" in flows, flows
    groups = json.loads(wlbridge("flows", "--json", "--url", url).stdout)
    assert "uplink_out" in groups and "pipeline" in groups
    with urllib.request.urlopen(f"{url}/metrics", timeout=3) as resp:
        metrics = resp.read().decode()
    assert 'wlbridge_events_total{event="guests.mac_learned"}' in metrics, metrics
    assert "wlbridge_switch_connected 1.0" in metrics

    # which bridge answered; another bridge's controller is refused in one line
    text = wlbridge("status", "--url", url, "--bridge", wl.bridge).stdout
    assert text.split()[:2] == ["bridge", wl.bridge], text
    assert wlbridge("flows", "--url", url).stdout.startswith(f"bridge {wl.bridge}:")
    for command in ("status", "flows"):
        res = wlbridge(command, "--url", url, "--bridge", "br-other", check=False)
        assert_refused(res, f"serves bridge {wl.bridge}, not br-other")

    # teardown refuses while the controller runs, and changes nothing
    res = wlbridge("teardown", "--bridge", wl.bridge, check=False)
    assert_refused(res, "still running")
    assert wl.bridge in bridges() and wl.status()["connected"]

    assert wl.stop() == 0
    res = wlbridge("teardown", "--bridge", wl.bridge, "--state-dir", str(wl.state_dir))
    wl.is_set_up = False
    state_file = wl.state_dir / f"{wl.bridge}.json"
    assert f"state file {state_file} kept" in res.stdout and state_file.exists(), res.stdout
    assert wl.bridge not in bridges()
    assert host_view(world.uplink) == before
    # teardown again: nothing to do, still success; --remove-state forgets the guests
    res = wlbridge("teardown", "--bridge", wl.bridge, "--state-dir", str(wl.state_dir),
                   "--remove-state")
    assert "nothing to do" in (res.stdout + res.stderr).lower()
    assert f"removed state file {state_file}" in res.stdout and not state_file.exists()


def assert_refused(res: subprocess.CompletedProcess, what: str) -> None:
    """A refusal: exit 2, one line on stderr saying `what`, no traceback."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and what in lines[0], res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_status_without_controller_says_so(tmp_path):
    res = wlbridge("status", "--url", f"http://127.0.0.1:{free_port()}", check=False)
    assert res.returncode == 2
    assert "not running" in res.stderr


def test_run_reads_an_ini_file(make_world, wlbridge_on, tmp_path):
    world = make_world(n_guests=1)
    wl = wlbridge_on(world, start=False)
    status_port = free_port()
    ini = tmp_path / "wlbridge.ini"
    ini.write_text(f"[wlbridge]\nbridge = {wl.bridge}\nuplink = {world.uplink}\n"
                   f"state_dir = {tmp_path / 'state'}\nstatus_port = {status_port}\n"
                   f"dhcp_mode = client-id\nidle_timeout = 120\n")
    proc = subprocess.Popen(CLI + ["run", "--config-file", str(ini), "--listen-port",
                                   str(wl.of_port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wl.status_port = status_port
        snap = wait_for(lambda: _try_status(wl), timeout=20, what="controller via ini")
        assert snap["dhcp_mode"] == "client-id" and snap["bridge"] == wl.bridge
        assert world.guests[0].ping(world.peers[0].ip)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def _try_status(wl):
    try:
        snap = wl.status()
    except OSError:
        return None
    return snap if snap.get("connected") else None


def test_bad_config_is_refused_clearly(tmp_path):
    ini = tmp_path / "bad.ini"
    ini.write_text("[wlbridge]\ndhcp_mode = sometimes\n")
    res = wlbridge("run", "--config-file", str(ini), "--state-dir", str(tmp_path), check=False)
    assert res.returncode == 2 and "dhcp_mode" in res.stderr, res.stderr
    res = wlbridge("run", "--config-file", str(tmp_path / "missing.ini"), check=False)
    assert res.returncode == 2 and "not found" in res.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = wlbridge("run", "--uplink", "x", "--state-dir", str(blocker / "sub"), check=False)
    assert res.returncode == 2 and "not writable" in res.stderr, res.stderr


def test_demo_shows_the_plain_bridge_failing_then_wlbridge_working():
    res = subprocess.run(CLI + ["demo", "--guests", "5"], capture_output=True, text=True,
                         timeout=180, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    before, _, after = res.stdout.partition("wlbridge setup")
    assert "plain Open vSwitch bridge" in before and "NO LEASE" in before, res.stdout
    assert "NO LEASE" not in after and "demo OK" in after, res.stdout
    leases = [line for line in after.splitlines() if "-> 10.231." in line]
    assert len(leases) == 5, res.stdout  # all five guests, none quietly left out
    assert "frames the AP dropped for a foreign MAC since wlbridge runs: 0" in res.stdout
    assert not [b for b in bridges() if b.startswith("wldemo")]

