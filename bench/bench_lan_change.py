#!/usr/bin/env python3
"""Another network (issue 24 item 4): the station moved between two emulated LANs, guests
re-leased on each (medians over ``--moves``).

    sudo .venv/bin/python bench/bench_lan_change.py [--moves 10] [--guests 2] [--json F]

Two LANs (`topologies.second_lan`: their own subnets, routers, dnsmasq servers), wlbridge on
the first with ``--guests`` namespaces attached with ``wlbridge attach --dhcp``; the station
is moved to the other LAN (`World.move_station`: the carrier goes and comes back, as at a
reassociation) ``--moves`` times, the host's address set as its DHCP client would.  Per move,
from the moment the station's link is on the new AP:

* **LAN known**: ``/status`` names the new LAN (the host's address set, the gateway resolved);
* **guests restart DHCP**: every guest port bounced and up again (their DHCP clients start
  afresh then) -- what wlbridge decides: the target (< 2 s) is on this;
* **re-leased**: every guest has an address of the new LAN; the difference to the previous
  is the DHCP exchange (reported beside, not wlbridge's).

Polled every 10 ms.  Exit status 0 when the median of "guests restart DHCP" is under 2 s.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time
from pathlib import Path

from common import Bench, base_parser, machine, summary, table, write_json

from topologies import World, cleanup_leftovers, free_prefix, second_lan

TARGET = 2.0
POLL = 0.01


def guest_ip(ns: str) -> str | None:
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-4", "-o", "addr", "show", "dev",
                          "eth0"], capture_output=True, text=True, check=False).stdout.split()
    return out[out.index("inet") + 1].split("/")[0] if "inet" in out else None


def port_up(port: str) -> bool:
    try:
        return bool(int(Path(f"/sys/class/net/{port}/flags").read_text(), 16) & 1)
    except (OSError, ValueError):
        return False


def host_on(world: World, bridge: str, table_id: int) -> None:
    station = f"{world.subnet.network_address + 2}/{world.subnet.prefixlen}"
    subprocess.run(["ip", "-4", "addr", "flush", "dev", bridge], check=True)
    subprocess.run(["ip", "addr", "add", station, "dev", bridge], check=True)
    subprocess.run(["ip", "route", "replace", "default", "via",
                    world.router.addr.split("/")[0], "dev", bridge, "table", str(table_id)],
                   check=True)


def main() -> int:
    ap = base_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--guests", type=int, default=2)
    args = ap.parse_args()
    bench = Bench(args.keep_logs)
    bench.require_root()
    ok = False
    try:
        home = bench.world(n_guests=0, router_option=True)
        prefix = free_prefix()
        bench.stack.callback(cleanup_leftovers, prefix)
        other = World(second_lan(prefix, router_option=True), keep_logs=args.keep_logs)
        bench.stack.callback(other.teardown)
        other.build()
        ctl = bench.wlbridge(home, guests=[], setup_args=("--address-manager", "static"))
        table_id = 20000 + int(Path(f"/sys/class/net/{ctl.bridge}/ifindex").read_text())
        bench.stack.callback(subprocess.run, ["ip", "route", "flush", "table", str(table_id)],
                             check=False)
        host_on(home, ctl.bridge, table_id)
        from wlbridge.host.attach import port_name

        names = [f"{home.prefix}-b{i}" for i in range(1, args.guests + 1)]
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
            bench.stack.callback(subprocess.run, ["ip", "netns", "del", name], check=False)
            subprocess.run([sys.executable, "-m", "wlbridge", "attach", name, "--bridge",
                            ctl.bridge, "--run-dir", str(bench.workdir / "run"), "--netns",
                            name, "--dhcp", "--lease-timeout", "30"], check=True,
                           capture_output=True)
            bench.stack.callback(subprocess.run, [sys.executable, "-m", "wlbridge", "detach",
                                                  name, "--bridge", ctl.bridge], check=False,
                                 capture_output=True)
        ports = [port_name(n) for n in names]
        known, restarted, leased = [], [], []
        worlds = [home, other]
        for i in range(args.moves + 1):
            to = worlds[i % 2]   # 0: home (where it starts), then other, home, ...
            if i:
                home.move_station(to)
                t0 = time.monotonic()
                host_on(to, ctl.bridge, table_id)
            else:
                t0 = time.monotonic()
            deadline = t0 + 60
            t_known = t_down = t_up = t_leased = None
            while time.monotonic() < deadline and t_leased is None:
                now = time.monotonic() - t0
                lan = ctl.status().get("lan") or {}
                if t_known is None and lan.get("subnet") == str(to.subnet) and \
                        lan.get("confirmed"):
                    t_known = now
                if t_down is None and not all(port_up(p) for p in ports):
                    t_down = now
                if t_down is not None and t_up is None and all(port_up(p) for p in ports):
                    t_up = now
                ips = [guest_ip(n) for n in names]
                if t_known is not None and all(
                        ip and ipaddress.ip_address(ip) in to.subnet for ip in ips):
                    t_leased = now
                time.sleep(POLL)
            if t_leased is None or t_known is None:
                raise RuntimeError(f"move {i} to {to.subnet}: not re-leased within 60 s:\n"
                                   f"{ctl.logs()[-3000:]}")
            if i:   # (move 0: the first LAN learnt at the start)
                known.append(t_known)
                restarted.append(t_up if t_up is not None else float("nan"))
                leased.append(t_leased)
                print(f"  move {i} to {to.subnet}: LAN known {t_known:.2f} s, ports back up "
                      f"{t_up if t_up is None else round(t_up, 2)} s, re-leased "
                      f"{t_leased:.2f} s", flush=True)
        dhcp = [b - a for a, b in zip(restarted, leased)]
        rows = [[name, *(round(v, 2) for v in (s["median"], s["min"], s["max"]))]
                for name, s in (("LAN known", summary(known)),
                                ("guests restart DHCP (wlbridge)", summary(restarted)),
                                ("re-leased (DHCP included)", summary(leased)),
                                ("DHCP exchange", summary(dhcp)))]
        print(table(f"station moved {args.moves} times, {args.guests} guests (seconds)",
                    ["from the move to", "median", "min", "max"], rows))
        ok = summary(restarted)["median"] < TARGET
        print(f"target: guests restart DHCP < {TARGET} s (median): {'met' if ok else 'MISSED'}")
        write_json(args.json, {"machine": machine(), "lan_known": known,
                               "guests_restart_dhcp": restarted, "re_leased": leased,
                               "dhcp_exchange": dhcp, "target_met": ok})
    finally:
        bench.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
