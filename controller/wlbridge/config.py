"""wlbridge's options, registered with the framework's oslo.config object.

They live in the ``[wlbridge]`` section of an INI file, so both
``wlbridge run --config-file FILE`` and ``ryu-manager --config-file FILE wlbridge_app``
read the same file.  Command-line flags of ``wlbridge run`` override the file.
"""

from __future__ import annotations

from typing import Any

from .compat import FRAMEWORK

GROUP = "wlbridge"
DHCP_MODES = ("broadcast", "client-id")


def _cfg():
    import importlib

    return importlib.import_module(f"{FRAMEWORK}.cfg")


def options() -> list:
    cfg = _cfg()
    return [
        cfg.StrOpt("bridge", default="br-wl", help="OVS bridge managed by wlbridge"),
        cfg.StrOpt("uplink", default=None,
                   help="station interface (default: the port marked by `wlbridge setup`)"),
        cfg.StrOpt("state_dir", default="/var/lib/wlbridge",
                   help="where learned bindings are kept across restarts"),
        cfg.StrOpt("dhcp_mode", default="broadcast", choices=DHCP_MODES,
                   help="how guests' DHCP crosses the one-MAC uplink"),
        cfg.IntOpt("idle_timeout", default=300, min=5,
                   help="seconds an ARP/IPv4-learned guest address lives unused"),
        cfg.IntOpt("max_ips_per_port", default=16, min=1),
        cfg.IntOpt("max_bindings", default=4096, min=1),
        cfg.StrOpt("listen_host", default="127.0.0.1",
                   help="OpenFlow listen address (ryu-manager: used when --ofp-listen-host "
                        "is not given)"),
        cfg.IntOpt("listen_port", default=6653, min=1, max=65535,
                   help="OpenFlow listen port (`wlbridge run` only; ryu-manager: "
                        "--ofp-tcp-listen-port)"),
        cfg.StrOpt("status_host", default="127.0.0.1", help="status/metrics HTTP address"),
        cfg.IntOpt("status_port", default=9654, min=0, max=65535,
                   help="status/metrics HTTP port on loopback (0: off)"),
        cfg.BoolOpt("meters", default=True,
                    help="rate-limit controller-bound packets per guest port with OpenFlow "
                         "meters (used only when the switch supports them; see "
                         "docs/resilience.md)"),
        cfg.IntOpt("meter_pps", default=200, min=1,
                   help="packets per second (and burst) each guest port may send to the "
                        "controller"),
        cfg.ListOpt("static_macs", default=[],
                    help="port=MAC pairs: guest MACs fixed by configuration"),
        cfg.StrOpt("ovsdb", default="unix:/var/run/openvswitch/db.sock",
                   help="OVSDB server, to find the uplink marked by `wlbridge setup`"),
        cfg.FloatOpt("echo_interval", default=1.0, min=0.1,
                     help="seconds between OpenFlow echo requests to the switch"),
        cfg.FloatOpt("echo_timeout", default=3.0, min=0.2,
                     help="seconds without an echo reply before the switch counts as "
                          "disconnected (at least two echo intervals)"),
        cfg.BoolOpt("insecure_listen", default=False,
                    help="allow a non-loopback listen_host without TLS (a warning is logged)"),
        cfg.StrOpt("tls_private_key", default=None,
                   help="controller's private key (PEM): listen with TLS (`ssl:`), with "
                        "tls_certificate and tls_ca_cert"),
        cfg.StrOpt("tls_certificate", default=None,
                   help="controller's certificate (PEM), presented to the switch"),
        cfg.StrOpt("tls_ca_cert", default=None,
                   help="CA certificate (PEM) that signed the switch's certificate"),
        cfg.IntOpt("bridge_timeout", default=30, min=0,
                   help="seconds to wait at start for the bridge to exist in Open vSwitch "
                        "before giving up"),
    ]


def register(conf: Any = None) -> Any:
    """Register the options (once) and return the config object."""
    conf = conf if conf is not None else _cfg().CONF
    conf.register_opts(options(), group=GROUP)  # idempotent for identical options
    return conf


def static_macs(pairs: list[str]) -> dict[str, str]:
    """Parse ``port=MAC`` pairs; raise ValueError with the bad entry."""
    result = {}
    for pair in pairs:
        name, sep, mac = pair.partition("=")
        if not sep or not name or len(mac.split(":")) != 6:
            raise ValueError(f"bad static_macs entry {pair!r} (want port=aa:bb:cc:dd:ee:ff)")
        result[name.strip()] = mac.strip().lower()
    return result
