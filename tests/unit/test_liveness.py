"""Switch liveness decisions (wlbridge.app.liveness), from given times."""

from __future__ import annotations

from wlbridge.app.liveness import GONE, PROBE, Liveness, echo_request


def test_quiet_switch_is_probed_once_then_given_up_after_the_timeout():
    live = Liveness(2.0, 3.0, now=100.0)
    assert live.step(100.0) == (None, 2.0)
    assert live.step(101.9)[0] is None
    assert live.step(102.0) == (PROBE, 1.0)
    assert live.step(102.5) == (None, 0.5)  # one probe per silence
    assert live.step(103.0) == (GONE, 0.0)


def test_anything_heard_defers_the_probe_and_the_end():
    live = Liveness(2.0, 3.0, now=0.0)
    live.step(2.0)  # probed
    live.heard(2.25)  # the reply
    assert live.step(4.0) == (None, 0.25)
    assert live.step(4.25)[0] == PROBE
    for t in range(5, 50):  # a switch that talks every second is never probed
        live.heard(float(t))
        assert live.step(t + 0.99)[0] is None


def test_an_interval_not_shorter_than_the_timeout_probes_at_half_of_it():
    live = Liveness(5.0, 3.0, now=0.0)
    assert live.step(1.5)[0] == PROBE
    assert live.step(3.0)[0] == GONE


def test_echo_request_is_an_openflow_header():
    assert echo_request(4, 7) == b"\x04\x02\x00\x08\x00\x00\x00\x07"


class Handshake:
    """A connection in its handshake: what was done to its socket and send thread."""

    def __init__(self) -> None:
        self.done: list = []
        self.is_active = True
        self.address = ("127.0.0.1", 1)
        self.socket = self

    def shutdown(self, how: int) -> None:
        self.done.append(("shutdown", how))

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.done.append(("send", buf, close_socket))
        return True


class Greeted:
    """An event that is (or is not) set while the watch waits."""

    def __init__(self, set_while_waiting: bool) -> None:
        self.set_while_waiting, self.flag, self.waited = set_while_waiting, False, None

    def wait(self, timeout: float) -> bool:
        self.waited = timeout
        self.flag = self.set_while_waiting
        return self.flag

    def is_set(self) -> bool:
        return self.flag


def test_a_connection_without_its_features_reply_in_time_is_closed_and_released():
    import socket

    from wlbridge.app.liveness import give_up_unless_greeted

    dp, greeted = Handshake(), Greeted(False)
    assert give_up_unless_greeted(dp, 3.0, greeted)
    assert greeted.waited == 3.0
    assert dp.done == [("shutdown", socket.SHUT_RDWR), ("send", b"", True)]
    # greeted in time, or ended already: left alone
    for dp, greeted in ((Handshake(), Greeted(True)), (Handshake(), Greeted(False))):
        dp.is_active = greeted.set_while_waiting
        assert not give_up_unless_greeted(dp, 3.0, greeted)
        assert dp.done == []
