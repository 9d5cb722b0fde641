"""Flow-statistics replies go to the request they answer, by xid (issue 14): the core's
own request feeds only its stale-generation sweep; `wlbridge flows` gets exactly its reply,
however the multipart parts of the two interleave."""

from __future__ import annotations

from wlbridge.app.stats_requests import FlowStatsRequests


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


# The shell's routing of real replies (the core's sweep against `wlbridge flows`, parts
# interleaved) is tested in test_shell.py, through the shell's public methods.
