"""The controller process around the data path (issue 15): its state file's lifetime, one
controller per bridge, noticing a lost switch, and where it listens (`wlbridge run`; the
same under ryu-manager is in test_ryu_manager.py)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

from harness import CLI, free_port, wait_for, wlbridge
from tls_pki import assert_tls_listener, make_pki
from wlbridge.flows import cookies

from topologies.ovs import ofctl, vsctl


def ip_of(host) -> str:
    return host.addr.split("/")[0]


def state_file(wl) -> Path:
    return wl.state_dir / f"{wl.bridge}.json"


def saved_ips(wl) -> set[str]:
    try:
        data = json.loads(state_file(wl).read_text())
    except (OSError, ValueError):
        return set()
    return {b["ip"] for b in data.get("bindings", [])}


def flow_generations(wl) -> set[int]:
    """The generations of wlbridge's flows on the bridge (from their cookies)."""
    found = (cookies.decode(int(c, 16)) for c in re.findall(r"cookie=(0x[0-9a-f]+)", wl.flows()))
    return {c.generation for c in found if c is not None}


def set_target(bridge: str, target: str) -> None:
    """Point the bridge's Controller record elsewhere, keeping its other settings."""
    uuid = vsctl("get", "Bridge", bridge, "controller").strip("[] \n")
    vsctl("set", "Controller", uuid, f'target="{target}"')


def learned(world, wl, guest) -> dict:
    assert guest.ping(ip_of(world.peers[0]), count=2), wl.logs()
    binding = wl.wait_bound(ip_of(guest), guest.port)
    wait_for(lambda: ip_of(guest) in saved_ips(wl), timeout=5, what="the state file")
    return binding


