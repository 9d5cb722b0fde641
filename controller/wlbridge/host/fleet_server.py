"""A fleet store member on this machine: Open vSwitch's own ovsdb-server and ovsdb-tool do
the work (as OVN's southbound database does): a standalone database, or one member of a
Raft cluster (``ovsdb-tool create-cluster`` for the first member, ``join-cluster`` for the
others), TLS between members and from controllers with certificates from ``ovs-pki``.

Everything of one member lives in one directory: ``wlbridge.db``, ``ovsdb-server.pid``,
``ovsdb-server.log``, ``ovsdb-server.ctl`` (its unixctl socket), and for TLS the paths
given.  `plan_*` functions only build command lines (tested without root); `run` runs
them, one refusal line (UserError) on the first failure.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wlbridge.errors import UserError

DB = "wlbridge.db"
DB_NAME = "wlbridge"
PIDFILE, LOGFILE, CTL = "ovsdb-server.pid", "ovsdb-server.log", "ovsdb-server.ctl"
_ADDR = re.compile(r"^(tcp|ssl):(\[[0-9a-fA-F:.]+\]|[0-9.]+|[A-Za-z0-9.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class Tls:
    """This member's key and certificate and the CA that signed every member's and
    controller's certificate."""

    private_key: str
    certificate: str
    ca_cert: str

    def args(self) -> list[str]:
        return [f"--private-key={self.private_key}", f"--certificate={self.certificate}",
                f"--ca-cert={self.ca_cert}"]


def check_address(addr: str, what: str) -> tuple[str, str, int]:
    """``tcp:IP:PORT`` or ``ssl:IP:PORT`` as (kind, host, port); UserError otherwise."""
    m = _ADDR.match(addr)
    if m is None or not 0 < int(m.group(3)) < 65536:
        raise UserError(f"{what} {addr!r} is not tcp:IP:PORT or ssl:IP:PORT")
    return m.group(1), m.group(2), int(m.group(3))


def passive(addr: str) -> str:
    """The listening form of a client address: ``tcp:IP:PORT`` -> ``ptcp:PORT:IP``."""
    kind, host, port = check_address(addr, "address")
    return f"p{kind}:{port}:{host}"


def paths(directory: str) -> dict[str, str]:
    d = Path(directory).absolute()
    return {"db": str(d / DB), "pid": str(d / PIDFILE), "log": str(d / LOGFILE),
            "ctl": str(d / CTL)}


def plan_create(directory: str, schema: str, cluster: str | None,
                join: list[str]) -> list[list[str]]:
    """The commands that make the database file (none if it exists: a restart)."""
    p = paths(directory)
    if Path(p["db"]).exists():
        return []
    if cluster is None:
        if join:
            raise UserError("--join needs --cluster (this member's own Raft address)")
        return [["ovsdb-tool", "create", p["db"], schema]]
    check_address(cluster, "--cluster")
    for remote in join:
        check_address(remote, "--join")
    if not join:
        return [["ovsdb-tool", "create-cluster", p["db"], schema, cluster]]
    return [["ovsdb-tool", "join-cluster", p["db"], DB_NAME, cluster, *join]]


def plan_server(directory: str, listen: list[str], tls: Tls | None) -> list[str]:
    """The ovsdb-server command line of the member in `directory`, detached."""
    p = paths(directory)
    remotes = []
    for addr in listen:
        kind = check_address(addr, "--listen")[0]
        if kind == "ssl" and tls is None:
            raise UserError(f"--listen {addr} needs --private-key, --certificate and --ca-cert")
        remotes.append(f"--remote={passive(addr)}")
    return ["ovsdb-server", "--detach", "--no-chdir", f"--pidfile={p['pid']}",
            f"--log-file={p['log']}", f"--unixctl={p['ctl']}", *remotes,
            *(tls.args() if tls else []), p["db"]]


