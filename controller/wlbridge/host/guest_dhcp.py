"""The DHCP client of a guest attached with ``wlbridge attach --dhcp``, and its keeper.

The client is busybox ``udhcpc`` run inside the guest's network namespace (``nsenter
--net``), in the foreground, renewing for as long as it runs, with `SCRIPT` as its event
script: the address and default route go on the guest's interface, the DNS servers into a file
of the host's (``$WLBRIDGE_DNS``, in the run directory), never into /etc/resolv.conf (the
host's: the client shares the host's mount namespace).  The keeper copies that file into the
namespace's own resolv.conf with `write_resolv`, which refuses the host's file and symlinks
(a container's /etc/resolv.conf, seen through /proc/PID/root, may be a symlink that would
resolve in the host's tree, or the host's file itself when the container shares /etc).

The keeper (``python -m wlbridge.host.guest_dhcp``, started detached by `start`, its pid kept
in OVSDB by `wlbridge.host.attach`) lives in the root namespace, restarts the client if it
exits, and stops it when the namespace is gone: a client left inside a dead container's
namespace would keep that namespace, and so the guest's port, alive.  SIGTERM (`stop`) makes
the keeper release the lease and exit, whatever the timing: a bound client (its script marks
it) releases the lease itself (``udhcpc -R``); a client stopped before it (re-)bound one — a
container removed a second after it started, its lease taken earlier by the runtime's IPAM —
is killed and the lease given back by one exchange in the namespace (`lease_once` with
``release``: asked for again, bound, then released; the DHCPRELEASE carries the client id,
``01:MAC``, that the server keys the lease by).  `start` returns only once the keeper handles
SIGTERM, so no `stop` comes too early for that.

The keeper also follows the guest's port (``--port``, the host end in the bridge): when the
controller bounces its carrier (`policy.network`: the station joined another LAN, the port
set down and up again by OpenFlow), the client is ended without release and started afresh
once the port is up, without asking for its last address: it gets one of the new LAN at once
(busybox udhcpc itself does not watch the carrier).
"""

from __future__ import annotations

import argparse
import os
import signal
import stat
import subprocess
import sys
import time

POLL = 0.2
START_TIMEOUT = 5.0       # the keeper's start, until it handles SIGTERM
RELEASE_TIMEOUT = 4.0     # the one exchange that gives back a lease the client did not hold
SCRIPT_NAME = "udhcpc.script"
SCRIPT = r"""#!/bin/sh
# udhcpc event script of `wlbridge attach --dhcp` (wlbridge.host.guest_dhcp): runs in the
# guest's network namespace with the host's files; DNS goes to $WLBRIDGE_RESOLV only.
case "$1" in
deconfig)
    # after the release (the keeper stops us): the address stays until the release, held
    # by the kernel while it resolves the server's MAC, has left (flushing drops it)
    [ -n "$WLBRIDGE_BOUND" ] && [ -e "$WLBRIDGE_BOUND.releasing" ] && exit 0
    # $WLBRIDGE_KEEP: an address the runtime set (the lease asked for again) stays meanwhile
    [ -n "$WLBRIDGE_KEEP" ] || ip -4 addr flush dev "$interface"
    [ -z "$WLBRIDGE_BOUND" ] || rm -f "$WLBRIDGE_BOUND"
    ip link set "$interface" up
    ;;
bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/"; then
        ip -4 addr flush dev "$interface"
    fi
    ip addr replace "$ip/${mask:-$subnet}" dev "$interface"
    # the keeper reads it when it stops: a bound client releases its lease itself
    [ -z "$WLBRIDGE_BOUND" ] || echo "$ip $serverid" > "$WLBRIDGE_BOUND"
    if [ -n "$router" ]; then
        set -- $router
        ip -4 route replace default via "$1" dev "$interface"
    fi
    if [ -n "$WLBRIDGE_DNS" ] && [ -n "$dns" ]; then
        {
            echo "# written by wlbridge attach (DHCP on $interface)"
            [ -n "$domain" ] && echo "search $domain"
            for server in $dns; do echo "nameserver $server"; done
        } > "$WLBRIDGE_DNS.new" && mv "$WLBRIDGE_DNS.new" "$WLBRIDGE_DNS"
    fi
    ;;
esac
exit 0
"""


HOST_RESOLV = "/etc/resolv.conf"


