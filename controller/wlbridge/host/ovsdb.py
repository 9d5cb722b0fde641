"""A small OVSDB client (``ovs.db.idl``) for the few tables wlbridge touches.

Only the tables and columns listed in `_COLUMNS` are replicated.  The schema is
fetched from the server (``get_schema``), so no schema file is needed.  Every
change runs in one transaction (`Ovsdb.transact`), retried on ``try again``;
failures raise `OvsdbError` (a `wlbridge.errors.UserError`) with the server's
reason.  `find_uplink` and `bridge_info` are one-shot read-only helpers for the
controller at runtime.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, TypeVar

# ovs.poller imports eventlet, when installed, only to ask whether it patched `select`.  When
# nothing has loaded eventlet (os-ken's native threads, the CLI), nothing patched it: the
# import is kept out, which saves ~19 MiB of the controller's memory (bench/bench_idle.py).
# Under ryu-manager eventlet is loaded already and ovs.poller sees it as before.
_NO_EVENTLET = "eventlet" not in sys.modules
if _NO_EVENTLET:
    sys.modules["eventlet"] = None  # type: ignore[assignment]  # ImportError in ovs.poller
try:
    with warnings.catch_warnings():   # ovs.poller warns when it imports eventlet
        warnings.simplefilter("ignore")
        import ovs.db.data
        import ovs.db.error
        import ovs.db.idl
        import ovs.jsonrpc
        import ovs.poller
        import ovs.stream
finally:
    if _NO_EVENTLET:
        del sys.modules["eventlet"]

from wlbridge.errors import UserError
from wlbridge.host.ovsdb_model import (  # noqa: F401  (re-exported: ovsdb.X keeps working)
    OWNER_KEY,
    ROLE_KEY,
    ROLE_UPLINK,
    SAVED_KEY,
    BridgeInfo,
    BridgeSpec,
    ControllerInfo,
    InterfaceInfo,
    PortInfo,
    PortSpec,
)

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_REMOTE = "unix:/var/run/openvswitch/db.sock"
REMOTE_ENV = "WLBRIDGE_OVSDB"
DB_NAME = "Open_vSwitch"

_COLUMNS: dict[str, list[str]] = {
    "Open_vSwitch": ["bridges", "next_cfg", "cur_cfg"],
    "Bridge": ["name", "ports", "protocols", "fail_mode", "controller", "other_config",
               "datapath_type", "external_ids"],
    "Port": ["name", "interfaces", "external_ids"],
    "Interface": ["name", "type", "external_ids", "ofport", "error", "ofport_request"],
    "Controller": ["target", "connection_mode", "controller_rate_limit",
                   "controller_burst_limit", "is_connected"],
}
_MAX_TRIES = 5
log = logging.getLogger(__name__)
T = TypeVar("T")


class OvsdbError(UserError):
    """An OVSDB operation failed; the message says what and why."""


class OvsdbUnavailable(OvsdbError):
    """The database server cannot be reached."""




def default_remote() -> str:
    """The database to use: ``$WLBRIDGE_OVSDB`` or the standard socket."""
    return os.environ.get(REMOTE_ENV) or DEFAULT_REMOTE


def _unavailable(remote: str, reason: str) -> OvsdbUnavailable:
    return OvsdbUnavailable(
        f"Open vSwitch is not running (cannot connect to {remote}) - {reason}. Start it "
        "(systemctl start openvswitch-switch, or /usr/share/openvswitch/scripts/ovs-ctl start) "
        f"or point --db / ${REMOTE_ENV} at its database socket.")


def _block(poller: ovs.poller.Poller, deadline: float) -> None:
    poller.timer_wait(max(0, int((deadline - time.monotonic()) * 1000)))
    poller.block()


def fetch_schema(remote: str, timeout: float = 5.0) -> dict[str, Any]:
    """Fetch the Open_vSwitch schema (JSON) from the server itself."""
    deadline = time.monotonic() + timeout
    err, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(remote),
                                               int(timeout * 1000))
    if err or stream is None:
        raise _unavailable(remote, os.strerror(err) if err else "no stream")
    rpc = ovs.jsonrpc.Connection(stream)
    try:
        request = ovs.jsonrpc.Message.create_request("get_schema", [DB_NAME])
        err = rpc.send(request)
        while not err:
            err, msg = rpc.recv()
            if err == errno.EAGAIN:
                if time.monotonic() >= deadline:
                    raise _unavailable(remote, f"no answer within {timeout:g}s")
                rpc.run()
                poller = ovs.poller.Poller()
                rpc.wait(poller)
                rpc.recv_wait(poller)
                _block(poller, deadline)
                err = 0
                continue
            if err:
                break
            if msg.id != request.id:
                continue
            if msg.type == ovs.jsonrpc.Message.T_ERROR or not isinstance(msg.result, dict):
                raise OvsdbError(f"{remote} has no {DB_NAME} database: {msg.error}")
            return msg.result
        raise _unavailable(remote, os.strerror(err))
    finally:
        rpc.close()


def _opt(value: list) -> Any:
    """An optional OVSDB column as a value or None."""
    return value[0] if value else None


class Ovsdb:
    """A connection to ovsdb-server with an IDL replica of `_COLUMNS`."""

    def __init__(self, remote: str | None = None, timeout: float = 5.0) -> None:
        self.remote = remote or default_remote()
        self.timeout = timeout
        helper = ovs.db.idl.SchemaHelper(schema_json=fetch_schema(self.remote, timeout))
        for table, columns in _COLUMNS.items():
            helper.register_columns(table, columns)
        self._idl = ovs.db.idl.Idl(self.remote, helper, probe_interval=0)
        deadline = time.monotonic() + timeout
        while True:
            self._idl.run()
            if self._idl.has_ever_connected() and self._root() is not None:
                break
            if time.monotonic() >= deadline:
                self._idl.close()
                raise _unavailable(self.remote, f"no database contents within {timeout:g}s")
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            _block(poller, deadline)

    def close(self) -> None:
        self._idl.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -------------------------------------------------------
    def _rows(self, table: str) -> Iterable[Any]:
        return list(self._idl.tables[table].rows.values())

    def _root(self) -> Any:
        return next(iter(self._rows("Open_vSwitch")), None)

    def _find(self, table: str, name: str) -> Any:
        return next((r for r in self._rows(table) if r.name == name), None)

    def refresh(self) -> None:
        """Process pending updates from the server (non-blocking)."""
        self._idl.run()

    def bridge_names(self) -> list[str]:
        self.refresh()
        return sorted(r.name for r in self._rows("Bridge"))

    def bridge_info(self, name: str) -> BridgeInfo | None:
        """Snapshot of bridge `name`, or None when it does not exist."""
        self.refresh()
        row = self._find("Bridge", name)
        return None if row is None else _bridge_info(row)

    def find_uplink(self, bridge: str) -> str | None:
        """The interface of `bridge` marked as uplink, if any."""
        info = self.bridge_info(bridge)
        return info.uplink if info else None

    def port_bridge(self, port: str) -> str | None:
        """Name of the bridge that has a port (or interface) called `port`."""
        self.refresh()
        for br in self._rows("Bridge"):
            for p in br.ports:
                if p.name == port or any(i.name == port for i in p.interfaces):
                    return br.name
        return None

    def wait_interface(self, name: str, timeout: float = 10.0) -> InterfaceInfo:
        """Wait until ovs-vswitchd gave interface `name` an OpenFlow port or an error."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            row = self._find("Interface", name)
            if row is None:
                raise OvsdbError(f"interface {name} is not in the Open vSwitch database")
            info = _iface_info(row)
            if info.error or (info.ofport is not None and info.ofport > 0):
                return info
            if info.ofport == -1 or time.monotonic() >= deadline:
                return info
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            _block(poller, min(deadline, time.monotonic() + 0.2))

    # ---- writing -------------------------------------------------------
    def transact(self, build: Callable[[ovs.db.idl.Transaction], T], what: str,
                 wait_applied: bool = False) -> T:
        """Run `build(txn)` and commit, retrying on "try again"; `what` names the change.

        With `wait_applied`, also wait (up to the timeout) until ovs-vswitchd has
        applied the change, like ovs-vsctl does; a warning is logged if it has not.
        """
        for _ in range(_MAX_TRIES):
            self.refresh()
            seqno = self._idl.change_seqno
            txn = ovs.db.idl.Transaction(self._idl)
            txn.add_comment(f"wlbridge: {what}")
            try:
                result = build(txn)
                if wait_applied:
                    self._root().increment("next_cfg")
            except BaseException:
                txn.abort()
                raise
            status = self._commit(txn, what)
            if status in (txn.SUCCESS, txn.UNCHANGED):
                self.refresh()
                if wait_applied and status == txn.SUCCESS:
                    self._wait_applied(txn.get_increment_new_value(), what)
                return result
            if status != txn.TRY_AGAIN:
                raise OvsdbError(f"Open vSwitch refused to {what}: {_txn_error(txn)}")
            self._wait_change(seqno)
        raise OvsdbError(f"could not {what}: the database kept changing; try again")

    def _commit(self, txn: ovs.db.idl.Transaction, what: str) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            status = txn.commit()
            if status != txn.INCOMPLETE:
                return status
            if time.monotonic() >= deadline:
                txn.abort()
                raise OvsdbError(f"could not {what}: no answer from {self.remote} "
                                 f"within {self.timeout:g}s")
            self._idl.run()
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            txn.wait(poller)
            _block(poller, deadline)

    def _wait_applied(self, cfg: int, what: str) -> bool:
        deadline = time.monotonic() + self.timeout
        while True:
            self._idl.run()
            root = self._root()
            if root is not None and root.cur_cfg >= cfg:
                return True
            if time.monotonic() >= deadline:
                log.warning("ovs-vswitchd has not applied '%s' within %gs; is it running?",
                            what, self.timeout)
                return False
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            _block(poller, min(deadline, time.monotonic() + 0.1))

    def _wait_change(self, seqno: int) -> None:
        deadline = time.monotonic() + 1.0
        while self._idl.change_seqno == seqno and time.monotonic() < deadline:
            self._idl.run()
            poller = ovs.poller.Poller()
            self._idl.wait(poller)
            _block(poller, deadline)

    def _bridge_row(self, name: str) -> Any:
        row = self._find("Bridge", name)
        if row is None:
            raise OvsdbError(f"bridge {name} does not exist")
        return row

    def create_bridge(self, spec: BridgeSpec) -> BridgeInfo:
        """Create a bridge, its internal port and `spec.ports` in one transaction."""
        def build(txn: ovs.db.idl.Transaction) -> None:
            if self._find("Bridge", spec.name) is not None:
                raise OvsdbError(f"bridge {spec.name} already exists")
            br = txn.insert(self._idl.tables["Bridge"])
            _set(br, "name", spec.name)
            _set(br, "datapath_type", spec.datapath_type)
            _set(br, "protocols", list(spec.protocols))
            _set(br, "fail_mode", [spec.fail_mode] if spec.fail_mode else [])
            _set(br, "other_config", dict(spec.other_config))
            _set(br, "external_ids", dict(spec.external_ids))
            ports = [self._new_port(txn, PortSpec(spec.name, "internal"))]
            ports += [self._new_port(txn, p) for p in spec.ports]
            _set(br, "ports", ports)
            if spec.controller:
                _set(br, "controller", [self._new_controller(txn, spec)])
            self._root().addvalue("bridges", br)

        self.transact(build, f"create bridge {spec.name}", wait_applied=True)
        info = self.bridge_info(spec.name)
        assert info is not None
        return info

    def _new_port(self, txn: ovs.db.idl.Transaction, spec: PortSpec) -> Any:
        if self._find("Interface", spec.name) is not None:
            raise OvsdbError(f"interface {spec.name} is already in bridge "
                             f"{self.port_bridge(spec.name) or '(unknown)'}")
        iface = txn.insert(self._idl.tables["Interface"])
        _set(iface, "name", spec.name)
        _set(iface, "type", spec.type)
        _set(iface, "external_ids", dict(spec.iface_external_ids))
        if spec.ofport_request:
            _set(iface, "ofport_request", [spec.ofport_request])
        port = txn.insert(self._idl.tables["Port"])
        _set(port, "name", spec.name)
        _set(port, "interfaces", [iface])
        return port

    def _new_controller(self, txn: ovs.db.idl.Transaction, spec: BridgeSpec) -> Any:
        ctl = txn.insert(self._idl.tables["Controller"])
        _set(ctl, "target", spec.controller)
        _set(ctl, "connection_mode", [spec.connection_mode] if spec.connection_mode else [])
        _set(ctl, "controller_rate_limit", [spec.rate_limit] if spec.rate_limit else [])
        _set(ctl, "controller_burst_limit", [spec.burst_limit] if spec.burst_limit else [])
        return ctl

    def delete_bridge(self, name: str) -> bool:
        """Delete a bridge with its ports; False when it did not exist."""
        def build(txn: ovs.db.idl.Transaction) -> bool:
            br = self._find("Bridge", name)
            if br is None:
                return False
            self._root().delvalue("bridges", br)
            for port in br.ports:
                for iface in port.interfaces:
                    iface.delete()
                port.delete()
            for ctl in br.controller:
                ctl.delete()
            br.delete()
            return True

        return self.transact(build, f"delete bridge {name}", wait_applied=True)

    def add_port(self, bridge: str, spec: PortSpec) -> None:
        def build(txn: ovs.db.idl.Transaction) -> None:
            br = self._bridge_row(bridge)
            br.addvalue("ports", self._new_port(txn, spec))

        self.transact(build, f"add port {spec.name} to {bridge}", wait_applied=True)

    def delete_port(self, bridge: str, port: str) -> bool:
        def build(txn: ovs.db.idl.Transaction) -> bool:
            br = self._bridge_row(bridge)
            row = next((p for p in br.ports if p.name == port), None)
            if row is None:
                return False
            br.delvalue("ports", row)
            for iface in row.interfaces:
                iface.delete()
            row.delete()
            return True

        return self.transact(build, f"delete port {port} from {bridge}", wait_applied=True)

    def replug_port(self, bridge: str, name: str) -> bool:
        """Delete port `name` and add it again, with its OpenFlow port number and
        interface external_ids, in two transactions (ovs-vswitchd must drop its netdev in
        between: re-created in one, it keeps the old one).  The cure for an interface that was
        deleted and re-created under ovs-vswitchd's userspace datapath, which otherwise never
        receives on it again.  False when the port is not on the bridge."""
        self.refresh()
        info = self.bridge_info(bridge)
        iface = info.interface(name) if info is not None else None
        if iface is None:
            return False
        spec = PortSpec(name, iface.type, dict(iface.external_ids),
                        iface.ofport if iface.ofport and iface.ofport > 0 else None)
        self.delete_port(bridge, name)
        self.add_port(bridge, spec)
        return True

    def _update_bridge(self, bridge: str, what: str, fn: Callable[[Any], None]) -> None:
        self.transact(lambda txn: fn(self._bridge_row(bridge)), f"{what} on {bridge}")

    def set_protocols(self, bridge: str, protocols: Iterable[str]) -> None:
        self._update_bridge(bridge, "set protocols",
                            lambda br: _set(br, "protocols", list(protocols)))

    def set_fail_mode(self, bridge: str, mode: str | None) -> None:
        self._update_bridge(bridge, "set fail_mode",
                            lambda br: _set(br, "fail_mode", [mode] if mode else []))

    def set_datapath_type(self, bridge: str, datapath_type: str) -> None:
        self._update_bridge(bridge, "set datapath_type",
                            lambda br: _set(br, "datapath_type", datapath_type))

    def set_controller(self, bridge: str, target: str | None, connection_mode: str | None = None,
                       rate_limit: int | None = None, burst_limit: int | None = None) -> None:
        """Replace the bridge's controllers by `target` (None: no controller)."""
        def build(txn: ovs.db.idl.Transaction) -> None:
            br = self._bridge_row(bridge)
            for old in br.controller:
                old.delete()
            spec = BridgeSpec(bridge, controller=target, connection_mode=connection_mode,
                              rate_limit=rate_limit, burst_limit=burst_limit)
            _set(br, "controller", [self._new_controller(txn, spec)] if target else [])

        self.transact(build, f"set controller on {bridge}")

    def set_other_config(self, bridge: str, updates: Mapping[str, str | None]) -> None:
        """Set (or with None, remove) keys of the bridge's other_config."""
        self._update_bridge(bridge, "set other_config",
                            lambda br: _update_map(br, "other_config", updates))

    def get_external_ids(self, bridge: str) -> dict[str, str]:
        info = self.bridge_info(bridge)
        if info is None:
            raise OvsdbError(f"bridge {bridge} does not exist")
        return dict(info.external_ids)

    def set_external_ids(self, bridge: str, updates: Mapping[str, str | None]) -> None:
        """Set (or with None, remove) keys of the bridge's external_ids."""
        self._update_bridge(bridge, "set external_ids",
                            lambda br: _update_map(br, "external_ids", updates))

    def set_interface_external_ids(self, iface: str, updates: Mapping[str, str | None]) -> None:
        def build(txn: ovs.db.idl.Transaction) -> None:
            row = self._find("Interface", iface)
            if row is None:
                raise OvsdbError(f"interface {iface} is not in the Open vSwitch database")
            _update_map(row, "external_ids", updates)

        self.transact(build, f"set external_ids on interface {iface}")