def metric(wl, name: str) -> float | None:
    url = f"http://127.0.0.1:{wl.status_port}/metrics"
    with urllib.request.urlopen(url, timeout=3) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def refusal(res: subprocess.CompletedProcess) -> str:
    """The one line a refused `wlbridge run` printed (after any log lines)."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("wlbridge run: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def status_or_none(wl) -> dict | None:
    try:
        return wl.status()
    except OSError:
        return None


def listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


# ---------------------------------------------------------------- state lifetime
def test_stopped_before_the_switch_reconnects_the_guests_are_kept(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    # IPv4 only: a late MLD report of the guest would bind its link-local address too
    g1.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=True)
    wl = wlbridge_on(world)
    before = learned(world, wl, g1)
    wl.stop()
    # the switch looks for its controller elsewhere (or still backs off): it never connects
    set_target(wl.bridge, f"tcp:127.0.0.1:{free_port()}")
    wl.start(wait=False)
    snap = wait_for(lambda: status_or_none(wl), timeout=20, what="the status endpoint")
    assert not snap["connected"]
    waiting = {g["port"]: g for g in snap["guests"]}
    assert not waiting[g1.port]["confirmed"], snap
    assert [b["ip"] for b in waiting[g1.port]["ips"]] == [ip_of(g1)]
    assert metric(wl, "wlbridge_unconfirmed_bindings") == 1
    assert wl.stop() == 0
    assert ip_of(g1) in saved_ips(wl), state_file(wl).read_text()  # not an empty list

    set_target(wl.bridge, f"tcp:127.0.0.1:{wl.of_port}")
    wl.start()
    after = wl.bound(ip_of(g1))
    assert after is not None and after["learned_at"] == before["learned_at"]
    status = wl.status()
    assert [g["confirmed"] for g in status["guests"]] == [True]
    assert status["counters"].get("bindings.restored") == 1, status["counters"]
    assert peer.ping(ip_of(g1), count=2)


def test_a_second_controller_refuses_and_changes_nothing(make_world, wlbridge_on, tmp_path):
    world = make_world(n_guests=1)
    g1 = world.guests[0]
    # IPv4 only: the guest's IPv6 start-up (DAD, MLD reports) would change the state file
    # in the background, and the point is that the second controller changes nothing
    g1.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=True)
    wl = wlbridge_on(world)
    learned(world, wl, g1)
    saved = state_file(wl).read_bytes()
    assert listening(wl.of_port) == {"127.0.0.1"}  # loopback by default

    def run(*args: str) -> str:
        return refusal(wlbridge("run", *args, check=False, timeout=30))

    # the same bridge and state directory (the status port differs)
    line = run("--bridge", wl.bridge, "--listen-port", str(free_port()), "--state-dir",
               str(wl.state_dir), "--status-port", str(free_port()))
    assert f"(pid {wl.proc.pid}) is already running for bridge {wl.bridge}" in line, line
    # the same bridge, another state directory
    line = run("--bridge", wl.bridge, "--listen-port", str(free_port()), "--state-dir",
               str(tmp_path / "other"), "--status-port", str(free_port()))
    assert "already running" in line, line
    # another bridge on the same OpenFlow port
    other = ("--bridge", f"{world.prefix}-zz", "--uplink", world.uplink, "--state-dir",
             str(tmp_path / "zz"))
    line = run(*other, "--listen-port", str(wl.of_port), "--status-port", str(free_port()))
    assert f"OpenFlow port 127.0.0.1:{wl.of_port} is in use" in line, line
    # ... or on the same status port
    line = run(*other, "--listen-port", str(free_port()), "--status-port", str(wl.status_port))
    assert f"127.0.0.1:{wl.status_port}" in line and "status" in line, line
    assert not (tmp_path / "zz" / f"{world.prefix}-zz.json").exists()

    assert state_file(wl).read_bytes() == saved
    assert wl.status()["connected"] and wl.bound(ip_of(g1))
    assert wl.stop() == 0
    assert ip_of(g1) in saved_ips(wl)


def test_a_corrupt_state_file_is_kept_aside_and_reported(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    wl = wlbridge_on(world, start=False)
    wl.state_dir.mkdir(parents=True)
    state_file(wl).write_text('{"version": 1, "guests": [{"name": "x", "ma')  # truncated
    wl.start()
    problem = wl.status()["state_file"]["problem"]
    assert problem and "not valid JSON" in problem["error"], problem
    kept = Path(problem["moved_to"])
    assert kept.read_text().endswith('"ma') and kept.parent == wl.state_dir
    assert f"kept as {kept}" in wl.logs()
    learned(world, wl, world.guests[0])  # and the controller works with a new file


# ---------------------------------------------------------------- liveness
def test_a_lost_switch_is_noticed_and_a_reconnect_resyncs(make_world, wlbridge_on):
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world)
    learned(world, wl, g1)
    generation = wl.status()["generation"]
    target = vsctl("get", "Controller", vsctl("get", "Bridge", wl.bridge, "controller")
                   .strip("[] \n"), "target").strip().strip('"')

    vsctl("del-controller", wl.bridge)
    wait_for(lambda: not wl.status()["connected"], timeout=15, interval=0.2,
             what="status to show the switch disconnected")
    assert metric(wl, "wlbridge_switch_connected") == 0
    assert "disconnected" in wl.logs()
    # a flow of the old generation the new one will not install again: the sweep's to delete
    stale = cookies.make(cookies.Purpose.GUEST_MAC, generation)
    ofctl("-O", "OpenFlow13", "add-flow", wl.bridge,
          f"cookie={stale:#x},table=0,priority=1,dl_src=02:57:4c:00:00:01,actions=drop")
    assert generation in flow_generations(wl)

    vsctl("--", "--id=@c", "create", "Controller", f'target="{target}"', "max_backoff=1000",
          "--", "set", "Bridge", wl.bridge, "controller=@c")
    wait_for(lambda: wl.status()["connected"] and wl.status()["generation"] > generation,
             timeout=20, what="the switch to reconnect")
    # the resync's own flow-statistics reply (matched by xid, issue 14) swept the old flows
    new = wl.status()["generation"]
    wait_for(lambda: flow_generations(wl) == {new}, timeout=10,
             what=f"only generation {new} flows left")
    assert wl.bound(ip_of(g1))["source"] == "arp"
    assert metric(wl, "wlbridge_switch_connected") == 1
    assert peer.ping(ip_of(g1), count=2) and g1.ping(ip_of(peer), count=2)

    vsctl("del-br", wl.bridge)
    wait_for(lambda: not wl.status()["connected"], timeout=15, interval=0.2,
             what="status to show the deleted bridge disconnected")
    assert metric(wl, "wlbridge_switch_connected") == 0
    assert wl.proc.poll() is None


# ---------------------------------------------------------------- listening
def empty_bridge(name: str) -> None:
    """A bridge with no ports and no controller target (removed with the test's prefix):
    `wlbridge run` waits for its bridge to exist, then only listens."""
    vsctl("--may-exist", "add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev")


def standalone(tmp_path: Path, name: str, *args: str, config: str = "") -> list[str]:
    """`wlbridge run` for an empty bridge that has no controller target: it only listens."""
    empty_bridge(name)
    cmd = CLI + ["-v", "run", "--bridge", name, "--uplink", "lo", "--state-dir",
                 str(tmp_path / "state"), "--status-port", str(free_port()), *args]
    if config:
        (tmp_path / "wl.ini").write_text(config)
        cmd += ["--config-file", str(tmp_path / "wl.ini")]
    return cmd


def test_a_non_loopback_listen_host_needs_tls_or_insecure_listen(wl_prefix, tmp_path):
    port = free_port()
    res = subprocess.run(standalone(tmp_path, f"{wl_prefix}-ls", "--listen-host", "0.0.0.0",
                                    "--listen-port", str(port)),
                         capture_output=True, text=True, timeout=30, check=False)
    assert "refusing to listen for OpenFlow on 0.0.0.0 without TLS" in refusal(res)
    assert not (tmp_path / "state" / f"{wl_prefix}-ls.json").exists()

    log = tmp_path / "insecure.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(standalone(tmp_path, f"{wl_prefix}-ls", "--listen-host",
                                           "0.0.0.0", "--listen-port", str(port),
                                           "--insecure-listen"),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(port) == {"0.0.0.0"}, timeout=20,
                 what="the insecure listener")
        assert "without TLS (insecure_listen)" in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_tls_listener_speaks_openflow_to_a_switch_with_a_certificate(wl_prefix, tmp_path):
    pki = make_pki(tmp_path)
    port = free_port()
    config = ("[wlbridge]\n"
              f"tls_private_key = {pki['ctl-key']}\ntls_certificate = {pki['ctl']}\n"
              f"tls_ca_cert = {pki['ca']}\n")
    log = tmp_path / "tls.log"
    with open(log, "wb") as out:  # not loopback: allowed, as it is TLS
        proc = subprocess.Popen(standalone(tmp_path, f"{wl_prefix}-tl", "--listen-host",
                                           "0.0.0.0", "--listen-port", str(port),
                                           config=config),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(port) == {"0.0.0.0"}, timeout=20, what="the TLS listener")
        assert f"OpenFlow ssl:0.0.0.0:{port}" in log.read_text()
        assert_tls_listener(port, pki)
        assert proc.poll() is None
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


# ---------------------------------------------------------------- a hung switch
T_HELLO, T_ECHO_REQ, T_ECHO_REP, T_FEATURES_REQ, T_FEATURES_REP = 0, 2, 3, 5, 6
T_MP_REQ, T_MP_REP, T_BARRIER_REQ, T_BARRIER_REP = 18, 19, 20, 21
MP_PORT_DESC, OFPP_LOCAL = 13, 0xFFFFFFFE


class HangingSwitch:
    """Just enough of an OpenFlow 1.3 switch (handshake, port list, echo replies) that can
    hang: stop reading and answering while keeping its connection open, as a stuck
    ovs-vswitchd or a lost network path would."""

    def __init__(self, port: int, bridge: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=0.1)
        self.buf = bytearray()
        self.echoes = 0
        mac = bytes.fromhex("025a00000001")
        self.ports = b"".join(
            struct.pack("!I4x6s2x16sIIIIIIII", no, mac, name.encode(), 0, 4, 0, 0, 0, 0, 0, 0)
            for no, name in ((OFPP_LOCAL, bridge), (1, "lo")))
        self.send(T_HELLO, b"", 1)

    def send(self, msg_type: int, body: bytes, xid: int) -> None:
        self.sock.sendall(struct.pack("!BBHI", 4, msg_type, 8 + len(body), xid) + body)

    def pump(self, seconds: float) -> None:
        """Answer the controller for a while."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.buf += self.sock.recv(65536)
            except TimeoutError:
                continue
            while len(self.buf) >= 8:
                _v, msg_type, length, xid = struct.unpack_from("!BBHI", self.buf)
                if len(self.buf) < length:
                    break
                body = bytes(self.buf[8:length])
                del self.buf[:length]
                if msg_type == T_FEATURES_REQ:
                    self.send(T_FEATURES_REP, struct.pack("!QIBB2xII", 0x5157, 0, 254, 0, 0, 0),
                              xid)
                elif msg_type == T_ECHO_REQ:
                    self.echoes += 1
                    self.send(T_ECHO_REP, body, xid)
                elif msg_type == T_BARRIER_REQ:
                    self.send(T_BARRIER_REP, b"", xid)
                elif msg_type == T_MP_REQ:
                    (mp_type,) = struct.unpack_from("!H", body)
                    payload = self.ports if mp_type == MP_PORT_DESC else b""
                    self.send(T_MP_REP, struct.pack("!HH4x", mp_type, 0) + payload, xid)


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@contextlib.contextmanager
def standalone_controller(bridge: str, tmp_path: Path, echo_interval: float,
                          echo_timeout: float):
    """`wlbridge -v run` on an empty bridge (a stand-in switch plays its part) with these
    liveness settings: ``(proc, port, status)`` once it listens and serves status; stopped
    after, and it must exit cleanly."""
    port, status_port = free_port(), free_port()
    conf = tmp_path / "wl.ini"
    conf.write_text(f"[wlbridge]\necho_interval = {echo_interval}\n"
                    f"echo_timeout = {echo_timeout}\nmeters = false\n")
    empty_bridge(bridge)  # the bridge must exist
    log = tmp_path / "controller.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(CLI + ["-v", "run", "--bridge", bridge, "--uplink", "lo",
                                       "--listen-port", str(port), "--state-dir",
                                       str(tmp_path / "state"), "--status-port",
                                       str(status_port), "--config-file", str(conf)],
                                stdout=out, stderr=subprocess.STDOUT)

    def status() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status",
                                        timeout=2) as resp:
                return json.load(resp)
        except OSError:
            return None

    try:
        wait_for(lambda: status() and listening(port), timeout=20, what="the controller")
        yield proc, port, status, log
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0, log.read_text()[-3000:]