def resolv_writable(path: str, host: str = HOST_RESOLV) -> bool:
    """`path` may be written as a namespace's own resolv.conf: not a symlink (nor its
    directory), and not the host's resolv.conf itself (the same file)."""
    try:
        parent = os.lstat(os.path.dirname(path))
    except OSError:
        return False
    if stat.S_ISLNK(parent.st_mode) or not stat.S_ISDIR(parent.st_mode):
        return False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        theirs = os.stat(host)
    except OSError:
        return True
    return (st.st_dev, st.st_ino) != (theirs.st_dev, theirs.st_ino)


def write_resolv(path: str, text: str, host: str = HOST_RESOLV) -> None:
    """Write a namespace's resolv.conf in place (a container's may be a bind mount), never
    through a symlink and never the host's file: OSError otherwise."""
    if not resolv_writable(path, host):
        raise OSError(f"{path} is the host's resolv.conf or a symlink: not written")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def client_argv(netns_path: str, ifname: str, script: str, name: str,
                request: str = "") -> list[str]:
    return ["nsenter", f"--net={netns_path}", "--", "busybox", "udhcpc", "-f", "-R",
            "-i", ifname, "-s", script, "-T", "2", "-A", "5", "-x", f"hostname:{name}",
            *(["-r", request] if request else [])]


