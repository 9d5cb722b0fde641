"""Sleep and resume (issue 24 item 3): the whole VM is suspended to RAM (ACPI S3, ``echo mem
> /sys/power/state``) and woken by QEMU (QMP ``system_wakeup``, `topologies.wifibed.vm.Waker`)
as a laptop's lid is closed and opened: the radios, the station and the APs go through the
kernel's suspend and resume.  After the station is associated again: the guests are
reachable (from the LAN peer) within a second of the association, their bindings are kept,
the addresses are announced again, the LAN is the same one.  Timings are recorded."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from conftest import OUT, record

from topologies.procs import wait_for
from topologies.wifibed.bed import PEER_IP, PEER_NS, SRV_IP, STATION_IP, ping, sh
from topologies.wifibed.product import BRIDGE, wlbridge_cli
from topologies.wifibed.vm import SUSPEND_FOR

NAME = "rs1"
NS = f"wf-{NAME}"
SLEEP = 5


def guest_ip() -> str | None:
    out = sh("ip", "-4", "-o", "addr", "show", "dev", "eth0", netns=NS, check=False)
    m = re.search(r"inet (\S+)/", out)
    return m.group(1) if m else None


def bindings(status: dict) -> dict[str, str]:
    return {b["ip"]: g["port"] for g in status["guests"] for b in g["ips"] if ":" not in b["ip"]}


def test_after_suspend_and_resume_the_guests_are_back_with_their_bindings(bed, wlbridge):
    sh("ip", "addr", "replace", f"{STATION_IP}/24", "dev", BRIDGE)
    sh("ip", "route", "replace", "default", "via", SRV_IP, "dev", BRIDGE)
    sh("ip", "netns", "add", NS)
    try:
        wlbridge_cli("attach", NAME, "--netns", NS, "--dhcp", "--lease-timeout", "60")
        ip = wait_for(guest_ip, 60, 0.5)
        assert ip and wait_for(lambda: ping(PEER_IP, NS), 30, 0.5)
        assert wait_for(lambda: (wlbridge.status().get("lan") or {}).get("confirmed"), 60, 0.5)
        before = wlbridge.status()
        bssid = bed.associated()
        Path(OUT, SUSPEND_FOR).write_text(f"{SLEEP}\n")
        # the kernel's suspend and resume on the console (console.log), should it hang there
        sh("dmesg", "-n", "7", check=False)
        Path("/sys/power/pm_debug_messages").write_text("1\n")
        t0 = time.monotonic()
        res = subprocess.run(["sh", "-c", "echo mem > /sys/power/state"], capture_output=True,
                             text=True, timeout=300, check=False)
        slept = time.monotonic() - t0
        assert res.returncode == 0, f"suspend refused: {res.stderr}"
        # associated again: then the guest must be reachable from the LAN within a second
        associated = wait_for(lambda: bed.associated() == bssid, 120, 0.05)
        t_assoc = time.monotonic()
        assert associated, bed.wpa_status()
        back = wait_for(lambda: ping(ip, PEER_NS, wait=0.2), 30, 0.05)
        reachable = time.monotonic() - t_assoc
        after = wlbridge.status()
        dmesg = sh("dmesg", check=False)
        record("resume", slept=round(slept, 2), to_association=round(t_assoc - t0, 2),
               guest_reachable_after_association=round(reachable, 2),
               suspended=bool(re.search(r"PM: suspend (entry|exit)", dmesg)))
        assert back, (after, wlbridge.proc.output()[-3000:] if wlbridge.proc else "")
        assert re.search(r"PM: suspend exit", dmesg), dmesg[-3000:]
        assert bindings(after) == bindings(before)                     # bindings kept
        assert after["counters"].get("station.announced", 0) > \
            before["counters"].get("station.announced", 0)             # announced again
        assert (after["lan"]["subnet"], after["lan"]["changes"]) == \
            (before["lan"]["subnet"], before["lan"]["changes"])            # the same LAN
        assert reachable <= 1.0, f"guest reachable {reachable:.2f} s after the association"
    finally:
        Path(OUT, SUSPEND_FOR).unlink(missing_ok=True)
        wlbridge_cli("detach", NAME, check=False)
        sh("ip", "netns", "del", NS, check=False)
        os.sync()
