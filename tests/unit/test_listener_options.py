"""Where the controller listens (issue 15): loopback unless the framework's option was given,
TLS or an explicit insecure_listen for anything else; the port probe; echo liveness options.
Against a real oslo.config object with the framework's own option definitions."""

from __future__ import annotations

import socket

import pytest
from oslo_config import cfg
from wlbridge.app import liveness
from wlbridge.app.listener import Listener, ListenError, configure, explicitly_set, probe


def framework_conf(argv: list[str], config_file: str | None = None) -> cfg.ConfigOpts:
    """A config object with os-ken's / Ryu's listener options (same names and defaults)."""
    root = cfg.ConfigOpts()
    root.register_cli_opts([
        cfg.StrOpt("ofp-listen-host", default="0.0.0.0"),
        cfg.IntOpt("ofp-tcp-listen-port", default=None),
        cfg.IntOpt("ofp-ssl-listen-port", default=None),
        cfg.StrOpt("ctl-privkey", default=None),
        cfg.StrOpt("ctl-cert", default=None),
        cfg.StrOpt("ca-certs", default=None),
    ])
    root.register_opts([cfg.FloatOpt("echo-request-interval", default=15.0),
                        cfg.IntOpt("maximum-unreplied-echo-requests", default=0, min=0)])
    root(argv, project="test", default_config_files=[config_file] if config_file else [])
    return root


class Ours:
    """The [wlbridge] options the listener reads."""

    def __init__(self, **kw) -> None:
        self.listen_host = "127.0.0.1"
        self.insecure_listen = False
        self.tls_private_key = self.tls_certificate = self.tls_ca_cert = None
        self.__dict__.update(kw)


def test_loopback_unless_the_framework_option_is_given():
    root = framework_conf([])
    assert root.ofp_listen_host == "0.0.0.0" and not explicitly_set(root, "ofp_listen_host")
    assert configure(root, Ours()) == Listener("127.0.0.1", 6653, False)
    assert root.ofp_listen_host == "127.0.0.1"


def test_a_given_wildcard_address_is_refused_without_tls():
    root = framework_conf(["--ofp-listen-host", "0.0.0.0"])
    assert explicitly_set(root, "ofp_listen_host")
    with pytest.raises(ListenError, match="refusing to listen for OpenFlow on 0.0.0.0 without "
                                          "TLS.*--insecure-listen"):
        configure(root, Ours())


def test_a_wildcard_address_from_a_config_file_counts_as_given(tmp_path):
    conf = tmp_path / "c.ini"
    conf.write_text("[DEFAULT]\nofp_listen_host = 0.0.0.0\n")
    root = framework_conf([], str(conf))
    with pytest.raises(ListenError):
        configure(root, Ours())


def test_our_own_listen_host_obeys_the_same_rule():
    root = framework_conf([])
    with pytest.raises(ListenError, match="192.0.2.1"):
        configure(root, Ours(listen_host="192.0.2.1"))


def test_insecure_listen_allows_it_with_a_warning(caplog):
    root = framework_conf(["--ofp-listen-host", "0.0.0.0", "--ofp-tcp-listen-port", "7001"])
    assert configure(root, Ours(insecure_listen=True)) == Listener("0.0.0.0", 7001, False)
    assert "without TLS (insecure_listen)" in caplog.text


def test_tls_allows_any_address_on_the_same_port(tmp_path):
    files = {}
    for name in ("key", "cert", "ca"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    root = framework_conf(["--ofp-tcp-listen-port", "7002"])
    ours = Ours(listen_host="0.0.0.0", tls_private_key=str(files["key"]),
                tls_certificate=str(files["cert"]), tls_ca_cert=str(files["ca"]))
    assert configure(root, ours) == Listener("0.0.0.0", 7002, True)
    assert root.ofp_ssl_listen_port == 7002 and root.ctl_privkey == str(files["key"])
    assert str(configure(root, ours)) == "ssl:0.0.0.0:7002"


def test_tls_with_a_part_missing_is_refused(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("x")
    root = framework_conf(["--ctl-privkey", str(key)])
    with pytest.raises(ListenError, match="tls_certificate, tls_ca_cert"):
        configure(root, Ours())


def test_a_port_in_use_is_refused_and_a_free_one_is_not():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ListenError, match=f"127.0.0.1:{port} is in use"):
            probe(Listener("127.0.0.1", port, False))
    probe(Listener("127.0.0.1", port, False))  # closed again: free (TIME_WAIT allowed)


def test_echo_options_turn_the_frameworks_echo_loop_off():
    """wlbridge's own liveness (wlbridge.app.liveness) probes a quiet switch; the framework's
    loop, which probes every interval whatever the switch says, is off."""
    root = framework_conf([])
    root.set_override("maximum_unreplied_echo_requests", 4)
    assert liveness.configure(root, 3.0) == 3.0
    assert root.maximum_unreplied_echo_requests == 0
