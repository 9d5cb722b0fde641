"""The kinds of hand-off step: a registry of (kind, version) -> (its arguments, what doing
and undoing it is).

Plans are stored in OVSDB (`plan.HANDOFF_KEY`) and read back by teardown, possibly by a
newer wlbridge, so the stored form is a contract: a step names its kind and version, and
its arguments by name.  `bind` checks a step against the registry before anything runs --
a kind or version this wlbridge does not know, or arguments that are not the registered
ones (one missing, one unknown), is a `StepError` naming the step -- and what runs is the
registered function, never a method looked up by name.  The arguments of a kind are its
function's parameters after the first (the `System` it acts on), a trailing ``_`` dropped
(``from_`` is stored as ``from``); an undo takes the same.  A change to them is a new
version of the kind, the old one kept: tests/unit/test_addr_handoff_unit.py binds every
step of records stored by version 1 (tests/unit/data/handoff_plan_v1.json).
"""

from __future__ import annotations

import inspect
import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff.dhclient import last_lease, patient_conf
from wlbridge.host.addr_handoff.networkd import networkd_bridge_text
from wlbridge.host.addr_handoff.plan import Step

STOP_TIMEOUT = 5.0
START_TIMEOUT = 5.0
POLL = 0.05


class Host(Protocol):
    """What the steps need of the host (`system.System`; tests pass a fake)."""

    removed: dict[str, str]

    def read_text(self, path: str) -> str | None: ...
    def write_text(self, path: str, text: str, mode: int | None = None) -> None: ...
    def append_text(self, path: str, text: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def makedirs(self, path: str) -> None: ...
    def write_sysctl(self, path: str, value: str) -> None: ...
    def cmdline(self, pid: int) -> list[str] | None: ...
    def processes(self) -> list[am.Process]: ...
    def kill(self, pid: int, sig: int) -> None: ...
    def spawn(self, argv: Sequence[str]) -> int: ...
    def run(self, argv: Sequence[str]) -> None: ...
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def addresses_forever(self, iface: str, addresses: list[dict[str, Any]]) -> None: ...


class StepError(ValueError):
    """A stored step this wlbridge cannot run: unknown kind or version, other arguments."""


@dataclass(frozen=True)
class Kind:
    name: str
    version: int
    params: tuple[str, ...]          # its stored argument names, in order
    required: frozenset[str]         # those without a default
    do: Callable[..., None]
    undo: Callable[..., None] | None

    def signature(self) -> str:
        return ", ".join(p if p in self.required else f"[{p}]" for p in self.params)


REGISTRY: dict[tuple[str, int], Kind] = {}


def _stored(name: str) -> str:
    return name.removesuffix("_")


def _params(fn: Callable[..., None]) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in list(inspect.signature(fn).parameters.values())[1:]]


def register(name: str, do: Callable[..., None], undo: Callable[..., None] | None = None,
             version: int = 1) -> Kind:
    """Register kind `name` at `version`: `do(host, **arguments)`, and its `undo` (same
    arguments) if it has one.  TypeError for a second registration or an undo whose
    arguments differ (at import: no plan is ever half-runnable)."""
    params = _params(do)
    if undo is not None and _params(undo) != params:
        raise TypeError(f"step {name} v{version}: undo's arguments differ from do's")
    if (name, version) in REGISTRY:
        raise TypeError(f"step {name} v{version} registered twice")
    kind = Kind(name, version, tuple(_stored(p) for p, _ in params),
                frozenset(_stored(p) for p, d in params if d is inspect.Parameter.empty),
                do, undo)
    REGISTRY[(name, version)] = kind
    return kind


@dataclass(frozen=True)
class Bound:
    """A step checked against its kind: run it (or undo it) on a host."""

    kind: Kind
    args: dict[str, Any]

    def do(self, host: Host) -> None:
        self.kind.do(host, **self.args)

    def undo(self, host: Host) -> None:
        if self.kind.undo is not None:
            self.kind.undo(host, **self.args)


