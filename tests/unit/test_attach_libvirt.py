"""The libvirt network of `wlbridge setup`/`teardown` (`wlbridge.host.libvirt_net`) against a
fake virsh that keeps its networks in a dict (the real one: tests/integration/test_libvirt_net.py)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from wlbridge.host import libvirt_net, ovsdb


class FakeVirsh:
    def __init__(self, down: bool = False) -> None:
        self.nets: dict[str, dict] = {}
        self.calls: list[list[str]] = []
        self.down = down

    def __call__(self, args: list[str]) -> subprocess.CompletedProcess:
        self.calls.append(args)
        if self.down:
            return self._res(1, err="error: failed to connect to the hypervisor")
        cmd, name = args[0], args[-1]
        if cmd == "net-define":
            root = ET.fromstring(Path(name).read_text())
            self.nets[root.findtext("name")] = {"xml": ET.tostring(root, encoding="unicode"),
                                                "active": False, "autostart": False}
            return self._res(0)
        net = self.nets.get(name)
        if net is None:
            return self._res(1, err=f"error: Network not found: no network named '{name}'")
        if cmd == "net-dumpxml":
            return self._res(0, net["xml"])
        if cmd == "net-info":
            yes = {True: "yes", False: "no"}
            return self._res(0, f"Name: {name}\nActive: {yes[net['active']]}\n"
                             f"Autostart: {yes[net['autostart']]}\n")
        if cmd in ("net-start", "net-destroy"):
            net["active"] = cmd == "net-start"
        elif cmd == "net-autostart":
            net["autostart"] = True
        elif cmd == "net-undefine":
            del self.nets[name]
        return self._res(0)

    @staticmethod
    def _res(rc: int, out: str = "", err: str = "") -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess([], rc, out, err)


class Db:
    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def set_external_ids(self, bridge: str, updates: dict) -> None:
        self.ids.update(updates)


def info(ids: dict) -> ovsdb.BridgeInfo:
    return ovsdb.BridgeInfo("br-wl", "netdev", (), "secure", (), {}, ids, ())


def test_setup_defines_starts_and_autostarts_once_and_teardown_removes_it() -> None:
    virsh, db, lines = FakeVirsh(), Db(), []
    libvirt_net.after_setup(db, "br-wl", "wlbridge", lines.append, virsh, lambda: True)
    net = virsh.nets["wlbridge"]
    root = ET.fromstring(net["xml"])
    assert (root.find("forward").get("mode"), root.find("bridge").get("name"),
            root.find("virtualport").get("type")) == ("bridge", "br-wl", "openvswitch")
    assert net["active"] and net["autostart"]
    assert db.ids == {libvirt_net.NETWORK_KEY: "wlbridge"}
    virsh.calls.clear()
    libvirt_net.after_setup(db, "br-wl", "wlbridge", lines.append, virsh, lambda: True)
    assert [c[0] for c in virsh.calls] == ["net-dumpxml", "net-info"]     # nothing changed
    assert "  libvirt network wlbridge: already in place" in lines
    done = libvirt_net.before_teardown(info(db.ids), virsh, lambda: True)
    assert done == ["libvirt network wlbridge removed"] and virsh.nets == {}


def test_no_name_no_libvirt_or_libvirt_down_never_fail_setup() -> None:
    virsh, db, lines = FakeVirsh(), Db(), []
    libvirt_net.after_setup(db, "br-wl", "", lines.append, virsh, lambda: True)
    assert virsh.calls == [] and lines == [] and db.ids == {}
    libvirt_net.after_setup(db, "br-wl", "wlbridge", lines.append, virsh, lambda: False)
    assert virsh.calls == [] and "not installed" in lines[-1]
    down = FakeVirsh(down=True)
    libvirt_net.after_setup(db, "br-wl", "wlbridge", lines.append, down, lambda: True)
    assert "warning: libvirt network wlbridge not set up" in lines[-1]
    assert "failed to connect" in lines[-1] and db.ids == {}


def test_a_network_of_that_name_for_another_bridge_is_left_alone() -> None:
    virsh, db, lines = FakeVirsh(), Db(), []
    libvirt_net.after_setup(db, "br-other", "wlbridge", lines.append, virsh, lambda: True)
    before = dict(virsh.nets["wlbridge"])
    libvirt_net.after_setup(Db(), "br-wl", "wlbridge", lines.append, virsh, lambda: True)
    assert "exists already, for br-other" in lines[-1]
    assert virsh.nets["wlbridge"] == before
    done = libvirt_net.before_teardown(info({libvirt_net.NETWORK_KEY: "wlbridge"}), virsh,
                                       lambda: True)
    assert done == ["libvirt network wlbridge now points at br-other: left alone"]
    assert virsh.nets["wlbridge"] == before


def test_teardown_without_a_recorded_network_asks_nothing() -> None:
    virsh = FakeVirsh()
    assert libvirt_net.before_teardown(info({}), virsh, lambda: True) == []
    assert virsh.calls == []