def run(cmd: list[str], what: str, cwd: str | None = None) -> str:
    """Run one command; its output, or UserError with its last error line."""
    if shutil.which(cmd[0]) is None:
        raise UserError(f"{cmd[0]} is not installed (Debian: apt-get install openvswitch-common,"
                        f" which openvswitch-switch brings)")
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
    if res.returncode != 0:
        last = (res.stderr.strip() or res.stdout.strip() or f"exit {res.returncode}")
        raise UserError(f"cannot {what}: {last.splitlines()[-1]}")
    return res.stdout


def pid_of(directory: str) -> int | None:
    """The running member's process id (None: none running)."""
    try:
        pid = int(Path(paths(directory)["pid"]).read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def start(directory: str, schema: str, listen: list[str], cluster: str | None,
          join: list[str], tls: Tls | None) -> int:
    """Create the database if needed and start its server; its pid.  Refused (nothing
    changed) when a server already runs from `directory` or an argument is bad."""
    if pid_of(directory) is not None:
        raise UserError(f"a fleet store already runs from {directory} (pid "
                        f"{pid_of(directory)}); `wlbridge fleet stop --dir {directory}` first")
    creates = plan_create(directory, schema, cluster, join)
    server = plan_server(directory, listen, tls)
    made = not Path(directory).exists()
    Path(directory).mkdir(parents=True, exist_ok=True)
    try:
        for cmd in creates:
            run(cmd, "create the fleet database")
        run(server, "start ovsdb-server")
    except UserError:
        if creates:
            Path(paths(directory)["db"]).unlink(missing_ok=True)
        if made:
            shutil.rmtree(directory, ignore_errors=True)
        raise
    pid = pid_of(directory)
    if pid is None:
        raise UserError(f"ovsdb-server did not stay up: see {paths(directory)['log']}")
    return pid


def appctl(directory: str, *args: str) -> str:
    return run(["ovs-appctl", "-t", paths(directory)["ctl"], *args],
               f"ask the fleet store in {directory} ({' '.join(args)})")


def cluster_status(directory: str) -> str:
    return appctl(directory, "cluster/status", DB_NAME)


def stop(directory: str, timeout: float = 10.0) -> bool:
    """Stop the member running from `directory` (by its pid); whether one ran."""
    pid = pid_of(directory)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    raise UserError(f"ovsdb-server (pid {pid}) did not stop within {timeout:g}s")


def leave(directory: str, timeout: float = 30.0) -> None:
    """Leave the cluster (the others go on without this member), then stop; the database
    file is kept aside (``wlbridge.db.left``): a member that left cannot rejoin with it."""
    if pid_of(directory) is None:
        raise UserError(f"no fleet store runs from {directory}")
    appctl(directory, "cluster/leave", DB_NAME)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status_or_empty(directory)   # empty: the database is gone (it left)
        if pid_of(directory) is None or not status or "left" in status.lower():
            break
        time.sleep(0.1)
    stop(directory)
    db = Path(paths(directory)["db"])
    if db.exists():
        db.rename(db.with_name(DB + ".left"))


def _status_or_empty(directory: str) -> str:
    try:
        return cluster_status(directory)
    except UserError:
        return ""


def pki(directory: str, names: list[str]) -> dict[str, dict[str, str]]:
    """A CA in `directory` (ovs-pki, made once) and a key and certificate signed by it for
    each name (made once): name -> {private_key, certificate, ca_cert}."""
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise UserError(f"certificate name {name!r}: letters, digits, '.', '_', '-' only")
    d = Path(directory).absolute()
    d.mkdir(parents=True, exist_ok=True)
    log = f"--log={d / 'ovs-pki.log'}"
    if not (d / "switchca" / "cacert.pem").exists():
        run(["ovs-pki", f"--dir={d}", log, "--force", "init"], "make the fleet's CA")
    out = {}
    for name in names:
        key, cert = d / f"{name}-privkey.pem", d / f"{name}-cert.pem"
        if not cert.exists():
            run(["ovs-pki", f"--dir={d}", log, "-b", "--force", "req+sign", name, "switch"],
                f"make the certificate of {name}", cwd=str(d))
        out[name] = {"private_key": str(key), "certificate": str(cert),
                     "ca_cert": str(d / "switchca" / "cacert.pem")}
    return out