def bind(step: Step) -> Bound:
    """`step` checked against the registry (StepError: why it cannot run, naming it)."""
    kind = REGISTRY.get((step.kind, step.version))
    if kind is None:
        known = sorted(v for k, v in REGISTRY if k == step.kind)
        what = (f"version {step.version} of step kind '{step.kind}' is unknown (known: "
                f"{', '.join(map(str, known))})" if known
                else f"step kind '{step.kind}' is unknown")
        raise StepError(f"{what}: '{step.text}'")
    data = step.data if isinstance(step.data, dict) else {}
    missing = sorted(kind.required - set(data))
    extra = sorted(set(data) - set(kind.params))
    if missing or extra or not isinstance(step.data, dict):
        why = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                      f"unknown {', '.join(extra)}" if extra else ""]))
        raise StepError(f"step '{step.kind}' (version {step.version}) does not take these "
                        f"arguments ({why or 'not a mapping'}; it takes "
                        f"{kind.signature()}): '{step.text}'")
    python = {_stored(p): p for p, _ in _params(kind.do)}
    return Bound(kind, {python[k]: v for k, v in data.items()})


# ---- processes ------------------------------------------------------------------------
def read_pid(host: Host, pidfile: str | None) -> int | None:
    text = host.read_text(pidfile) if pidfile else None
    try:
        return int(text.split()[0]) if text else None
    except (ValueError, IndexError):
        return None


def find(host: Host, argv: Sequence[str], pidfile: str | None, pid: int = 0) -> int | None:
    """The live process running exactly `argv` (from its pid file, else `pid`)."""
    for candidate in (read_pid(host, pidfile), pid):
        if candidate and host.cmdline(candidate) == list(argv):
            return candidate
    return None


def stop(host: Host, argv: list[str], pidfile: str | None, pid: int = 0) -> None:
    """SIGTERM to the process running exactly `argv` (SIGKILL after `STOP_TIMEOUT`)."""
    found = find(host, argv, pidfile, pid)
    if found is None:
        return          # already gone
    host.kill(found, signal.SIGTERM)
    deadline = host.monotonic() + STOP_TIMEOUT
    while host.cmdline(found) == list(argv):
        if host.monotonic() > deadline:
            host.kill(found, signal.SIGKILL)
            break
        host.sleep(POLL)


def undo_stop(host: Host, argv: list[str], pidfile: str | None, pid: int = 0) -> None:
    if find(host, argv, pidfile, 0) is None:
        host.spawn(argv)


def start(host: Host, argv: list[str], pidfile: str) -> None:
    """Start `argv` (a daemon writing `pidfile`) unless it runs; wait until it does."""
    host.makedirs(os.path.dirname(pidfile))
    if find(host, argv, pidfile) is not None:
        return          # already running (setup run again)
    host.spawn(argv)
    deadline = host.monotonic() + START_TIMEOUT
    while find(host, argv, pidfile) is None:
        if host.monotonic() > deadline:
            raise RuntimeError(f"{argv[0]} did not start (no live process in {pidfile})")
        host.sleep(POLL)


def undo_start(host: Host, argv: list[str], pidfile: str) -> None:
    stop(host, argv, pidfile)


def respawn(host: Host, argv: list[str]) -> None:
    """Start `argv` again, unless it runs (teardown may be run again)."""
    if not any(p.argv == tuple(argv) for p in host.processes()):
        host.spawn(argv)


def rebind(host: Host, iface: str) -> None:
    """Tell the dhcpcd instance of `iface` alone (found by its process title, ``dhcpcd:
    IFACE [ip4]``) to rebind at once: SIGHUP, what ``dhcpcd -n IFACE`` sends it (seen:
    RECONFIGURE, then a RENEW of its address).  Signalled directly: ``dhcpcd -n IFACE``
    may reach a dhcpcd manager's control socket instead, and a
    manager replaces its options with the command's."""
    found = [d.pid for d in (am.parse_dhcpcd(p) for p in host.processes())
             if d is not None and d.interfaces == (iface,)]
    if not found:
        raise RuntimeError(f"no dhcpcd instance runs on {iface}")
    for pid in found:
        host.kill(pid, signal.SIGHUP)