def test_a_hung_switch_is_noticed_after_the_echo_timeout(wl_prefix, tmp_path):
    """A stand-in switch answers echo requests (the connection stays up), then
    hangs with its connection open; the controller declares it gone after echo_timeout and
    ends the connection's threads (os-ken's native threads wait for each other)."""
    bridge = f"{wl_prefix}-hs"
    with standalone_controller(bridge, tmp_path, 0.5, 1.5) as (proc, port, status, log):
        idle = threads(proc.pid)
        switch = HangingSwitch(port, bridge)
        switch.pump(1.0)
        assert status()["connected"], log.read_text()
        switch.pump(3.0)  # twice the echo timeout: answered echo requests keep it up
        assert switch.echoes >= 4 and status()["connected"], log.read_text()
        # hung: nothing read, nothing answered, the connection open
        wait_for(lambda: not status()["connected"], timeout=10, interval=0.1,
                 what="the hung switch to be noticed")
        assert "disconnected (connection closed, or no echo reply for 1.5s)" in log.read_text()
        # the connection's receive, send and echo threads all end
        wait_for(lambda: threads(proc.pid) <= idle, timeout=15, interval=0.2,
                 what=f"the connection's threads to end ({threads(proc.pid)} > {idle})")
        switch.sock.close()


def test_a_switch_that_hangs_in_the_handshake_is_given_up(wl_prefix, tmp_path):
    """A stand-in switch connects and says hello, then answers nothing (no features reply):
    `Liveness` is not watching it yet, but after echo_timeout the controller closes the
    connection (so that the switch or the connector can start again) and its threads end."""
    bridge = f"{wl_prefix}-hh"
    with standalone_controller(bridge, tmp_path, 0.5, 1.5) as (proc, port, status, log):
        idle = threads(proc.pid)
        switch = HangingSwitch(port, bridge)     # its hello sent; it never reads again
        switch.sock.settimeout(0.1)

        def closed_by_controller() -> bool:
            try:
                return switch.sock.recv(65536) == b""
            except TimeoutError:
                return False
        # noticed after 1.5 s of silence (the framework's own socket timeout is 5 s)
        wait_for(closed_by_controller, timeout=4.5, interval=0, what="the connection closed")
        assert "did not complete the OpenFlow handshake within 1.5s" in log.read_text()
        assert not status()["connected"]
        wait_for(lambda: threads(proc.pid) <= idle, timeout=15, interval=0.2,
                 what=f"the connection's threads to end ({threads(proc.pid)} > {idle})")
        switch.sock.close()


