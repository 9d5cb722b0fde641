"""The DHCP client of a guest attached with ``wlbridge attach --dhcp``, and its keeper.

The client is busybox ``udhcpc`` run inside the guest's network namespace (``nsenter
--net``), in the foreground, renewing for as long as it runs, with `SCRIPT` as its event
script: the address and default route go on the guest's interface, the DNS servers into the
namespace's own resolv.conf (``$WLBRIDGE_RESOLV``; none when empty), never into
/etc/resolv.conf (the host's: the client shares the host's mount namespace).

The keeper (``python -m wlbridge.host.guest_dhcp``, started detached by `start`, its pid kept
in OVSDB by `wlbridge.host.attach`) lives in the root namespace, restarts the client if it
exits, and stops it when the namespace is gone: a client left inside a dead container's
namespace would keep that namespace, and so the guest's port, alive.  SIGTERM (`stop`) makes
the client release its lease and the keeper exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

POLL = 0.2
SCRIPT_NAME = "udhcpc.script"
SCRIPT = r"""#!/bin/sh
# udhcpc event script of `wlbridge attach --dhcp` (wlbridge.host.guest_dhcp): runs in the
# guest's network namespace with the host's files; DNS goes to $WLBRIDGE_RESOLV only.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    if ! ip -4 addr show dev "$interface" | grep -q "inet $ip/"; then
        ip -4 addr flush dev "$interface"
    fi
    ip addr replace "$ip/${mask:-$subnet}" dev "$interface"
    if [ -n "$router" ]; then
        set -- $router
        ip -4 route replace default via "$1" dev "$interface"
    fi
    if [ -n "$WLBRIDGE_RESOLV" ] && [ -n "$dns" ]; then
        {
            echo "# written by wlbridge attach (DHCP on $interface)"
            [ -n "$domain" ] && echo "search $domain"
            for server in $dns; do echo "nameserver $server"; done
        } > "$WLBRIDGE_RESOLV.new" && mv "$WLBRIDGE_RESOLV.new" "$WLBRIDGE_RESOLV"
    fi
    ;;
esac
exit 0
"""


def client_argv(netns_path: str, ifname: str, script: str, name: str) -> list[str]:
    return ["nsenter", f"--net={netns_path}", "--", "busybox", "udhcpc", "-f", "-R",
            "-i", ifname, "-s", script, "-T", "2", "-A", "5", "-x", f"hostname:{name}"]


def write_script(run_dir: str) -> str:
    os.makedirs(run_dir, mode=0o755, exist_ok=True)
    path = os.path.join(run_dir, SCRIPT_NAME)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(SCRIPT)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


def start(name: str, netns_path: str, ifname: str, resolv: str | None, run_dir: str) -> int:
    """Start the keeper (detached, its own session); its pid."""
    script = write_script(run_dir)
    argv = [sys.executable, "-m", "wlbridge.host.guest_dhcp", "--name", name,
            "--netns-path", netns_path, "--ifname", ifname, "--script", script,
            "--resolv", resolv or ""]
    with open(os.path.join(run_dir, f"{name}.dhcp.log"), "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True)
    time.sleep(0.05)
    if proc.poll() is not None:
        raise OSError(f"the DHCP keeper exited at once ({proc.returncode}); see "
                      f"{run_dir}/{name}.dhcp.log")
    return proc.pid


def is_keeper(pid: int, name: str) -> bool:
    """`pid` is the keeper of guest `name` (not a process that reused the pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"wlbridge.host.guest_dhcp" in args and name.encode() in args


def stop(pid: int, name: str, timeout: float = 5.0) -> bool:
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


def _end(client: subprocess.Popen | None) -> None:
    if client is None or client.poll() is not None:
        return
    client.terminate()                    # udhcpc -R: releases the lease
    try:
        client.wait(2.0)
    except subprocess.TimeoutExpired:
        client.kill()
        client.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="wlbridge.host.guest_dhcp")
    p.add_argument("--name", required=True)
    p.add_argument("--netns-path", required=True)
    p.add_argument("--ifname", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--resolv", default="")
    args = p.parse_args(argv)
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    netns = _netns_id(args.netns_path)
    env = {**os.environ, "WLBRIDGE_RESOLV": args.resolv}
    client: subprocess.Popen | None = None
    restart_at = 0.0
    while not stopping and netns is not None and _netns_id(args.netns_path) == netns:
        if (client is None or client.poll() is not None) and time.monotonic() >= restart_at:
            if client is not None:
                print(f"udhcpc exited ({client.returncode}); starting it again", flush=True)
            client = subprocess.Popen(
                client_argv(args.netns_path, args.ifname, args.script, args.name), env=env,
                stdin=subprocess.DEVNULL)
            restart_at = time.monotonic() + 1.0
        time.sleep(POLL)
    _end(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
