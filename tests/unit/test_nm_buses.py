"""Each running NetworkManager asked on its own D-Bus (`addr_manager.nm_buses`, `read_nm`):
a sandboxed instance on a private bus (a test's, another suite's on this machine) that
leaves the uplink alone must not make `auto` refuse; one there that manages the uplink, or
does not answer, must."""

from __future__ import annotations

from pathlib import Path

from wlbridge.host import addr_manager as am

PRIVATE = "unix:path=/tmp/nmh-bus-1/bus"


def procs(tmp_path: Path, *environs: bytes) -> list[am.Process]:
    out = []
    for pid, env in enumerate(environs, start=100):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(env)
        out.append(am.Process(pid, 1, "NetworkManager", ("NetworkManager",)))
    out.append(am.Process(7, 1, "dhclient", ("dhclient", "wl0")))
    return out


def test_the_bus_of_each_networkmanager_is_read_from_its_environment(tmp_path):
    private = b"DBUS_SYSTEM_BUS_ADDRESS=" + PRIVATE.encode() + b"\0"
    found = am.nm_buses(procs(tmp_path, b"PATH=/bin\0", b"PATH=/bin\0" + private, private),
                        proc_root=str(tmp_path), ours="")
    assert found == [None, PRIVATE]
    none = tmp_path / "none"
    none.mkdir()
    assert am.nm_buses(procs(none), proc_root=str(none), ours="") == []
    # this process on that bus too (the sandbox's own wlbridge): it is ours
    same = tmp_path / "same"
    same.mkdir()
    assert am.nm_buses(procs(same, private), proc_root=str(same), ours=PRIVATE) == [None]


def asker(views: dict):
    asked = []

    def ask(uplink, timeout, bus):
        asked.append(bus)
        return views[bus]
    return ask, asked


def test_a_networkmanager_on_another_bus_leaving_the_uplink_alone_changes_nothing():
    ask, asked = asker({PRIVATE: am.NmDevice("10 (unmanaged)")})
    assert am.read_nm("wl0", [], buses=[PRIVATE], ask=ask).managed is False
    assert am.read_nm("wl0", [], buses=[PRIVATE], ask=ask).error is None
    system = am.NmDevice("100 (connected)", "Home")
    ask, asked = asker({None: system, PRIVATE: am.NmDevice("10 (unmanaged)")})
    assert am.read_nm("wl0", [], buses=[None, PRIVATE], ask=ask) == system
    assert asked == [None, PRIVATE]
    assert am.read_nm("wl0", [], buses=[], ask=ask) is None


def test_a_networkmanager_on_another_bus_that_manages_the_uplink_or_is_silent_is_an_error():
    ask, _ = asker({None: am.NmDevice("10 (unmanaged)"),
                    PRIVATE: am.NmDevice("100 (connected)", "Lab")})
    dev = am.read_nm("wl0", [], buses=[None, PRIVATE], ask=ask)
    assert dev.error and PRIVATE in dev.error and "manages wl0" in dev.error
    ask, _ = asker({PRIVATE: am.NmDevice(error="Could not connect")})
    assert "Could not connect" in am.read_nm("wl0", [], buses=[PRIVATE], ask=ask).error