def test_a_switch_that_connected_to_the_listener_and_closes_is_noticed_at_once(wl_prefix,
                                                                             tmp_path):
    """A bridge with an active target connects to the controller's listener; when it closes
    the connection the controller notices at once (not after echo_timeout), and the
    connection's threads end (os-ken's send thread is woken: nothing else would)."""
    bridge = f"{wl_prefix}-cl"
    with standalone_controller(bridge, tmp_path, 20, 30) as (proc, port, status, log):
        idle = threads(proc.pid)
        switch = HangingSwitch(port, bridge)
        switch.pump(1.0)
        assert status()["connected"], log.read_text()
        switch.sock.close()
        wait_for(lambda: not status()["connected"], timeout=5, interval=0.1,
                 what="the closed connection to be noticed")
        wait_for(lambda: threads(proc.pid) <= idle, timeout=10, interval=0.2,
                 what=f"the connection's threads to end ({threads(proc.pid)} > {idle})")


def ssl_record() -> dict[str, str] | None:
    """The Open_vSwitch table's SSL record (global to this OVS), or None."""
    if vsctl("get", "Open_vSwitch", ".", "ssl").strip() == "[]":
        return None
    return {col: vsctl("get", "SSL", vsctl("get", "Open_vSwitch", ".", "ssl").strip(),
                       col).strip().strip('"')
            for col in ("private_key", "certificate", "ca_cert", "bootstrap_ca_cert")}