def _set(row: Any, column: str, value: Any) -> None:
    """Write a column, raising instead of the IDL's silent log on a bad value."""
    ctype = row._table.columns[column].type
    try:
        ovs.db.data.Datum.from_python(ctype, value, ovs.db.idl._row_to_uuid)
    except ovs.db.error.Error as exc:
        raise OvsdbError(f"bad value {value!r} for {row._table.name}.{column}: {exc}") from exc
    setattr(row, column, value)


def _txn_error(txn: ovs.db.idl.Transaction) -> str:
    """The server's error as "error: details" rather than raw JSON."""
    text = txn.get_error()
    try:
        err = json.loads(text)
    except ValueError:
        return text
    if isinstance(err, dict) and "error" in err:
        return f"{err['error']}: {err.get('details', '')}".rstrip(": ")
    return text


def _update_map(row: Any, column: str, updates: Mapping[str, str | None]) -> None:
    for key, value in updates.items():
        if value is None:
            row.delkey(column, key)
        else:
            row.setkey(column, key, str(value))


def _iface_info(row: Any) -> InterfaceInfo:
    return InterfaceInfo(name=row.name, type=row.type, external_ids=dict(row.external_ids),
                         ofport=_opt(row.ofport), error=_opt(row.error))


def _bridge_info(row: Any) -> BridgeInfo:
    controllers = tuple(
        ControllerInfo(target=c.target, connection_mode=_opt(c.connection_mode),
                       rate_limit=_opt(c.controller_rate_limit),
                       burst_limit=_opt(c.controller_burst_limit),
                       is_connected=bool(c.is_connected))
        for c in row.controller)
    ports = tuple(sorted(
        (PortInfo(p.name, tuple(_iface_info(i) for i in p.interfaces)) for p in row.ports),
        key=lambda p: p.name))
    return BridgeInfo(name=row.name, datapath_type=row.datapath_type,
                      protocols=tuple(row.protocols), fail_mode=_opt(row.fail_mode),
                      controllers=controllers, other_config=dict(row.other_config),
                      external_ids=dict(row.external_ids), ports=ports)


def connect(remote: str | None = None, timeout: float = 5.0) -> Ovsdb:
    """Open a connection; raises `OvsdbUnavailable` with what to do."""
    return Ovsdb(remote, timeout)


def find_uplink(bridge: str, remote: str | None = None, timeout: float = 5.0) -> str | None:
    """One-shot: the uplink interface of `bridge` (None if none or no such bridge)."""
    with connect(remote, timeout) as db:
        return db.find_uplink(bridge)


def bridge_info(bridge: str, remote: str | None = None,
                timeout: float = 5.0) -> BridgeInfo | None:
    """One-shot: a snapshot of `bridge` (None if it does not exist)."""
    with connect(remote, timeout) as db:
        return db.bridge_info(bridge)
