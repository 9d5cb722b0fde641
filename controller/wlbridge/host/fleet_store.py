"""The fleet store's client: this host's rows written, every host's rows watched (issue 26).

The store is an ovsdb-server (standalone or a Raft cluster, `wlbridge fleet`) holding the
`wlbridge` schema (`wlbridge/data/wlbridge.ovsschema`): one ``Host`` row per host (name,
station MAC, bridge, LAN, last seen, the addresses it refused) and one ``Binding`` row per
guest address (host, address, MAC, guest, source, claimed at, lease end).  As
ovn-controller does with the southbound database, each host writes only its own rows and
watches all of them through the `ovs` IDL.

`FleetStore.run` is a loop of its own (a thread): the IDL (reconnecting by itself, to the
cluster's leader), `on_view(hosts, claims)` with plain data (`model.fleet`) whenever the
rows change and every `heartbeat` s (a host may have gone meanwhile), and this host's rows
brought to what `publish` last handed over (the record `Core.fleet_record` builds) whenever
they differ: after a change here, after the store came back (a standalone store restarted
empty is refilled) and after anyone else touched them.  The store down changes nothing
here but the view's age: the controller keeps forwarding and learning on its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

# the `ovs` package as wlbridge.host.ovsdb loads it (without eventlet under os-ken)
from wlbridge.errors import UserError
from wlbridge.host.ovsdb import ovs
from wlbridge.model.fleet import Claim, HostSeen

LOG = logging.getLogger(__name__)
DB_NAME = "wlbridge"
HEARTBEAT = 20.0  # seconds between this host's `last_seen` updates (and view refreshes)


def schema_path() -> str:
    """The `wlbridge` OVSDB schema shipped with the package."""
    return str(resources.files("wlbridge") / "data" / "wlbridge.ovsschema")


def set_tls(private_key: str | None, certificate: str | None, ca_cert: str | None) -> None:
    """The key, certificate and CA for ssl: remotes (process-wide, as the ovs library has it)."""
    if private_key:
        ovs.stream.Stream.ssl_set_private_key_file(private_key)
    if certificate:
        ovs.stream.Stream.ssl_set_certificate_file(certificate)
    if ca_cert:
        ovs.stream.Stream.ssl_set_ca_cert_file(ca_cert)


def _opt(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else (None if value == [] else value)


def read_view(idl: Any) -> tuple[list[HostSeen], list[Claim]]:
    """Every host's row and every binding in the IDL's replica, as plain data."""
    hosts = [HostSeen(r.name, float(r.last_seen), r.station_mac, tuple(sorted(r.conflicts.items())))
             for r in idl.tables["Host"].rows.values()]
    claims = [Claim(r.host, r.ip, r.mac, float(r.claimed_at), r.guest, _opt(r.lease_end))
              for r in idl.tables["Binding"].rows.values()]
    return hosts, claims


def read_once(remote: str, timeout: float = 5.0) -> dict[str, Any]:
    """The store's whole contents once (`wlbridge status --fleet`), as JSON-able data;
    UserError when no member answers within `timeout` s."""
    helper = ovs.db.idl.SchemaHelper(location=schema_path())
    helper.register_all()
    idl = ovs.db.idl.Idl(remote, helper, leader_only=False)
    deadline = time.monotonic() + timeout
    try:
        while not idl.has_ever_connected():
            idl.run()
            if idl.has_ever_connected():
                break
            if time.monotonic() >= deadline:
                raise UserError(f"no fleet store answered at {remote} within {timeout:g}s")
            poller = ovs.poller.Poller()
            idl.wait(poller)
            poller.timer_wait(max(0, int((deadline - time.monotonic()) * 1000)))
            poller.block()
        hosts = sorted(({"name": r.name, "station_mac": r.station_mac, "bridge": r.bridge,
                         "lan": r.lan, "last_seen": r.last_seen, "conflicts": dict(r.conflicts)}
                        for r in idl.tables["Host"].rows.values()), key=lambda h: h["name"])
        bindings = sorted(({"ip": r.ip, "mac": r.mac, "host": r.host, "guest": r.guest,
                            "source": r.source, "claimed_at": r.claimed_at,
                            "lease_end": _opt(r.lease_end)}
                           for r in idl.tables["Binding"].rows.values()),
                          key=lambda b: (b["ip"], b["host"]))
        return {"remote": remote, "hosts": hosts, "bindings": bindings}
    finally:
        idl.close()


def rows_of(idl: Any, host: str) -> tuple[Any, dict[str, Any]]:
    """This host's ``Host`` row (None: none yet) and its ``Binding`` rows by address."""
    row = next((r for r in idl.tables["Host"].rows.values() if r.name == host), None)
    return row, {r.ip: r for r in idl.tables["Binding"].rows.values() if r.host == host}


def _time(t: float) -> float:
    """A time as the store keeps it: ovsdb-server prints reals with 15 significant digits, so
    a Unix time comes back to the millisecond; compared so, or every host would rewrite its
    rows on every change it sees."""
    return round(float(t), 3)