def restore_ssl(record: dict[str, str] | None) -> None:
    if record is None:
        vsctl("del-ssl")
    else:
        vsctl(*(["--bootstrap"] if record["bootstrap_ca_cert"] == "true" else []), "set-ssl",
              record["private_key"], record["certificate"], record["ca_cert"])


def test_ovs_connects_over_tls(make_world, wlbridge_on, tmp_path):
    """The switch side as `ovs-vsctl set-ssl` configures it, the controller with TLS on a
    non-loopback listen address.  set-ssl is global to the OVS instance: the previous SSL
    record is put back afterwards (only ssl: connections use it)."""
    pki = make_pki(tmp_path)
    conf = tmp_path / "tls.ini"
    conf.write_text("[wlbridge]\n"
                    f"tls_private_key = {pki['ctl-key']}\ntls_certificate = {pki['ctl']}\n"
                    f"tls_ca_cert = {pki['ca']}\n")
    world = make_world(n_guests=1)
    g1, peer = world.guests[0], world.peers[0]
    wl = wlbridge_on(world, start=False,
                     extra=("--config-file", str(conf), "--listen-host", "0.0.0.0"))
    before = ssl_record()
    try:
        vsctl("set-ssl", str(pki["switch-key"]), str(pki["switch"]), str(pki["ca"]))
        set_target(wl.bridge, f"ssl:127.0.0.1:{wl.of_port}")
        wl.start()
        assert f"OpenFlow ssl:0.0.0.0:{wl.of_port}" in wl.logs()
        assert listening(wl.of_port) == {"0.0.0.0"}
        learned(world, wl, g1)
        assert peer.ping(ip_of(g1), count=2)
    finally:
        restore_ssl(before)
    assert ssl_record() == before
