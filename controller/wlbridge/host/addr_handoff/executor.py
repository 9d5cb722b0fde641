"""Running a plan's steps: `execute` (in order; a failure undoes the done ones in reverse),
`HostOps` (one step done or undone on the host, through the registry of
`wlbridge.host.addr_handoff.steps`) and `Handoff` (what setup and teardown are given:
how to read the host's facts and which host the steps act on).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wlbridge.host import addr_manager as am
from wlbridge.host.addr_handoff import steps as kinds
from wlbridge.host.addr_handoff.plan import HandoffError, Plan, Step
from wlbridge.host.addr_handoff.system import System


class Ops(Protocol):
    def do(self, step: Step) -> None: ...
    def undo(self, step: Step) -> None: ...


class HostOps:
    """Does and undoes steps on `system` (default: the real host, with `net`, a
    `hostnet.HostNet`, for address lifetimes)."""

    def __init__(self, net: Any = None, system: kinds.Host | None = None) -> None:
        self.system: kinds.Host = system if system is not None else System(net)

    def do(self, step: Step) -> None:
        kinds.bind(step).do(self.system)

    def undo(self, step: Step) -> None:
        kinds.bind(step).undo(self.system)

    def find(self, argv: Sequence[str], pidfile: str | None, pid: int = 0) -> int | None:
        """The live process running exactly `argv` (from its pid file, else `pid`)."""
        return kinds.find(self.system, argv, pidfile, pid)


@dataclass(frozen=True)
class Handoff:
    """What the hand-off reads from and acts on: `read_facts(uplink, ifindex)` (default
    `addr_manager.read_facts`, looked up when called) and the host its steps act on
    (`system`, default the real one).  Setup and teardown take one; tests pass fakes."""

    read_facts: Callable[[str, int], am.HostFacts] | None = None
    system: kinds.Host | None = None

    def facts(self, uplink: str, ifindex: int) -> am.HostFacts:
        return (self.read_facts or am.read_facts)(uplink, ifindex)

    def ops(self, net: Any = None) -> HostOps:
        return HostOps(net, self.system)


def runs(step: Step) -> bool:
    """Whether this wlbridge can run `step` (`steps.bind`)."""
    try:
        kinds.bind(step)
    except kinds.StepError:
        return False
    return True


def missing_clients(plan: Plan, ops: HostOps) -> list[Step]:
    """The plan's client starts whose client no longer runs (setup run again restarts
    them); a start this wlbridge cannot run is not one."""
    return [s for s in plan.setup if s.kind == "start" and runs(s)
            and ops.find(s.data["argv"], s.data["pidfile"]) is None]


def execute(steps: Sequence[Step], ops: Ops, out: Callable[[str], None],
            skipped: Callable[[str], None] | None = None) -> None:
    """Run `steps`; on a failure undo the done ones in reverse and raise HandoffError.

    Every step is checked against the registry first (`steps.bind`).  One that cannot run
    (a kind or version this wlbridge does not know, other arguments) is, with `skipped`,
    left out and reported through it (teardown: the rest still runs); without, a
    HandoffError before anything ran."""
    runnable: list[Step] = []
    for step in steps:
        try:
            kinds.bind(step)
        except kinds.StepError as exc:
            if skipped is None:
                raise HandoffError(f"cannot run the hand-off record: {exc}") from exc
            skipped(str(exc))
            continue
        runnable.append(step)
    done: list[Step] = []
    for step in runnable:
        try:
            ops.do(step)
        except Exception as exc:  # any failure means: roll back
            errors = []
            for prev in reversed(done):
                try:
                    ops.undo(prev)
                except Exception as uexc:  # noqa: BLE001
                    errors.append(f"undoing '{prev.text}': {uexc}")
            raise HandoffError(f"{step.text}: {exc}", errors) from exc
        done.append(step)
        if step.kind not in ("command",) or step.data.get("argv"):
            out(step.text)
