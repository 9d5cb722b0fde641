"""The switch-connection model (wlbridge.app.switch_link): passive targets, what the controller
says it waits for, the quick reconnect loop, waiting for the bridge to exist."""

from __future__ import annotations

import pytest
from wlbridge.app import switch_link
from wlbridge.app.switch_link import Connector, Endpoint

RUN = "/var/run/openvswitch"


def test_endpoints_of_targets() -> None:
    assert switch_link.endpoint(f"punix:{RUN}/br-wl.controller") == Endpoint(
        "unix", f"{RUN}/br-wl.controller")
    assert switch_link.endpoint("ptcp:6653:127.0.0.1") == Endpoint("tcp", ("127.0.0.1", 6653))
    assert switch_link.endpoint("ptcp:6653:[::1]") == Endpoint("tcp", ("::1", 6653))
    for active in ("tcp:127.0.0.1:6653", "ssl:1.2.3.4:6653", "unix:/x", "pssl:6653", "ptcp:x"):
        assert switch_link.endpoint(active) is None
    assert str(Endpoint("tcp", ("::1", 1))) == "[::1]:1"


def test_default_target_is_the_root_only_unix_socket() -> None:
    assert switch_link.passive_target("br-wl") == f"punix:{RUN}/br-wl.controller"
    assert switch_link.rundir_of("unix:/run/ovs/db.sock") == "/run/ovs"
    assert switch_link.rundir_of("tcp:10.0.0.1:6640") == RUN


@pytest.mark.parametrize(("target", "problem"), [
    ("ptcp:6653", "any host"),                      # every address
    ("ptcp:6653:0.0.0.0", "any host"),
    ("ptcp:6653:192.168.1.5", "any host"),
    ("punix:/tmp/x.sock", "accepts a passive Unix controller target only at"),
    ("http://x", "unknown controller target"),
])
def test_exposed_or_impossible_targets_are_refused(target: str, problem: str) -> None:
    assert problem in switch_link.target_problem(target, "br-wl", RUN)


@pytest.mark.parametrize("target", [f"punix:{RUN}/br-wl.controller", "ptcp:6653:127.0.0.1",
                                    "ptcp:6653:[::1]", "tcp:127.0.0.1:6653", "pssl:6653"])
def test_safe_targets_are_accepted(target: str) -> None:
    assert switch_link.target_problem(target, "br-wl", RUN) is None


def test_wait_messages_name_what_is_waited_for() -> None:
    listen = "127.0.0.1:6653"
    msg = switch_link.wait_message("br-wl", [f"punix:{RUN}/br-wl.controller"], listen)
    assert msg.startswith(f"connecting to bridge br-wl at unix:{RUN}/br-wl.controller")
    msg = switch_link.wait_message("br-wl", ["tcp:127.0.0.1:6653"], listen)
    assert msg.startswith("waiting for bridge br-wl to connect to 127.0.0.1:6653")
    assert "wlbridge setup" in msg
    msg = switch_link.wait_message("br-wl", ["tcp:127.0.0.1:6654"], listen)
    assert "its controller target is tcp:127.0.0.1:6654: it will not connect here" in msg
    assert "no controller target" in switch_link.wait_message("br-wl", [], listen)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def test_connector_retries_quickly_and_reconnects_after_a_lost_connection() -> None:
    clock = FakeClock()
    outcomes = [OSError("refused")] * 3 + ["sock1", "sock2"]
    served: list[object] = []

    class Sock:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            pass

    def connect(ep: Endpoint) -> Sock:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return Sock(item)

    def serve(sock: Sock, address: str) -> None:
        served.append((sock.name, address))
        clock.now += 30.0                   # a long-lived connection, then it ends
        if not outcomes:
            conn.stop()

    conn = Connector(Endpoint("unix", "/x.controller"), serve, clock.sleep, connect=connect,
                     clock=clock, first=0.02, most=1.0)
    conn.run()
    assert served == [("sock1", "unix:/x.controller"), ("sock2", "unix:/x.controller")]
    # refused three times: 20, 40, 80 ms; after a connection that lasted, 20 ms again
    assert clock.sleeps == [0.02, 0.04, 0.08, 0.02]
    assert conn.connections == 2


def test_connector_backs_off_to_the_cap_while_nobody_listens() -> None:
    clock = FakeClock()

    def connect(ep: Endpoint) -> None:
        if len(clock.sleeps) >= 10:
            conn.stop()
        raise FileNotFoundError("no socket")

    conn = Connector(Endpoint("unix", "/x"), lambda s, a: None, clock.sleep, connect=connect,
                     clock=clock, first=0.02, most=1.0)
    conn.run()
    assert max(clock.sleeps) == 1.0 and clock.sleeps[-1] == 1.0


def test_connector_does_not_spin_on_connections_closed_at_once() -> None:
    clock = FakeClock()
    count = 0

    class Sock:
        def close(self) -> None:
            pass

    def connect(ep: Endpoint) -> Sock:
        nonlocal count
        count += 1
        if count > 8:
            conn.stop()
        return Sock()

    conn = Connector(Endpoint("unix", "/x"), lambda s, a: None, clock.sleep, connect=connect,
                     clock=clock, first=0.02, most=1.0)
    conn.run()
    assert clock.sleeps[-1] == 1.0           # backed off, not 20 ms forever


def test_wait_for_bridge_gives_up_with_one_line() -> None:
    clock = FakeClock()
    with pytest.raises(SystemExit) as exc:
        switch_link.wait_for_bridge("br-x", None, 2.0, clock.sleep, clock,
                                    lookup=lambda b, r: None)
    msg = str(exc.value.code)
    assert "bridge br-x does not exist in Open vSwitch" in msg and "wlbridge setup" in msg
    assert "\n" not in msg and clock.now == pytest.approx(2.0)


def test_wait_for_bridge_returns_it_once_it_appears() -> None:
    clock = FakeClock()
    answers = [RuntimeError("ovsdb down"), None, "the bridge"]
    def lookup(bridge: str, remote: object) -> object:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    assert switch_link.wait_for_bridge("br-x", None, 5.0, clock.sleep, clock,
                                       lookup=lookup) == "the bridge"


def test_a_closed_connection_ends_and_is_reported_once() -> None:
    """os-ken's `Datapath.serve` only returns once its send thread gets something: the
    end of the connection (recv returns nothing) sends it a close request."""
    events: list = []

    class Sock:
        def __init__(self) -> None:
            self.data = [b"hello", b""]

        def recv(self, n: int) -> bytes:
            return self.data.pop(0)

    class FakeDatapath:
        def __init__(self, sock, address) -> None:
            self.sock, self.address = sock, address

        def send(self, buf: bytes, close_socket: bool = False) -> None:
            events.append(("send", buf, close_socket))

        def serve(self) -> None:
            while self.sock.recv(8):
                events.append("message")

        def close(self) -> None:
            events.append("closed")

    switch_link.datapath_server(FakeDatapath)(Sock(), "unix:/x")
    assert events == ["message", ("send", b"", True), "closed"]
