"""Flood-prone log lines: a burst per period, the rest counted and summed up once."""

from __future__ import annotations

import logging

from wlbridge.ratelog import RateLimitedLog


def test_a_burst_is_logged_the_rest_summed_up_when_the_period_ends(caplog):
    log = RateLimitedLog(logging.getLogger("wlbridge.test"), "bindings", burst=3, period=1.0)
    with caplog.at_level(logging.INFO, logger="wlbridge.test"):
        for i in range(10):
            log.info(100.0 + i * 0.01, "bound %d", i)
        assert [r.getMessage() for r in caplog.records] == ["bound 0", "bound 1", "bound 2"]
        assert log.held_back == 7
        log.tick(100.5)  # period not over: nothing yet
        assert len(caplog.records) == 3
        log.tick(101.0)
        assert "7 more bindings" in caplog.records[-1].getMessage()
        assert log.held_back == 0
        log.info(101.1, "bound %d", 10)  # a new period: logged again
        assert caplog.records[-1].getMessage() == "bound 10"


def test_quiet_periods_say_nothing(caplog):
    log = RateLimitedLog(logging.getLogger("wlbridge.test"), "bindings", burst=2)
    with caplog.at_level(logging.INFO, logger="wlbridge.test"):
        log.info(5.0, "one")
        log.tick(7.0)
        log.tick(9.0)
    assert [r.getMessage() for r in caplog.records] == ["one"]


def test_the_core_logs_a_learning_flood_in_bounded_lines(caplog):
    from ofsim_packets import arp_request
    from rig import Rig, mac
    from wlbridge.core import CoreConfig

    rig = Rig(config=CoreConfig(uplink="wlan0", max_ips_per_port=100))
    with caplog.at_level(logging.INFO, logger="wlbridge.core"):
        for k in range(60):
            a = f"10.0.9.{k + 1}"
            rig.send(2, arp_request(mac(2), a, a))
        rig.advance(1.0)
    assert len(rig.core.guests[2].ips) == 60  # every address learned, whatever was logged
    lines = [r.getMessage() for r in caplog.records if r.name == "wlbridge.core"]
    assert len([m for m in lines if " is at " in m]) == 20
    assert any("40 more binding changes" in m for m in lines)
