"""How the controller and its bridge find each other: the switch-connection model.

The bridge *listens* and the controller *connects* (issue 13): `wlbridge setup` gives the
bridge a passive controller target on a Unix socket in Open vSwitch's run directory,
``punix:<rundir>/<bridge>.controller`` (the one path ovs-vswitchd accepts for a passive Unix
target; the socket is root-only, ``srwxr-x---``), and the controller connects to it, retrying
itself after `FIRST_RETRY` seconds, doubling up to `MAX_RETRY`.  So a controller (re)start is
connected as soon as it is ready: no wait for Open vSwitch's own reconnection timer (1 s at
best, growing to ``max_backoff``, 8 s by default).  ``ptcp:PORT:127.0.0.1`` (or ``[::1]``) is
the TCP equivalent; a passive target on any other address is refused, since whoever
connects to it controls the bridge.  See docs/resilience.md for the choice.

A bridge set up before this keeps an *active* target (``tcp:127.0.0.1:6653``): the
controller still listens for it, and says that running `wlbridge setup` again switches the
bridge to the passive target.

The parsing and the messages are pure; `Connector` is the retry loop (its socket calls,
sleeping and the framework's connection handler are injected).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger("wlbridge.app")

DEFAULT_RUNDIR = "/var/run/openvswitch"
FIRST_RETRY = 0.02   # seconds before the first retry after a failed or ended connection
MAX_RETRY = 1.0      # ... doubling up to this
CONNECT_TIMEOUT = 2.0
STABLE = 1.0         # a connection that lasted this long resets the retry delay
BRIDGE_POLL = 0.5    # how often OVSDB is asked while waiting for the bridge to exist


@dataclass(frozen=True)
class Endpoint:
    """Where the controller connects: a Unix socket path, or a TCP (host, port)."""

    family: str          # "unix" or "tcp"
    address: Any         # path, or (host, port)

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.address}"
        host, port = self.address
        return f"{'[' + host + ']' if ':' in host else host}:{port}"


def rundir_of(ovsdb_remote: str | None) -> str:
    """Open vSwitch's run directory: ``$OVS_RUNDIR``, else the directory of a ``unix:``
    OVSDB remote (``unix:/var/run/openvswitch/db.sock``), else the default."""
    if os.environ.get("OVS_RUNDIR"):
        return os.environ["OVS_RUNDIR"]
    if ovsdb_remote and ovsdb_remote.startswith("unix:"):
        return os.path.dirname(ovsdb_remote[len("unix:"):]) or DEFAULT_RUNDIR
    return DEFAULT_RUNDIR


def passive_target(bridge: str, rundir: str = DEFAULT_RUNDIR) -> str:
    """The default controller target `wlbridge setup` gives a bridge."""
    return f"punix:{rundir}/{bridge}.controller"


def is_passive(target: str) -> bool:
    return target.split(":", 1)[0] in ("punix", "ptcp", "pssl")


def endpoint(target: str) -> Endpoint | None:
    """Where to connect for a passive target (``punix:PATH``, ``ptcp:PORT[:IP]``); None for
    an active target, ``pssl:`` (not connected to by wlbridge) or anything unparsable."""
    kind, _, rest = target.partition(":")
    if kind == "punix" and rest:
        return Endpoint("unix", rest)
    if kind != "ptcp":
        return None
    port_text, _, host = rest.partition(":")
    try:
        port = int(port_text)
    except ValueError:
        return None
    host = host.strip("[]") or "0.0.0.0"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return Endpoint("tcp", (host, port))


def target_problem(target: str, bridge: str, rundir: str) -> str | None:
    """Why `target` is not acceptable as a bridge's controller target (None: it is).

    A passive TCP target must listen on loopback only: whoever connects controls the bridge.
    A passive Unix target must be the one path ovs-vswitchd accepts."""
    kind = target.split(":", 1)[0]
    if kind not in ("tcp", "ssl", "unix", "punix", "ptcp", "pssl"):
        return f"unknown controller target {target!r} (want punix:, ptcp:, tcp:, ssl:, ...)"
    if kind == "punix" and target != passive_target(bridge, rundir):
        return (f"Open vSwitch accepts a passive Unix controller target only at "
                f"{passive_target(bridge, rundir)}")
    if kind == "ptcp":
        ep = endpoint(target)
        host = target.split(":", 2)[2].strip("[]") if target.count(":") >= 2 else ""
        if ep is None:
            return f"bad ptcp target {target!r} (want ptcp:PORT:127.0.0.1)"
        try:
            loopback = bool(host) and ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            return (f"passive target {target} would let any host that reaches that address "
                    "control the bridge; use ptcp:PORT:127.0.0.1 (or the default punix: target, "
                    "or pssl: with certificates)")
    return None


def endpoints(targets: list[str]) -> list[Endpoint]:
    return [ep for ep in (endpoint(t) for t in targets) if ep is not None]


def wait_message(bridge: str, targets: list[str], listen: str) -> str:
    """What the controller says it waits for, given the bridge's controller targets and
    where it listens itself ("127.0.0.1:6653")."""
    eps = endpoints(targets)
    if eps:
        return (f"connecting to bridge {bridge} at {', '.join(str(e) for e in eps)} "
                f"(its controller target{'s' if len(targets) > 1 else ''} "
                f"{', '.join(targets)})")
    if not targets:
        return (f"waiting for bridge {bridge} to connect to {listen} … but it has no controller "
                f"target: run `wlbridge setup` again (or ovs-vsctl set-controller {bridge} "
                f"tcp:{listen})")
    mine = {f"tcp:{listen}", f"tcp:{listen.replace('0.0.0.0', '127.0.0.1')}"}
    if any(t in mine for t in targets):
        return (f"waiting for bridge {bridge} to connect to {listen} … (Open vSwitch retries "
                "with a backoff of up to 8 s; `wlbridge setup` again gives the bridge a "
                "passive target the controller connects to at once)")
    return (f"waiting for bridge {bridge} to connect to {listen} … but its controller target is "
            f"{', '.join(targets)}: it will not connect here (run `wlbridge setup` again, or "
            f"start the controller with the matching --listen-host/--listen-port)")


class _UnixStream:
    """A connected Unix socket that os-ken's/Ryu's `Datapath` accepts: it sets TCP_NODELAY,
    which a Unix socket refuses; TCP options are ignored here, the rest passes through."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def setsockopt(self, level: int, *args: Any) -> None:
        if level == socket.IPPROTO_TCP:
            return
        self._sock.setsockopt(level, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _EndAware:
    """A switch connection's socket that says when the switch closed it (``recv`` returned
    nothing or failed): `on_end` is called once, on the receiving thread."""

    def __init__(self, sock: Any, on_end: Callable[[], None]) -> None:
        self._sock = sock
        self._on_end = on_end
        self._ended = False

    def recv(self, n: int) -> bytes:
        try:
            data = self._sock.recv(n)
        except OSError:
            self._end()
            raise
        if not data:
            self._end()
        return data

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def datapath_server(datapath_cls: Any) -> Callable[[Any, str], None]:
    """What to run on each connection: what the framework's ``datapath_connection_factory``
    does (a ``Datapath`` on the socket, served, closed), plus one thing.  os-ken's native
    threads cannot be killed: when the switch closes the connection, ``Datapath.serve``
    waits for its send thread, which waits for something to send — forever, so the
    connection never ends, nobody hears that the switch is gone, and the connector never
    reconnects.  Sending it a close request when ``recv`` sees the end lets it finish (under
    eventlet the thread is killed anyway; the request is then discarded)."""
    import contextlib

    def serve(sock: Any, address: str) -> None:
        made: list[Any] = []

        def ended() -> None:
            for dp in made:
                try:
                    dp.send(b"", close_socket=True)
                except Exception:
                    LOG.debug("waking the send thread of a closed connection", exc_info=True)

        dp = datapath_cls(_EndAware(sock, ended), address)
        made.append(dp)
        with contextlib.closing(dp):
            dp.serve()

    return serve


def open_stream(ep: Endpoint, timeout: float = CONNECT_TIMEOUT) -> Any:
    """Connect to `ep`; OSError when nobody listens there (yet)."""
    if ep.family == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(ep.address)
            sock.settimeout(None)
        except OSError:
            sock.close()
            raise
        return _UnixStream(sock)
    sock = socket.create_connection(ep.address, timeout=timeout)
    sock.settimeout(None)
    return sock


class Connector:
    """Connect to the bridge's passive target and keep connecting: run `serve`
    (`datapath_server`, which returns when the connection ends)
    on each connection; retry after `FIRST_RETRY` s, doubling up to `MAX_RETRY` while
    nobody listens (the bridge is being created, ovs-vswitchd restarts).  `run` is the loop
    (for a thread or green thread); `stop` ends it at its next wake-up."""

    def __init__(self, ep: Endpoint, serve: Callable[[Any, Any], None],
                 sleep: Callable[[float], None], *,
                 connect: Callable[[Endpoint], Any] = open_stream,
                 clock: Callable[[], float] = time.monotonic,
                 first: float = FIRST_RETRY, most: float = MAX_RETRY) -> None:
        self.endpoint = ep
        self._serve = serve
        self._sleep = sleep
        self._connect = connect
        self._clock = clock
        self._first, self._most = first, most
        self.stopped = False
        self.connections = 0

    def run(self) -> None:
        delay = self._first
        failing = False
        while not self.stopped:
            try:
                sock = self._connect(self.endpoint)
            except OSError as exc:
                if not failing:
                    LOG.info("bridge not listening at %s yet (%s): retrying", self.endpoint, exc)
                    failing = True
            else:
                failing = False
                self.connections += 1
                LOG.info("connected to the bridge at %s", self.endpoint)
                since = self._clock()
                try:
                    self._serve(sock, str(self.endpoint))
                except Exception:
                    LOG.debug("switch connection ended with an error", exc_info=True)
                finally:
                    try:
                        sock.close()
                    except OSError:
                        pass
                if self._clock() - since >= STABLE:   # else: accepted, then closed at once
                    delay = self._first
                if self.stopped:
                    return
                LOG.info("connection to the bridge at %s ended: reconnecting", self.endpoint)
            self._sleep(delay)
            delay = min(delay * 2, self._most)

    def stop(self) -> None:
        self.stopped = True


def wait_for_bridge(bridge: str, remote: str | None, timeout: float,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    lookup: Callable[[str, str | None], Any] | None = None) -> Any:
    """The bridge's OVSDB record, waiting up to `timeout` s for it to exist (setup may be
    running).  SystemExit with one line saying what to do when it does not appear."""
    lookup = lookup or _bridge_info
    deadline = clock() + timeout
    said = False
    while True:
        problem = None
        try:
            info = lookup(bridge, remote)
        except Exception as exc:  # noqa: BLE001 - OVSDB not running (yet), ...
            info, problem = None, str(exc)
        if info is not None:
            return info
        if clock() >= deadline:
            if problem:
                raise SystemExit(f"cannot read bridge {bridge} from OVSDB ({problem}); is Open "
                                 f"vSwitch running? (waited {timeout:g}s)")
            raise SystemExit(f"bridge {bridge} does not exist in Open vSwitch (waited "
                             f"{timeout:g}s); create it with `wlbridge setup --uplink UPLINK "
                             f"--bridge {bridge}`, or pass the right --bridge")
        if not said:
            LOG.warning("waiting up to %gs for bridge %s to exist in Open vSwitch (%s)",
                        timeout, bridge, problem or "run `wlbridge setup`")
            said = True
        sleep(min(BRIDGE_POLL, max(0.0, deadline - clock())))


def _bridge_info(bridge: str, remote: str | None) -> Any:
    from wlbridge.host import ovsdb

    return ovsdb.bridge_info(bridge, remote=remote, timeout=2.0)
