"""wlbridge's options, registered with the framework's oslo.config object.

They live in the ``[wlbridge]`` section of an INI file, so both
``wlbridge run --config-file FILE`` and ``ryu-manager --config-file FILE wlbridge_app``
read the same file.  Command-line flags of ``wlbridge run`` override the file.

`options()` is the one list of options: `wlbridge run`'s flags (`flag`), the option
table in docs/usage.md and the checks below are all derived from it.  The checks
(`check_file`, `convert`, `check_values`) refuse what oslo.config would let through or
report in its own terms: unknown sections and keys (with the closest valid name), and
bad values, each in one plain sentence (`ConfigError`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from wlbridge.compat import FRAMEWORK

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
                   help="the Wi-Fi station interface (unset: the port `wlbridge setup` "
                        "marked in OVSDB)"),
        cfg.StrOpt("state_dir", default="/var/lib/wlbridge",
                   help="where learned bindings are kept across restarts"),
        cfg.StrOpt("dhcp_mode", default="broadcast", choices=DHCP_MODES,
                   help="how guests' DHCP crosses the one-MAC uplink"),
        cfg.IntOpt("idle_timeout", default=300, min=5,
                   help="seconds a guest address not learned from DHCP lives unused"),
        cfg.IntOpt("max_ips_per_port", default=16, min=1,
                   help="IPv4 addresses one guest port may hold"),
        cfg.IntOpt("max_bindings", default=4096, min=1,
                   help="IPv4 and IPv6 bindings in all"),
        cfg.IntOpt("max_macs_per_port", default=32, min=1,
                   help="guests (MACs) one guest port may carry: a Linux bridge, a VM "
                        "with nested guests or a container host behind it; frames from "
                        "more are refused (refused.mac-limit); 1: one guest per port"),
        cfg.IntOpt("ipv6_bindings_per_guest", default=8, min=1,
                   help="IPv6 addresses one guest (MAC) may hold (link-local, SLAAC, "
                        "temporary, DHCPv6); idle ones expire after idle_timeout"),
        cfg.IntOpt("max_ipv6_per_station", default=8, min=1,
                   help="IPv6 addresses of all the guests together behind the station MAC "
                        "(APs that police addresses track 8 per client); a new one over it "
                        "is refused (refused.ipv6-station-limit, shown in status) unless the "
                        "guest's oldest temporary address can be released for it"),
        cfg.FloatOpt("reannounce_interval", default=60.0, min=0.0,
                     help="seconds between two re-announcements of each bound guest address "
                          "(gratuitous ARP, unsolicited NA from the station MAC), one address "
                          "at a time, so that policing or proxy-ARP APs and LAN caches keep "
                          "them; 0: announced at (re)association only"),
        cfg.FloatOpt("reannounce_rate", default=1.0, min=0.01,
                     help="re-announcement frames per second at most (with more addresses "
                          "than reannounce_interval * reannounce_rate, each is announced "
                          "less often)"),
        cfg.FloatOpt("group_quiet", default=300.0, min=10.0,
                     help="seconds without a broadcast or multicast frame from the LAN (the "
                          "uplink up) before wlbridge decides the AP delivers no group "
                          "traffic (a proxy-ARP, Hotspot 2.0 AP): status says so, and the "
                          "re-announcement round runs every 30 s at most"),
        cfg.IntOpt("group_membership_interval", default=260, min=10,
                   help="seconds a guest's IGMP/MLD report keeps it in a multicast group "
                        "(its AP-unicast copies restored to it) without a new report"),
        cfg.IntOpt("max_groups_per_port", default=64, min=1,
                   help="multicast groups one guest port may join (IGMP/MLD snooping)"),
        cfg.IntOpt("max_groups", default=2048, min=1,
                   help="multicast groups joined by guests, in all"),
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
                    help="port=MAC pairs, comma-separated: guest MACs fixed by configuration"),
        cfg.StrOpt("ovsdb", default="unix:/var/run/openvswitch/db.sock",
                   help="OVSDB server, to find the uplink marked by `wlbridge setup`"),
        cfg.FloatOpt("echo_interval", default=2.0, min=0.1,
                     help="seconds the switch may stay silent before the controller sends it "
                          "an OpenFlow echo request (half of echo_timeout if not shorter)"),
        cfg.FloatOpt("echo_timeout", default=3.0, min=0.2,
                     help="seconds without any message from the switch (an echo reply "
                          "included) before it counts as disconnected"),
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
        cfg.StrOpt("fleet", default=None,
                   help="the fleet store (see docs/fleet.md): its members, comma-separated "
                        "(tcp:10.0.0.1:6641,tcp:10.0.0.2:6641,... or ssl:...); unset: this "
                        "host alone, nothing written or read"),
        cfg.StrOpt("fleet_host", default="",
                   help="this host's name in the fleet store (empty: the host name)"),
        cfg.StrOpt("fleet_lan", default="",
                   help="the LAN this host's uplink is on, as written in the fleet store "
                        "(empty: the uplink's name)"),
        cfg.IntOpt("fleet_gone_after", default=60, min=5,
                   help="seconds a host not seen in the fleet store counts as gone: its "
                        "claims no longer hold, its guests are free to move"),
        cfg.StrOpt("fleet_private_key", default=None,
                   help="private key (PEM) for an ssl: fleet store, with fleet_certificate "
                        "and fleet_ca_cert"),
        cfg.StrOpt("fleet_certificate", default=None,
                   help="certificate (PEM) presented to an ssl: fleet store"),
        cfg.StrOpt("fleet_ca_cert", default=None,
                   help="CA certificate (PEM) that signed the fleet store's certificates"),
    ]


def register(conf: Any = None) -> Any:
    """Register the options (once) and return the config object."""
    conf = conf if conf is not None else _cfg().CONF
    conf.register_opts(options(), group=GROUP)  # idempotent for identical options
    return conf


class ConfigError(ValueError):
    """A configuration the user must fix; the message is one plain sentence."""


def default(name: str) -> Any:
    """The default value of option `name`."""
    return next(opt.default for opt in options() if opt.dest == name)


def flag(opt: Any) -> str:
    """The `wlbridge run` flag of an option: ``idle_timeout`` -> ``--idle-timeout``."""
    return "--" + opt.dest.replace("_", "-")


def expected(opt: Any) -> str:
    """What an option accepts, in words (for messages and docs)."""
    kind = type(opt.type).__name__
    choices = getattr(opt.type, "choices", None)
    if choices:
        return "one of " + ", ".join(str(c) for c in choices)
    if kind in ("Integer", "Float"):
        what = "a whole number" if kind == "Integer" else "a number"
        low, high = opt.type.min, opt.type.max
        if low is not None and high is not None:
            return f"{what} from {low} to {high}"
        if low is not None:
            return f"{what}, at least {low}"
        return what
    if kind == "Boolean":
        return "true or false"
    if kind == "List":
        return "a comma-separated list"
    return "text"


def convert(opt: Any, raw: Any) -> Any:
    """`raw` (text from a file, or a value from the command line) as the option's type;
    ConfigError saying what is expected."""
    try:
        value = opt.type(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"want {expected(opt)}, got {raw!r}") from exc
    check_value(opt.dest, value)
    return value


def check_value(name: str, value: Any) -> None:
    """Checks beyond the type: ConfigError when the value cannot work."""
    if name == "static_macs":
        static_macs(value)


def check_values(values: Mapping[str, Any]) -> None:
    """`check_value` for every option of a resolved configuration."""
    for name, value in values.items():
        try:
            check_value(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{name}: {exc}") from exc


def framework_names(conf: Any) -> tuple[list[str], list[str]]:
    """The framework's own top-level options (the keys of ``[DEFAULT]``) and its option
    groups (other sections) registered on `conf`, ``[wlbridge]`` left out."""
    opts, groups = [], []
    for name in conf:
        (groups if type(conf[name]).__name__ == "GroupAttr" else opts).append(name)
    return opts, [g for g in groups if g != GROUP]


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest valid name, or an empty string."""
    by_lower = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def check_file(path: str, default_keys: Iterable[str] = (),
               other_sections: Iterable[str] = ()) -> dict[str, Any]:
    """Read an INI file and check it: the ``[wlbridge]`` values, converted.

    Refused (ConfigError): a syntax error, a section other than ``[wlbridge]``,
    ``[DEFAULT]`` or `other_sections` (the framework's option groups), a key in
    ``[wlbridge]`` that is not an option, a key in ``[DEFAULT]`` not in `default_keys`
    (the framework's own options), and a bad value.
    """
    from oslo_config import cfg as oslo_cfg  # the parser behind oslo.config's files

    sections: dict[str, dict[str, list[str]]] = {}
    try:
        oslo_cfg.ConfigParser(path, sections).parse()
    except oslo_cfg.ParseError as exc:
        raise ConfigError(f"{path}: {exc.msg} (line {exc.lineno})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    known_sections = [GROUP, "DEFAULT", *other_sections]
    by_name = {opt.dest: opt for opt in options()}
    default_keys = set(default_keys)
    values: dict[str, Any] = {}
    for section, keys in sections.items():
        if section not in known_sections:
            raise ConfigError(f"{path}: unknown section [{section}]"
                              f"{suggest(section, known_sections)}; wlbridge's options "
                              f"go in [{GROUP}]")
        for key, raws in keys.items():
            if section == GROUP:
                if key not in by_name:
                    raise ConfigError(f"{path}: unknown option {key} in [{GROUP}]"
                                      f"{suggest(key, by_name)}")
                try:
                    values[key] = convert(by_name[key], raws[-1])
                except ConfigError as exc:
                    raise ConfigError(f"{path}: [{GROUP}] {key}: {exc}") from exc
            elif section == "DEFAULT" and key not in default_keys:
                hint = suggest(key, [*default_keys, *by_name])
                raise ConfigError(f"{path}: unknown option {key} in [DEFAULT]{hint}; "
                                  f"wlbridge's options go in [{GROUP}]")
    return values


def check_loaded(conf: Any) -> None:
    """Check a configuration the framework has loaded (``ryu-manager --config-file``):
    the files' sections and keys, and every ``[wlbridge]`` value; ConfigError, one plain
    sentence instead of oslo.config's own report."""
    for path in conf.config_file or ():
        check_file(path, *framework_names(conf))
    values = {}
    for opt in options():
        try:
            values[opt.dest] = getattr(conf.wlbridge, opt.dest)
        except Exception as exc:  # oslo.config's several kinds, with internals in the text
            raise ConfigError(f"[{GROUP}] {opt.dest}: want {expected(opt)}") from exc
    check_values(values)


def static_macs(pairs: Iterable[str]) -> dict[str, str]:
    """Parse ``port=MAC`` pairs into port name -> canonical MAC; ConfigError (a ValueError)
    naming the bad entry."""
    from wlbridge.model.addresses import is_unicast_mac, mac_to_bytes

    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, mac = (part.strip() for part in pair.partition("="))
        try:
            octets = mac_to_bytes(mac)
        except ValueError:
            octets = None
        if not sep or not name or octets is None:
            raise ConfigError(f"entry {pair!r} is not port=MAC "
                              "(e.g. vm-web=52:54:00:6b:3c:11)")
        canonical = octets.hex(":")
        if not is_unicast_mac(canonical):
            raise ConfigError(f"entry {pair!r}: {canonical} is not a unicast MAC, "
                              "so no guest can send from it")
        if name in result:
            raise ConfigError(f"port {name} is listed twice")
        result[name] = canonical
    return result
