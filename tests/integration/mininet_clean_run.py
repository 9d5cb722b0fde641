"""Inside `mininet_sandbox.sh` (never on the machine itself), for test_mininet.py's `mn -c` test:

    mininet_sandbox.sh OUTDIR python mininet_clean_run.py SWITCH PREFIX

`wlbridge run` as the controller, a Mininet run of the wifilan topology (Mininet's Python API)
killed with SIGKILL (no teardown), the controller stopped (it is the user's: `mn -c` leaves it
alone), then Mininet's real `mn -c --custom topologies/mininet_wifi.py`.  Prints one JSON line
of what was left (the test asserts on it); before `mn -c`, a `ping` and a /tmp/*.log are
planted in the sandbox, to show that `mn -c` did its broad cleanup here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_mininet import ROOT, Wlbridge, api, in_system_python, leftover_processes

from topologies.ovs import list_bridges

OUT = Path("/run/out")        # the test's directory, mounted by mininet_sandbox.sh


def alive(pid: int) -> bool:
    """Running (a zombie is dead: only its parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def main() -> None:
    if os.environ.get("WLBRIDGE_SANDBOX") != "inside":
        print(f"{sys.argv[0]}: runs `mn -c`: only inside mininet_sandbox.sh", file=sys.stderr)
        sys.exit(2)
    switch, prefix = sys.argv[1:3]
    ctl = Wlbridge(switch, OUT)
    facts: dict = {}
    try:
        proc = api({"switch": switch, "prefix": prefix, "port": ctl.port, "datapath": "user"},
                   switch, hold=True)
        seen = []
        for line in proc.stdout:    # Mininet's warnings first; EOF if it exits without JSON
            seen.append(line)
            if line.startswith("{"):
                break
        if not (seen and seen[-1].startswith("{")):
            raise SystemExit("the Mininet run printed no JSON:\n" + "".join(seen))
        pids = json.loads(seen[-1])["pids"]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        facts["bridge_before"] = switch in list_bridges()
        facts["left_before"] = leftover_processes(switch)
    finally:
        ctl.stop()
    ping = subprocess.Popen(["ping", "-i", "1", "127.0.0.1"], stdout=subprocess.DEVNULL)
    Path("/tmp/sandbox-canary.log").write_text("mn -c removes /tmp/*.log\n")
    res = subprocess.run(["mn", "-c", "--custom", str(ROOT / "topologies" / "mininet_wifi.py")],
                         capture_output=True, text=True, timeout=120, check=False)
    facts.update(
        mn_c_rc=res.returncode, mn_c_output=res.stdout + res.stderr,
        sandbox_ping_alive=ping.poll() is None,
        sandbox_log_left=Path("/tmp/sandbox-canary.log").exists(),
        marked=in_system_python("from topologies.mnlan import marked_pids; "
                                "print(marked_pids(sys.argv[2]))", switch),
        left=leftover_processes(switch),
        node_pids_alive=[p for p in pids.values() if alive(p)],
        bridges=list_bridges(),
        workdirs=[str(p) for p in Path("/tmp").glob("wlbridge-mininet:*")],
        links=[ln.split(":")[1].strip() for ln in subprocess.run(
            ["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout.splitlines()],
    )
    if ping.poll() is None:
        ping.kill()
    print(json.dumps(facts), flush=True)


if __name__ == "__main__":
    main()