# ---- files ----------------------------------------------------------------------------
def _read(host: Host, path: str | None) -> str:
    return (host.read_text(path) or "") if path else ""


def write(host: Host, path: str, text: str, mode: int | None = None) -> None:
    host.write_text(path, text, mode)


def undo_write(host: Host, path: str, text: str, mode: int | None = None) -> None:
    host.unlink(path)


def remove(host: Host, path: str) -> None:
    text = host.read_text(path)
    if text is None:
        host.removed.pop(path, None)
        return
    host.removed[path] = text
    host.unlink(path)


def undo_remove(host: Host, path: str) -> None:
    text = host.removed.pop(path, None)
    if text is not None:
        host.write_text(path, text)


def conf(host: Host, src: str | None, path: str, uplink: str, bridge: str) -> None:
    """The dhclient configuration `src` for the bridge (`dhclient.patient_conf`)."""
    host.write_text(path, patient_conf(_read(host, src), uplink, bridge))


def undo_conf(host: Host, src: str | None, path: str, uplink: str, bridge: str) -> None:
    host.unlink(path)


def copy_leases(host: Host, src: str, path: str, uplink: str, bridge: str) -> None:
    text = _read(host, src).replace(f'interface "{uplink}"', f'interface "{bridge}"')
    host.write_text(path, text)


def undo_copy_leases(host: Host, src: str, path: str, uplink: str, bridge: str) -> None:
    host.unlink(path)


def lease_back(host: Host, src: str | None, path: str, from_: str, to: str) -> None:
    """The last lease of `from_` in `src` appended to `path` as `to`'s."""
    block = last_lease(_read(host, src), from_)
    if block is None:
        return          # nothing to carry back: the client asks for its own last lease
    block = block.replace(f'interface "{from_}"', f'interface "{to}"')
    host.append_text(path, "\n" + block + "\n")


def networkd_copy(host: Host, src: str, path: str, bridge: str,
                  iaid: int | None = None) -> None:
    text = host.read_text(src)
    if text is None:
        raise FileNotFoundError(f"{src} does not exist")
    host.write_text(path, networkd_bridge_text(text, bridge, iaid))


def undo_networkd_copy(host: Host, src: str, path: str, bridge: str,
                       iaid: int | None = None) -> None:
    host.unlink(path)


# ---- sysctls, commands, address lifetimes ---------------------------------------------
def sysctl(host: Host, paths: dict[str, str]) -> None:
    for path, value in paths.items():
        host.write_sysctl(path, value)


def _run_unless(host: Host, argv: Sequence[str], done_if: str | None) -> None:
    """`host.run`, except that a failure saying `done_if` (e.g. a client to stop is not
    running) is what was wanted."""
    try:
        host.run(argv)
    except RuntimeError as exc:
        if not done_if or done_if not in str(exc) or "-x" not in argv:   # stops only
            raise


def command(host: Host, argv: list[str] | None, undo: list[str] | None,
            done_if: str | None = None) -> None:
    if argv:
        _run_unless(host, argv, done_if)


def undo_command(host: Host, argv: list[str] | None, undo: list[str] | None,
                 done_if: str | None = None) -> None:
    if undo:
        _run_unless(host, undo, done_if)


def forever(host: Host, iface: str, addresses: list[dict[str, Any]]) -> None:
    host.addresses_forever(iface, addresses)


# version 1 of every kind: the form stored since the hand-off existed
register("stop", stop, undo_stop)
register("start", start, undo_start)
register("respawn", respawn)
register("rebind", rebind)
register("write", write, undo_write)
register("remove", remove, undo_remove)
register("conf", conf, undo_conf)
register("copy-leases", copy_leases, undo_copy_leases)
register("lease-back", lease_back)
register("networkd-copy", networkd_copy, undo_networkd_copy)
register("sysctl", sysctl)
register("command", command, undo_command)
register("forever", forever)
