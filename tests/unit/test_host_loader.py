"""The host integration is imported by one thread at a time (wlbridge.app.host_loader).

A package like pyroute2 cannot be imported by two threads at once (each may see the other's
half-initialised module): the fake import below fails when a second import starts before the
first has ended, as pyroute2 did for the isolation worker and the netlink watcher."""

from __future__ import annotations

import threading
import types

import pytest
from wlbridge.app.host_loader import HOST_MODULES, HostLoader

OVERLAP_WAIT = 0.2   # an import waits this long for another one to start beside it


class OneAtATime:
    """A stand-in for importlib: an import takes until a second one starts or OVERLAP_WAIT
    passes, and one that starts while another runs finds it half-initialised."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.started = threading.Event()
        self.imported: list[str] = []

    def __call__(self, name: str) -> types.ModuleType:
        with self.lock:
            self.running += 1
            overlapping = self.running > 1
            if overlapping:
                self.started.set()
            else:
                self.started.clear()
        try:
            if overlapping:
                raise ImportError(f"cannot import name 'X' from partially initialized "
                                  f"module {name!r}")
            self.started.wait(OVERLAP_WAIT)     # a second thread importing now fails
            self.imported.append(name)
            return types.ModuleType(name)
        finally:
            with self.lock:
                self.running -= 1


def ask_at_once(loader: HostLoader, names: list[str]) -> tuple[dict, list]:
    got: dict[str, types.ModuleType] = {}
    errors: list[BaseException] = []
    gate = threading.Barrier(len(names))

    def ask(name: str) -> None:
        gate.wait(5)
        try:
            got[name] = loader.module(name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a thread never got its module"
    return got, errors


def test_two_threads_asking_at_once_get_whole_modules_imported_once_in_order():
    fake = OneAtATime()
    loader = HostLoader(("pkg.low", "pkg.watcher", "pkg.isolation"), fake)
    # the isolation worker and the netlink watcher, each asking for its own module
    got, errors = ask_at_once(loader, ["pkg.isolation", "pkg.watcher"])
    assert errors == []
    assert fake.imported == ["pkg.low", "pkg.watcher", "pkg.isolation"]
    assert {n: m.__name__ for n, m in got.items()} == {"pkg.isolation": "pkg.isolation",
                                                       "pkg.watcher": "pkg.watcher"}
    assert loader.loaded
    loader.module("pkg.low")             # once loaded, no import again
    assert len(fake.imported) == 3


def test_a_failed_import_is_raised_to_its_caller_and_tried_again_by_the_next():
    calls: list[str] = []

    def flaky(name: str) -> types.ModuleType:
        calls.append(name)
        if len(calls) == 2:
            raise ImportError("no such module")
        return types.ModuleType(name)

    loader = HostLoader(("a", "b"), flaky)
    with pytest.raises(ImportError):
        loader.ready()
    assert not loader.loaded and loader.asked
    assert loader.module("b").__name__ == "b"
    assert calls == ["a", "b", "b"]        # "a" is not imported twice


def test_the_real_host_modules_are_pyroute2_first_and_none_of_them_load_with_the_app():
    import subprocess
    import sys

    assert HOST_MODULES[0] == "wlbridge.host.pyroute2_lazy"
    code = ("import sys, wlbridge_app; print(sorted(m for m in sys.modules if "
            "m.startswith(('pyroute2', 'wlbridge.host.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "[]", out
