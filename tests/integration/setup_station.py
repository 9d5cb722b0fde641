"""Shared by the `wlbridge setup` / `teardown` integration tests (no fixtures: each test
module wraps `station` in its own ``lan`` fixture).

Each station is a veth whose peer lives in a namespace that plays the LAN (gateway
10.231.A.1, a host 10.231.B.1 behind it).  All names start with ``ws`` + 3 random
characters; everything is removed even when a test fails.  ``ip``/``ovs-vsctl``/
``ovs-ofctl``/``ethtool`` are used only to build the station and to verify.  Import
it only after checking for root and a running Open vSwitch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from wlbridge.cli import bridge_setup, bridge_teardown
from wlbridge.errors import UserError
from wlbridge.host import hostnet

NO_CONTROLLER = "tcp:127.0.0.1:1"   # nothing listens there: never another engineer's controller


def sh(*cmd: str, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and res.returncode:
        raise AssertionError(f"{' '.join(cmd)}: {res.stderr.strip()}")
    return res.stdout


def free_octets(n: int) -> list[int]:
    used = sh("ip", "-4", "route", "show", "table", "all") + sh("ip", "-4", "addr")
    free = [o for o in range(100, 250) if f"10.231.{o}." not in used]
    return random.sample(free, n)


def run_in_process(module, args: argparse.Namespace) -> tuple[int, str]:
    """`module.main(args)` the way wlbridge.cli.main runs it; (exit status, output)."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = module.main(args)
    except UserError as exc:
        buf.write(f"ERROR: {exc}\n")
        rc = 2
    return rc, buf.getvalue()


@dataclass
class Lan:
    tag: str
    ns: str
    uplink: str
    peer: str
    bridge: str
    gw4: str
    host4: str
    net4: str
    remote4: str        # a host behind the gateway (on the peer's lo)
    remote_net4: str
    gw6: str
    host6: str
    remote6: str
    remote_net6: str

    def run(self, command: str, *extra: str) -> tuple[int, str]:
        """Run `wlbridge COMMAND` in-process the way wlbridge.cli.main does; (rc, output)."""
        module = bridge_setup if command == "setup" else bridge_teardown
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        argv = ["--bridge", self.bridge, *extra]
        if command == "setup":
            argv += ["--uplink", self.uplink, "--datapath", "netdev",
                     "--controller", NO_CONTROLLER]
        return run_in_process(module, parser.parse_args(argv))


def wait_dad(dev: str, timeout: float = 10.0) -> None:
    """Wait until no IPv6 address of `dev` is tentative (so snapshots are stable)."""
    deadline = time.monotonic() + timeout
    while sh("ip", "-6", "addr", "show", "dev", dev, "tentative").strip():
        assert time.monotonic() < deadline, f"IPv6 DAD on {dev} did not finish"
        time.sleep(0.1)


def _cleanup(tag: str) -> None:
    for br in sh("ovs-vsctl", "list-br").split():
        if br.startswith(tag):
            sh("ovs-vsctl", "--if-exists", "del-br", br, check=False)
    for link in json.loads(sh("ip", "-j", "link", "show")):
        if link["ifname"].startswith(tag):
            sh("ip", "link", "del", link["ifname"], check=False)
    sh("ip", "netns", "del", f"{tag}n", check=False)


@contextlib.contextmanager
def station() -> Iterator[Lan]:
    """A fresh station and LAN (see the module docstring), removed afterwards."""
    tag = "ws" + "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    a, b = free_octets(2)
    u6 = f"fd31:{random.randrange(0x1000, 0xffff):x}"
    lan = Lan(tag=tag, ns=f"{tag}n", uplink=f"{tag}u", peer=f"{tag}p", bridge=f"{tag}br",
              gw4=f"10.231.{a}.1", host4=f"10.231.{a}.2", net4=f"10.231.{a}.0/24",
              remote4=f"10.231.{b}.1", remote_net4=f"10.231.{b}.0/24",
              gw6=f"{u6}:{a:x}::1", host6=f"{u6}:{a:x}::2", remote6=f"{u6}:{b:x}::1",
              remote_net6=f"{u6}:{b:x}::/64")
    try:
        sh("ip", "netns", "add", lan.ns)
        sh("ip", "link", "add", lan.uplink, "type", "veth", "peer", "name", lan.peer,
           "netns", lan.ns)
        nsx = ("ip", "netns", "exec", lan.ns)
        sh(*nsx, "ip", "link", "set", "lo", "up")
        sh(*nsx, "ip", "link", "set", lan.peer, "up")
        sh(*nsx, "ethtool", "-K", lan.peer, "tx", "off")
        sh(*nsx, "ip", "addr", "add", f"{lan.gw4}/24", "dev", lan.peer)
        sh(*nsx, "ip", "addr", "add", f"{lan.gw6}/64", "dev", lan.peer, "nodad")
        sh(*nsx, "ip", "addr", "add", f"{lan.remote4}/32", "dev", "lo")
        sh(*nsx, "ip", "addr", "add", f"{lan.remote6}/128", "dev", "lo")
        with open(f"/proc/sys/net/ipv6/conf/{lan.uplink}/accept_dad", "w") as f:
            f.write("0")    # no tentative link-local: stable before/after snapshots
        sh("ip", "link", "set", lan.uplink, "up")
        sh("ip", "addr", "add", f"{lan.host4}/24", "brd", "+", "dev", lan.uplink)
        sh("ip", "addr", "add", f"{lan.host6}/64", "dev", lan.uplink, "nodad")
        sh("ip", "route", "add", lan.remote_net4, "via", lan.gw4, "dev", lan.uplink,
           "metric", "50", "proto", "static")
        sh("ip", "-6", "route", "add", lan.remote_net6, "via", lan.gw6, "dev", lan.uplink)
        wait_dad(lan.uplink)
        yield lan
    finally:
        _cleanup(tag)