def _binding_values(b: dict[str, Any]) -> dict[str, Any]:
    return {"mac": b["mac"], "guest": b["guest"], "source": b["source"],
            "claimed_at": _time(b["claimed_at"]),
            "lease_end": [] if b.get("lease_end") is None else [_time(b["lease_end"])]}


def _current(row: Any) -> dict[str, Any]:
    return {"mac": row.mac, "guest": row.guest, "source": row.source,
            "claimed_at": _time(row.claimed_at),
            "lease_end": [_time(t) for t in row.lease_end]}


class FleetStore:
    """This host's client of the fleet store at `remote` (``tcp:a:6641,tcp:b:6641,...``)."""

    def __init__(self, remote: str, host: str, bridge: str, lan: str,
                 on_view: Callable[[list[HostSeen], list[Claim]], None], *,
                 heartbeat: float = HEARTBEAT, clock: Callable[[], float] = time.time) -> None:
        self.remote, self.host, self.bridge, self.lan = remote, host, bridge, lan
        self.on_view, self.heartbeat, self.clock = on_view, heartbeat, clock
        self.lock = threading.Lock()
        self.record: dict[str, Any] = {"station_mac": "", "bindings": [], "conflicts": {}}
        self.stopped = threading.Event()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.connected = False
        self.written = 0   # transactions committed (status)

    # ------------------------------------------------------ from the shell
    def publish(self, record: dict[str, Any]) -> None:
        """This host's rows as they should be now (`Core.fleet_record`); never blocks."""
        with self.lock:
            self.record = record
        self._wake()

    def stop(self) -> None:
        self.stopped.set()
        self._wake()

    def status(self) -> dict[str, Any]:
        return {"remote": self.remote, "host": self.host, "connected": self.connected,
                "transactions": self.written}

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    # ------------------------------------------------------------ the loop
    def run(self) -> None:
        """The client loop (a thread of its own) until `stop`."""
        helper = ovs.db.idl.SchemaHelper(location=schema_path())
        helper.register_all()
        idl = ovs.db.idl.Idl(self.remote, helper, leader_only=True)
        seen, beat_due = -1, 0.0
        try:
            while not self.stopped.is_set():
                self._drain()   # before the record is read: a later publish wakes us again
                idl.run()
                connected = idl.has_ever_connected() and idl.state == idl.IDL_S_MONITORING
                if connected != self.connected:
                    self.connected = connected
                    LOG.warning("fleet store %s %s", self.remote,
                                "connected" if connected else "lost: working alone until it "
                                "returns")
                now = self.clock()
                beat = now >= beat_due
                if connected and (idl.change_seqno != seen or beat):
                    seen = idl.change_seqno
                    self._call_view(*read_view(idl))
                if connected:
                    if self._reconcile(idl, now if beat else None):
                        seen = -1   # our own change: the view again once applied
                    if beat:
                        beat_due = now + self.heartbeat
                poller = ovs.poller.Poller()
                idl.wait(poller)
                poller.fd_wait(self.wake_r, ovs.poller.POLLIN)
                poller.timer_wait(max(0, int((beat_due - self.clock()) * 1000)))
                poller.block()
        finally:
            idl.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    def _drain(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except OSError:
            pass

    def _call_view(self, hosts: list[HostSeen], claims: list[Claim]) -> None:
        try:
            self.on_view(hosts, claims)
        except Exception:
            LOG.exception("fleet view not applied")

    def _reconcile(self, idl: Any, beat: float | None) -> bool:
        """Bring this host's rows to the record (and `last_seen` to `beat` if given): one
        transaction if anything differs; whether one was committed."""
        with self.lock:
            record = self.record
        row, mine = rows_of(idl, self.host)
        host_values = {"station_mac": record["station_mac"], "bridge": self.bridge,
                       "lan": self.lan, "conflicts": dict(record["conflicts"])}
        wanted = {b["ip"]: _binding_values(b) for b in record["bindings"]}
        host_same = row is not None and all(
            (dict(getattr(row, k)) if k == "conflicts" else getattr(row, k)) == v
            for k, v in host_values.items())
        if (host_same and beat is None and set(mine) == set(wanted)
                and all(_current(mine[ip]) == v for ip, v in wanted.items())):
            return False
        txn = ovs.db.idl.Transaction(idl)
        if row is None:
            row = txn.insert(idl.tables["Host"])
            row.name = self.host
            row.last_seen = int(self.clock())
        if not host_same:
            for k, v in host_values.items():
                setattr(row, k, v)
        if beat is not None:
            row.last_seen = int(beat)
        for ip, old in mine.items():
            if ip not in wanted:
                old.delete()
        for ip, values in wanted.items():
            old = mine.get(ip)
            if old is not None and _current(old) == values:
                continue
            if old is None:
                old = txn.insert(idl.tables["Binding"])
                old.host, old.ip = self.host, ip
            for k, v in values.items():
                setattr(old, k, v)
        status = txn.commit_block()
        if status in (txn.SUCCESS, txn.UNCHANGED):
            self.written += 1
            return True
        if status != txn.TRY_AGAIN:
            LOG.error("fleet store %s: this host's rows not written (%s: %s)", self.remote,
                      status, txn.get_error())
        return False
