"""Where the controller listens for its switch, and whether that is safe.

Used by the app shell under both ``wlbridge run`` and ``ryu-manager``, before the framework's
OpenFlow server starts (it reads these options when it does):

* the address: ``[wlbridge] listen_host`` (127.0.0.1) unless the framework's own
  ``ofp_listen_host`` was given (command line or file).  Ryu's and os-ken's default for it is
  the string '0.0.0.0', so "given" is asked of oslo.config (`explicitly_set`), not inferred
  from the value;
* TLS: ``[wlbridge] tls_private_key``, ``tls_certificate`` and ``tls_ca_cert`` (or the
  framework's ``--ctl-privkey``, ``--ctl-cert``, ``--ca-certs``): the controller's key and
  certificate, and the CA that signed the switch's certificate (as ``ovs-vsctl set-ssl``
  configures the switch side).  All three or none;
* a non-loopback address only with TLS, or with ``insecure_listen`` (a warning): otherwise
  any host on the Wi-Fi LAN could open an OpenFlow session and pose as the switch;
* the port must be free (`probe`): a second controller on it refuses to start instead of
  idling with a server that never bound.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger("wlbridge.app")
OFP_PORT = 6653  # the framework's default when no port option is given
TLS_OPTIONS = (("tls_private_key", "ctl_privkey"), ("tls_certificate", "ctl_cert"),
               ("tls_ca_cert", "ca_certs"))


class ListenError(RuntimeError):
    """A listening configuration refused (a clear one-line startup error)."""


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'ssl' if self.tls else 'tcp'}:{self.host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def explicitly_set(root: Any, name: str) -> bool:
    """True when option `name` of the framework's config was given (command line, config
    file, environment or an override), not left at its default."""
    try:
        where = root.get_location(name)
    except Exception:  # noqa: BLE001 - an older oslo.config: treat as not given
        return False
    kind = getattr(getattr(where, "location", None), "name", "opt_default")
    return kind not in ("opt_default", "set_default")


def configure(root: Any, conf: Any) -> Listener:
    """Apply the listen address, port and TLS options to the framework's config `root`
    (``[wlbridge]`` options in `conf`); raise ListenError when the result is unsafe."""
    host = root.ofp_listen_host if explicitly_set(root, "ofp_listen_host") else conf.listen_host
    root.set_override("ofp_listen_host", host)
    for ours, theirs in TLS_OPTIONS:
        value = getattr(conf, ours)
        if value:
            root.set_override(theirs, value)
    given = {theirs: getattr(root, theirs) for _, theirs in TLS_OPTIONS}
    tls = all(given.values())
    if any(given.values()) and not tls:
        missing = [ours for ours, theirs in TLS_OPTIONS if not given[theirs]]
        raise ListenError(f"TLS needs the controller's key, its certificate and the switch's "
                          f"CA certificate: set {', '.join(missing)} in [wlbridge]")
    for path in given.values() if tls else ():
        if not os.access(path, os.R_OK):
            raise ListenError(f"cannot read TLS file {path}")
    if tls:
        # one port for whichever protocol: the TLS server takes the TCP port's number
        port = root.ofp_ssl_listen_port or root.ofp_tcp_listen_port or OFP_PORT
        root.set_override("ofp_ssl_listen_port", port)
    else:
        port = root.ofp_tcp_listen_port or OFP_PORT
    listener = Listener(host, port, tls)
    if not is_loopback(host) and not tls:
        if not conf.insecure_listen:
            raise ListenError(
                f"refusing to listen for OpenFlow on {host} without TLS (any host that reaches "
                f"it could pose as the switch): listen on 127.0.0.1, set tls_private_key, "
                f"tls_certificate and tls_ca_cert in [wlbridge], or allow it with "
                f"--insecure-listen (insecure_listen = true)")
        LOG.warning("listening for OpenFlow on %s:%d without TLS (insecure_listen): any host "
                    "that reaches it can pose as the switch", host, port)
    return listener


def probe(listener: Listener) -> None:
    """Fail now if the OpenFlow port is taken: bind it with the framework server's own
    socket options (SO_REUSEADDR), which fails only while another socket listens there."""
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((listener.host, listener.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ListenError(f"OpenFlow port {listener.host}:{listener.port} is in use "
                                  f"(another controller?); stop it or choose another "
                                  f"listen_port") from None
            raise ListenError(f"cannot listen for OpenFlow on {listener.host}:"
                              f"{listener.port}: {exc.strerror or exc}") from None