def write_script(run_dir: str) -> str:
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    path = os.path.join(run_dir, SCRIPT_NAME)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(SCRIPT)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def start(name: str, netns_path: str, ifname: str, resolv: str | None, run_dir: str,
          keep: str = "", port: str = "") -> int:
    """Start the keeper (detached, its own session); its pid, once it handles SIGTERM (so a
    `stop` at any moment after this returns reaches its lease release).  `keep`: an address
    already on the interface (a runtime set it from an earlier lease): asked for, never
    flushed, and released at the end even if the client never re-bound it; `port`: the
    guest's port on the bridge, whose bounce starts the client afresh."""
    script = write_script(run_dir)
    argv = [sys.executable, "-m", "wlbridge.host.guest_dhcp", "--name", name,
            "--netns-path", netns_path, "--ifname", ifname, "--script", script,
            "--resolv", resolv or "", "--keep", keep, "--port", port]
    with open(os.path.join(run_dir, f"{name}.dhcp.log"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    deadline = time.monotonic() + START_TIMEOUT
    while not _handles_term(proc.pid) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is not None:
        raise OSError(f"the DHCP keeper exited at once ({proc.returncode}); see "
                      f"{run_dir}/{name}.dhcp.log")
    return proc.pid


def _handles_term(pid: int) -> bool:
    """Process `pid` has its own SIGTERM handler (``SigCgt`` in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next((int(line.split()[1], 16) for line in f
                           if line.startswith("SigCgt:")), 0)
    except (OSError, ValueError):
        return False
    return bool(caught & (1 << (signal.SIGTERM - 1)))


LEASE_SCRIPT = r"""#!/bin/sh
# one-shot udhcpc event script (wlbridge.host.guest_dhcp.lease_once): the lease, nothing set;
# to give it back ($WLBRIDGE_RELEASE) the address goes on the interface first, since udhcpc
# unicasts its DHCPRELEASE from that address (a bind that fails without it: nothing sent)
[ "$1" = bound ] || exit 0
set -- $router
echo "$ip ${mask:-$subnet} ${serverid:--} ${1:--}" > "$WLBRIDGE_LEASE"
[ -z "$WLBRIDGE_RELEASE" ] || ip -4 addr add "$ip/${mask:-$subnet}" dev "$interface" 2>/dev/null
exit 0
"""


def lease_once(netns_path: str, ifname: str, name: str, run_dir: str, timeout: float,
               request: str = "", release: bool = False) -> tuple[str, int, str | None] | None:
    """One DHCP exchange on `ifname` in the namespace (busybox udhcpc, quitting once bound):
    the lease stays for the interface's MAC, or with `release` is given back at once (a
    lease whose keeper never ran, ended); `request`: the address to ask for.  (address,
    prefix length, router) or None."""
    import ipaddress

    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    script = os.path.join(run_dir, "udhcpc-once.script")
    tmp = f"{script}.{os.getpid()}"      # keepers ending at once share the run directory
    with open(tmp, "w") as f:
        f.write(LEASE_SCRIPT)
    os.chmod(tmp, 0o755)
    os.replace(tmp, script)
    out = os.path.join(run_dir, f"{name}.lease")
    tries = max(1, int(timeout / 2))
    argv = ["nsenter", f"--net={netns_path}", "--", "busybox", "udhcpc", "-f", "-n",
            "-i", ifname, "-s", script, "-T", "2", "-t", str(tries), "-x", f"hostname:{name}",
            *(["-r", request] if request else []), *(["-R"] if release else ["-q"])]
    env = {**os.environ, "WLBRIDGE_LEASE": out, "WLBRIDGE_RELEASE": "1" if release else ""}
    with open(os.path.join(run_dir, f"{name}.dhcp.log"), "ab") as log:
        client = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log)
        try:
            # quitting once bound (-q) it would not release (busybox 1.35: "entering
            # released state", nothing sent); bound and then terminated (-R), it does
            deadline = time.monotonic() + timeout + 10
            while client.poll() is None and time.monotonic() < deadline \
                    and not (release and os.path.exists(out)):
                time.sleep(0.02)
        finally:
            if client.poll() is None:
                client.terminate()
                try:
                    client.wait(5)
                except subprocess.TimeoutExpired:
                    client.kill()
                    client.wait()
    try:
        with open(out) as f:
            fields = f.read().split()
        os.unlink(out)
    except OSError:
        return None
    if len(fields) < 4:
        return None
    if release:
        sent_to(netns_path, fields[2])
    plen = ipaddress.ip_network(f"0.0.0.0/{fields[1]}").prefixlen
    return fields[0], plen, (fields[3] if fields[3] != "-" else None)


def sent_to(netns_path: str, server: str, timeout: float = 3.5) -> bool:
    """Wait (up to `timeout`: the kernel's 3 ARP probes a second apart) until a packet udhcpc
    unicast to `server` (its DHCPRELEASE) has left the namespace: the kernel holds it while
    it resolves the server's MAC, and a namespace or interface removed meanwhile (a
    runtime's DEL right after) drops it.  False: still unresolved."""
    if server == "-":
        return True
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["nsenter", f"--net={netns_path}", "--", "ip", "-4", "neigh",
                              "show", "to", server], capture_output=True, text=True,
                             check=False).stdout
        if "INCOMPLETE" not in out or time.monotonic() >= deadline:
            return "INCOMPLETE" not in out
        time.sleep(0.02)


def is_keeper(pid: int, name: str) -> bool:
    """`pid` is the keeper of guest `name` (not a process that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"wlbridge.host.guest_dhcp" in args and name.encode() in args


def stop(pid: int, name: str, timeout: float = 5.0 + RELEASE_TIMEOUT + 5.0) -> bool:
    """Stop guest `name`'s keeper (and so its client); False when it was not running."""
    if not is_keeper(pid, name):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while is_keeper(pid, name) and time.monotonic() < deadline:
        _reap_child(pid)
        time.sleep(0.02)
    if is_keeper(pid, name):
        os.kill(pid, signal.SIGKILL)
    _reap_child(pid)
    return True


def _reap_child(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)       # our child when started by this process
    except ChildProcessError:
        pass


def _netns_id(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


IFF_UP = 0x1
SYS_NET = "/sys/class/net"


def port_up(port: str, sys_net: str = SYS_NET) -> bool | None:
    """Is the guest's port (the host end) administratively up?  None: no such port."""
    try:
        with open(os.path.join(sys_net, port, "flags")) as f:
            return bool(int(f.read().strip(), 16) & IFF_UP)
    except (OSError, ValueError):
        return None


def bounced(state: str, up: bool | None) -> tuple[str, bool]:
    """Following the port (`state`: "unknown" until it is first seen up, then "up" or
    "down"): the new state, and whether to start the client afresh now -- only when a port
    seen up went down and is up again (a bounce).  A port not up yet when the keeper starts
    (a runtime sets it up later) is no bounce; a port gone (None) changes nothing."""
    if up is None:
        return state, False
    if up:
        return "up", state == "down"
    return ("down" if state != "unknown" else state), False


def _drop(client: subprocess.Popen | None) -> None:
    """End the client without a release: its lease is of a LAN the station left."""
    if client is not None and client.poll() is None:
        client.kill()
        client.wait()


def _end(client: subprocess.Popen | None, args: argparse.Namespace, netns: int | None,
         bound_file: str) -> None:
    """Stop the client, its lease released whatever the timing: a bound client releases it
    itself (``udhcpc -R``); one stopped before it (re-)bound a lease the server may hold
    (asked for, acked but not yet heard, or the runtime's `--keep` lease) is killed and the
    lease given back by one exchange in the namespace, held open for it meanwhile."""
    if client is None and not args.keep:
        return                            # no client ever ran, no lease was given to us
    bound = _read(bound_file).split()
    fd = _hold_netns(client, args.netns_path, netns)
    held = f"/proc/{os.getpid()}/fd/{fd}"
    try:
        if client is not None and client.poll() is None and len(bound) == 2:
            with open(bound_file + ".releasing", "w"):
                pass                      # the script's deconfig leaves the address
            client.terminate()            # udhcpc -R: releases the lease
            try:
                client.wait(2.0)
                if fd is not None and not sent_to(held, bound[1]):
                    print(f"the release to {bound[1]} may not have left", flush=True)
                if fd is not None and not args.keep:
                    subprocess.run(["nsenter", f"--net={held}", "--", "ip", "-4", "addr",
                                    "flush", "dev", args.ifname], capture_output=True,
                                   check=False)
                return
            except subprocess.TimeoutExpired:
                pass
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        if fd is None:
            print("the namespace is gone: the lease (if any) was not released", flush=True)
            return
        print("the client had not bound its lease: giving it back by one exchange", flush=True)
        got = lease_once(held, args.ifname, args.name, os.path.dirname(args.script),
                         RELEASE_TIMEOUT, args.keep, release=True)
        print(f"lease {got[0]} released" if got else "no lease to release", flush=True)
    finally:
        if fd is not None:
            os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _hold_netns(client: subprocess.Popen | None, path: str, netns: int | None) -> int | None:
    """An fd of the guest's namespace (the client's, else `path` if still the same one)."""
    paths = ([f"/proc/{client.pid}/ns/net"] if client is not None and client.poll() is None
             else []) + ([path] if netns is not None and _netns_id(path) == netns else [])
    for candidate in paths:
        try:
            return os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)      # first: `start` returns once it is set
    signal.signal(signal.SIGINT, on_term)
    p = argparse.ArgumentParser(prog="wlbridge.host.guest_dhcp")
    p.add_argument("--name", required=True)
    p.add_argument("--netns-path", required=True)
    p.add_argument("--ifname", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--resolv", default="")
    p.add_argument("--keep", default="")
    p.add_argument("--port", default="")
    args = p.parse_args(argv)
    netns = _netns_id(args.netns_path)
    dns_file = os.path.join(os.path.dirname(args.script), f"{args.name}.dns")
    bound_file = os.path.join(os.path.dirname(args.script), f"{args.name}.bound")
    for stale in (bound_file, bound_file + ".releasing"):    # a keeper's before this one
        if os.path.exists(stale):
            os.unlink(stale)
    env = {**os.environ, "WLBRIDGE_DNS": dns_file if args.resolv else "",
           "WLBRIDGE_KEEP": args.keep, "WLBRIDGE_BOUND": bound_file}
    client: subprocess.Popen | None = None
    restart_at, copied, port_state, keep = 0.0, None, "unknown", args.keep
    while not stopping and netns is not None and _netns_id(args.netns_path) == netns:
        copied = _copy_dns(dns_file, args.resolv, copied)
        if args.port:
            port_state, afresh = bounced(port_state, port_up(args.port))
            if afresh and client is not None:
                print("the port was bounced (another LAN): starting the client afresh",
                      flush=True)
                _drop(client)
                client, restart_at, keep, args.keep = None, 0.0, "", ""
                env["WLBRIDGE_KEEP"] = ""
                for stale in (bound_file, bound_file + ".releasing"):   # the old LAN's
                    if os.path.exists(stale):
                        os.unlink(stale)
        if (client is None or client.poll() is not None) and time.monotonic() >= restart_at:
            if client is not None:
                print(f"udhcpc exited ({client.returncode}); starting it again", flush=True)
            client = subprocess.Popen(
                client_argv(args.netns_path, args.ifname, args.script, args.name,
                            keep), env=env,
                stdin=subprocess.DEVNULL)
            restart_at = time.monotonic() + 1.0
        time.sleep(POLL)
    _end(client, args, netns, bound_file)
    for path in (dns_file, bound_file, bound_file + ".releasing"):
        try:
            os.unlink(path)
        except OSError:
            pass
    return 0


def _copy_dns(dns_file: str, resolv: str, copied: float | None) -> float | None:
    """Copy the client's DNS servers into the namespace's resolv.conf when they changed."""
    try:
        mtime = os.stat(dns_file).st_mtime_ns
    except OSError:
        return copied
    if mtime == copied or not resolv:
        return copied
    try:
        with open(dns_file) as f:
            write_resolv(resolv, f.read())
    except OSError as exc:
        print(f"DNS servers not written: {exc}", flush=True)
    return mtime


if __name__ == "__main__":
    sys.exit(main())
