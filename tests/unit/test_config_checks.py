"""The configuration checks behind `wlbridge run` and `ryu-manager wlbridge_app` (no
subprocess: see test_cli_refusals.py for the command line)."""

from __future__ import annotations

import pytest
from wlbridge.app import config


def test_a_valid_file_gives_its_values_converted(tmp_path) -> None:
    ini = tmp_path / "ok.ini"
    ini.write_text("[DEFAULT]\nofp_tcp_listen_port = 6633\n[wlbridge]\nidle_timeout = 60\n"
                   "meters = false\nstatic_macs = vm-a=52-54-00-6B-3C-11, vm-b=02:00:00:00:00:01\n")
    values = config.check_file(str(ini), ["ofp_tcp_listen_port"])
    assert values["idle_timeout"] == 60 and values["meters"] is False
    assert config.static_macs(values["static_macs"]) == {
        "vm-a": "52:54:00:6b:3c:11", "vm-b": "02:00:00:00:00:01"}


@pytest.mark.parametrize("text,what", [
    ("[wlbridge]\nmax_binding = 3\n", "did you mean max_bindings?"),
    ("[wlbridge]\nzzz = 3\n", "unknown option zzz in [wlbridge]"),
    ("[WLBRIDGE]\nbridge = x\n", "did you mean wlbridge?"),
    ("[wlbridge]\nmeters = perhaps\n", "meters: want true or false, got 'perhaps'"),
    ("[wlbridge]\nmeter_pps = 0\n", "meter_pps: want a whole number, at least 1"),
    ("[wlbridge]\nstatic_macs = vm\n", "entry 'vm' is not port=MAC"),
    ("[wlbridge]\nstatic_macs = vm=00:00:00:00:00:00\n", "is not a unicast MAC"),
    ("[wlbridge]\nstatic_macs = vm=02:00:00:00:00:01,vm=02:00:00:00:00:02\n", "listed twice"),
    ("[wlbridge]\nstatic_macs = =02:00:00:00:00:01\n", "is not port=MAC"),
])
def test_refusals_are_plain_sentences(tmp_path, text: str, what: str) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.check_file(str(ini))
    message = str(err.value)
    assert what in message and "\n" not in message and "LocationInfo" not in message


def test_every_option_has_help_and_a_flag() -> None:
    names = [opt.dest for opt in config.options()]
    assert len(names) == len(set(names))
    for opt in config.options():
        assert opt.help, opt.dest
        assert config.flag(opt) == "--" + opt.dest.replace("_", "-")


def test_numbers_say_their_range() -> None:
    from oslo_config import cfg

    assert config.expected(cfg.FloatOpt("x", min=0.1)) == "a number, at least 0.1"
    assert config.expected(cfg.IntOpt("x", min=1, max=9)) == "a whole number from 1 to 9"
    with pytest.raises(config.ConfigError, match="want a number, at least 0.1, got 'soon'"):
        config.convert(cfg.FloatOpt("x", min=0.1), "soon")