# ---- observation helpers (iproute2/ovs-vsctl, independent of the product) ----
_VOLATILE = {"valid_life_time", "preferred_life_time", "expires"}


def host_state(lan: Lan) -> dict[str, Any]:
    """Addresses, routes and link attributes of the test interfaces."""
    links = {}
    for name in (lan.uplink, lan.bridge):
        out = subprocess.run(["ip", "-j", "-d", "addr", "show", "dev", name],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            continue
        link = json.loads(out.stdout)[0]
        if "UP" in link["flags"] and any(a.get("tentative") for a in link["addr_info"]):
            # A bridge setup just made has a tentative link-local for ~1 s (DAD): a snapshot
            # taken in that second differed from a later one (a flake under load).
            wait_dad(name)
            return host_state(lan)
        links[name] = {
            "flags": sorted(link["flags"]), "mac": link["address"], "mtu": link["mtu"],
            "operstate": link["operstate"], "master": link.get("master"),
            "addrs": sorted(json.dumps({k: v for k, v in a.items() if k not in _VOLATILE},
                                       sort_keys=True) for a in link["addr_info"]),
        }
    routes = []
    for fam in ("-4", "-6"):
        for r in json.loads(sh("ip", "-j", fam, "route", "show", "table", "main")):
            if r.get("dev") in (lan.uplink, lan.bridge):
                routes.append(json.dumps({k: v for k, v in r.items() if k not in _VOLATILE},
                                         sort_keys=True))
    tx = [ln.strip() for ln in sh("ethtool", "-k", lan.uplink).splitlines()
          if "tx-checksum" in ln]
    return {"links": links, "routes": sorted(routes), "tx": tx, "tc": tc_state(lan.uplink),
            "bridges": sorted(b for b in sh("ovs-vsctl", "list-br").split()
                              if b.startswith(lan.tag))}


def tc_state(dev: str) -> dict[str, list[str]]:
    """The qdiscs of `dev` and the filters on its ingress/egress hooks, as `tc -j` shows."""
    found = {"qdiscs": json.loads(sh("tc", "-j", "qdisc", "show", "dev", dev) or "[]")}
    for hook in ("ingress", "egress"):
        found[hook] = json.loads(sh("tc", "-j", "filter", "show", "dev", dev, hook) or "[]")
    return {k: sorted(json.dumps(v, sort_keys=True) for v in items) for k, items in found.items()}


def ingress_filters(dev: str) -> list[dict[str, Any]]:
    """The filters on `dev`'s ingress that carry options (one per handle)."""
    return [f for f in json.loads(sh("tc", "-j", "filter", "show", "dev", dev, "ingress")
                                  or "[]") if "options" in f]


def has_ingress_qdisc(dev: str) -> bool:
    return any(json.loads(q)["kind"] in ("ingress", "clsact") for q in tc_state(dev)["qdiscs"])


def assert_isolated(dev: str) -> None:
    """wlbridge's ingress filter on `dev`: the eBPF one, or u32/gact where that failed."""
    filters = ingress_filters(dev)
    names = [f["options"].get("bpf_name") for f in filters if f["kind"] == "bpf"]
    assert names == ["wlbridge-uplink"] or {f["kind"] for f in filters} == {"u32"}, filters
    assert all(f["pref"] >= hostnet.ISOLATION_PRIO - len(hostnet.HOST_ETHERTYPES)
               for f in filters), filters


def assert_same(after: dict[str, Any], before: dict[str, Any]) -> None:
    """Host state equal, with a readable diff when not."""
    for name in sorted(set(before["links"]) | set(after["links"])):
        b, a = before["links"].get(name), after["links"].get(name)
        assert a is not None and b is not None, f"{name}: before {b}, after {a}"
        for key in b:
            assert a[key] == b[key], f"{name} {key}: before {b[key]}, after {a[key]}"
    for key in ("routes", "tx", "tc", "bridges"):
        assert after[key] == before[key], key


def vswitchd_settled(ifname: str) -> None:
    """Return once ovs-vswitchd has handled what happened before the call (a link change it
    hears of by netlink, a database change): two database changes in a row, each of which
    ovs-vsctl waits for ovs-vswitchd to finish reconfiguring after (``next_cfg``), so at least
    one whole main-loop iteration -- netlink events included -- lies between them and the
    second reconfiguration sees its outcome.  What a test asserts after this is what
    ovs-vswitchd left, not a state it has not reached yet (no sleep and hope)."""
    sh("ovs-vsctl", "--timeout=10", "set", "Interface", ifname, "external_ids:wlbridge-test=1")
    sh("ovs-vsctl", "--timeout=10", "remove", "Interface", ifname, "external_ids",
       "wlbridge-test")


def vsctl_get(table: str, record: str, column: str) -> str:
    return sh("ovs-vsctl", "get", table, record, column).strip()


def ping(dst: str) -> bool:
    return subprocess.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", dst],
                          capture_output=True, check=False).returncode == 0
