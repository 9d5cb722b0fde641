"""Flow-statistics replies go to the request they answer, by xid (issue 14): the core's
own request feeds only its stale-generation sweep; `wlbridge flows` gets exactly its reply,
however the multipart parts of the two interleave."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from wlbridge.app.stats_requests import FlowStatsRequests
from wlbridge.compat import ofp, parser


def test_each_reply_goes_whole_to_its_own_request_only():
    reqs = FlowStatsRequests()
    reqs.sent(7, "sweep")
    reqs.sent(8, "user")
    assert reqs.received(8, ["u1"], more=True) is None
    assert reqs.received(7, ["s1"], more=True) is None
    assert reqs.received(8, ["u2"], more=False) == ("user", ["u1", "u2"])
    assert reqs.received(7, ["s2"], more=False) == ("sweep", ["s1", "s2"])
    assert len(reqs) == 0


def test_a_reply_nobody_asked_for_goes_nowhere():
    reqs = FlowStatsRequests()
    reqs.sent(1, "user")
    assert reqs.received(2, ["x"], more=False) is None
    reqs.forget(1)   # the waiter timed out: its late reply is dropped
    assert reqs.received(1, ["late"], more=False) is None
    reqs.sent(3, "sweep")
    reqs.clear()     # the connection ended
    assert reqs.received(3, ["old"], more=False) is None
    assert len(reqs) == 0


# ---- the app shell's handlers, driven by fake events ---------------------------------

class Datapath:
    """What the app uses of os-ken's Datapath: xids and recorded writes."""

    def __init__(self) -> None:
        self.ofproto, self.ofproto_parser = ofp, parser
        self.xid = 100
        self.sent: list[bytes] = []

    def set_xid(self, msg) -> None:
        self.xid += 1
        msg.set_xid(self.xid)

    def send(self, buf: bytes, close_socket: bool = False) -> bool:
        self.sent.append(buf)
        return True

    def request_xids(self) -> list[int]:
        return [int.from_bytes(b[4:8], "big") for b in self.sent if b[1] == ofp.OFPT_MULTIPART_REQUEST]


class Core:
    """Stands for `Core`: a resync asks for our flows; records what the sweep was given."""

    def __init__(self) -> None:
        from wlbridge.core import flow_stats_request

        self.request = flow_stats_request
        self.dirty, self.station_mac = False, None
        self.swept: list[list[int]] = []

    def switch_connected(self, now: float) -> list:
        return [self.request()]

    def flow_stats(self, cookies, now: float) -> list:
        self.swept.append(list(cookies))
        return []


def stat(cookie: int):
    return parser.OFPFlowStats(table_id=0, duration_sec=1, duration_nsec=0, priority=cookie,
                               idle_timeout=0, hard_timeout=0, flags=0, cookie=cookie,
                               packet_count=0, byte_count=0, match=parser.OFPMatch(),
                               instructions=[])


def reply(dp, xid: int, cookies: list[int], more: bool):
    msg = SimpleNamespace(datapath=dp, xid=xid, body=[stat(c) for c in cookies],
                          flags=ofp.OFPMPF_REPLY_MORE if more else 0)
    return SimpleNamespace(msg=msg)


@pytest.fixture
def app():
    import wlbridge_app

    app = wlbridge_app.WlBridgeApp.__new__(wlbridge_app.WlBridgeApp)
    app.__dict__.update(datapath=Datapath(), core=Core(), lock=threading.RLock(),
                        _flow_requests=FlowStatsRequests(), _save_wanted=False,
                        _local_mac=None, _hwaddr_busy=False)
    return app


def test_wlbridge_flows_gets_its_own_reply_and_the_sweep_only_the_cores(app):
    dp, core = app.datapath, app.core
    app._run(core.switch_connected)            # the resync's filtered request
    [sweep_xid] = dp.request_xids()
    got: list = []
    asking = threading.Thread(target=lambda: got.append(app.switch_flows(timeout=10)))
    asking.start()
    while len(dp.request_xids()) < 2:
        asking.join(0.01)
    user_xid = dp.request_xids()[1]
    # parts interleaved: the core's reply completes first
    app._flow_stats(reply(dp, user_xid, [1, 2], more=True))
    app._flow_stats(reply(dp, sweep_xid, [10], more=True))
    app._flow_stats(reply(dp, sweep_xid, [11], more=False))
    assert core.swept == [[10, 11]]
    assert got == []                            # still waiting for its own last part
    app._flow_stats(reply(dp, user_xid, [3], more=False))
    asking.join(10)
    assert [e["cookie"] for e in got[0]] == [1, 2, 3]
    assert core.swept == [[10, 11]]             # the user's all-flows reply sweeps nothing
