"""DHCPv6 through the one-MAC AP with a real dnsmasq (DHCPv6) and real ISC ``dhclient -6``
(issue 12, items 4 and 5).

Each guest's Solicit/Request leaves with the station MAC; dnsmasq answers to the guest's
link-local address; the controller delivers the Reply to the right guest and binds the
leased address (source ``dhcp6``), so that traffic for it reaches the guest.

Neighbor Discovery through wlbridge (rewriting the link-layer options of NS/NA to the station
MAC) is not part of this test: the router's neighbour entries for the guests' addresses are set
to the station MAC by hand -- what ND rewriting makes the router learn -- and the guests'
entry for the router is set to the router's MAC (and the on-link prefix, an RA's job, is added
by hand).  The AP's one-MAC filter stays on.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess

from harness import ap_foreign, wait_for

from topologies.procs import WaitTimeout

PREFIX6 = "2001:db8:d6::"
ROUTER6 = PREFIX6 + "1"
VALID = 300  # dnsmasq's lease time for the range
SCRIPT = """#!/bin/sh
# dhclient -6 script: records the event, configures the address in this namespace only.
echo "$reason ${new_ip6_address:-}" >> %(events)s
case "$reason" in
  BOUND6|RENEW6|REBIND6|REBOOT6)
    [ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/128" dev "$interface" \\
      nodad valid_lft "${new_max_life:-forever}" preferred_lft "${new_preferred_life:-forever}" ;;
  RELEASE6|EXPIRE6|STOP6)
    [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/128" dev "$interface" ;;
esac
exit 0
"""


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def link_local(host) -> str:
    """The host's link-local address once DAD is done with it: dhclient -6 binds to it, and
    exits ("Can't bind to dhcp address: Cannot assign requested address") while it is still
    tentative."""
    return wait_for(lambda: host.link_local, timeout=10,
                    what=f"a usable link-local address on {host.name}: {host.addrs6()}")


def start_dnsmasq6(world):
    r = world.router
    r.run("ip", "-6", "addr", "add", ROUTER6 + "/64", "dev", r.ifname, "nodad", check=True)
    workdir = world.tmp_path("dnsmasq6")
    workdir.mkdir()
    argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts",
            "--no-resolv", "--port=0", f"--interface={r.ifname}", "--bind-interfaces",
            f"--dhcp-range={PREFIX6}100,{PREFIX6}1ff,64,{VALID}",
            f"--dhcp-leasefile={workdir / 'leases'}", "--log-dhcp",
            f"--log-facility={workdir / 'dnsmasq.log'}", f"--pid-file={workdir / 'pid'}"]
    proc = r.popen(*argv, name="dnsmasq6")
    log = workdir / "dnsmasq.log"
    wait_for(lambda: not proc.alive or (log.exists() and "DHCPv6" in log.read_text()),
             timeout=10, what="dnsmasq (DHCPv6) to start")
    assert proc.alive, proc.output()
    return proc, log, workdir / "leases"


def dhclient6(world, guest):
    """ISC dhclient -6 on a guest, started once its link-local address is usable."""
    link_local(guest)
    files = world.tmp_path("dhcp6")
    files.mkdir(exist_ok=True)
    events = files / f"{guest.name}.events"
    script = files / f"{guest.name}.script"
    script.write_text(SCRIPT % {"events": events})
    script.chmod(0o755)
    conf = files / f"{guest.name}.conf"
    conf.write_text("timeout 20;\nretry 2;\ninitial-interval 1;\n")
    argv = ["dhclient", "-6", "-d", "-v", "-D", "LL", "-cf", str(conf),
            "-lf", str(files / f"{guest.name}.leases"), "-pf", str(files / f"{guest.name}.pid"),
            "-sf", str(script), guest.ifname]
    return guest.popen(*argv, name=f"{guest.name}-dhclient6"), events


def running(proc) -> bool:
    """True while a DHCP client runs; its output in the failure when it exited."""
    assert proc.alive, f"{proc.name} exited ({proc.returncode}):\n{_tail(proc.output())}"
    return True


def leased6(events) -> str | None:
    if not events.exists():
        return None
    for line in events.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("BOUND6", "REBOOT6"):
            return parts[1]
    return None


def test_dhclient6_gets_a_lease_through_the_one_mac_ap(make_world, wlbridge_on):
    world = make_world(prefix="d6x" + secrets.token_hex(1), static_guests=False)
    g1, g2 = world.guests
    station = world.station.mac
    _, log, leases = start_dnsmasq6(world)
    router = world.router
    for g in (g1, g2):  # what ND rewriting teaches the router (see the module docstring)
        router.run("ip", "-6", "neigh", "replace", link_local(g), "lladdr", station, "dev",
                   router.ifname, "nud", "permanent", check=True)
        g.run("ip", "-6", "neigh", "replace", ROUTER6, "lladdr", router.mac, "dev", g.ifname,
              "nud", "permanent", check=True)
        # dhclient -6 configures a /128; the on-link prefix would come from an RA (no radvd)
        g.run("ip", "-6", "route", "replace", PREFIX6 + "/64", "dev", g.ifname, check=True)
    wl = wlbridge_on(world)

    def diag() -> str:
        return (f"--- controller ---\n{_tail(wl.logs())}\n--- counters ---\n{wl.counters()}\n"
                f"--- dnsmasq ---\n{_tail(log.read_text())}\n--- AP ---\n{world.ap_counters()}")

    clients = {g.name: dhclient6(world, g) for g in (g1, g2)}
    got = {}
    for g in (g1, g2):
        proc, events = clients[g.name]
        try:
            got[g.name] = wait_for(lambda proc=proc, events=events: running(proc)
                                   and leased6(events), timeout=30,
                                   what=f"{g.name}'s DHCPv6 lease")
        except WaitTimeout as exc:  # diagnostics from when time ran out
            raise AssertionError(f"{exc}\n{_tail(proc.output())}\n{diag()}") from None
    a1, a2 = got[g1.name], got[g2.name]
    assert a1 != a2 and all(ipaddress.IPv6Address(a) in ipaddress.IPv6Network(PREFIX6 + "/64")
                            for a in (a1, a2)), (got, diag())

    for g, a in ((g1, a1), (g2, a2)):
        b = wl.wait_bound(a, g.port, timeout=10)
        assert b["source"] == "dhcp6" and b["mac"] == g.mac, (b, diag())
        assert b["lease"] == VALID and 0 < b["expires_in"] <= VALID, b
        router.run("ip", "-6", "neigh", "replace", a, "lladdr", station, "dev", router.ifname,
                   "nud", "permanent", check=True)
        res = router.run("ping", "-6", "-n", "-q", "-c", "2", "-W", "2", "-i", "0.2", a)
        assert res.returncode == 0, f"router -> {g.name} ({a})\n{res.stdout}\n{diag()}"
    counters = wl.counters()
    assert counters.get("dhcp6.reply.to_guest", 0) >= 2, counters
    assert counters.get("refused.dhcp6-server", 0) == 0, counters
    text = leases.read_text()
    assert a1 in text and a2 in text, text
    # No wait needed: the guests answered the router's pings through the AP, so what they
    # sent before has passed the AP's counters already.
    assert ap_foreign(world) == 0, f"the AP saw foreign MACs\n{diag()}"


HOST_SCRIPT = """#!/bin/sh
# Records the lease only: configures nothing (this runs in the ROOT namespace).
echo "$reason ${new_ip6_address:-}" >> %(events)s
exit 0
"""


def test_host_dhclient6_on_the_internal_port_still_gets_its_lease(make_world, wlbridge_on,
                                                                   tmp_path):
    """The host's own DHCPv6 client on the bridge: its Reply matches no guest transaction
    and goes to LOCAL; nothing is bound to a guest."""
    world = make_world(prefix="d6x" + secrets.token_hex(1), static_guests=False)
    _, log, leases = start_dnsmasq6(world)
    wl = wlbridge_on(world)
    def link_local_ready() -> bool:  # present and done with DAD (dhclient -6 binds to it)
        out = subprocess_out("ip", "-6", "-o", "addr", "show", "dev", wl.bridge, "scope", "link")
        return "fe80::" in out and "tentative" not in out

    wait_for(link_local_ready, timeout=10, what=f"a usable link-local address on {wl.bridge}")
    files = tmp_path / "host6"
    files.mkdir()
    events, script = files / "events", files / "script"
    script.write_text(HOST_SCRIPT % {"events": events})
    script.chmod(0o755)
    (files / "conf").write_text("timeout 20;\nretry 2;\ninitial-interval 1;\n")
    argv = ["dhclient", "-6", "-d", "-v", "-D", "LL", "-cf", str(files / "conf"),
            "-lf", str(files / "leases"), "-pf", str(files / "pid"), "-sf", str(script),
            wl.bridge]
    client = world.start("host-dhclient6", None, argv)  # root namespace; stopped below
    try:
        address = wait_for(lambda: leased6(events), timeout=30,
                           what=f"the host's DHCPv6 lease\n{_tail(client.output())}\n"
                                f"{_tail(log.read_text())}\n{wl.counters()}")
        counters = wl.counters()
        assert counters.get("dhcp6.reply.to_host", 0) >= 1, counters
        assert counters.get("dhcp6.reply.to_guest", 0) == 0, counters
        assert wl.bound(address) is None, wl.status()["guests"]
        assert address in leases.read_text()
    finally:
        client.stop()
        assert not client.alive
    assert ap_foreign(world) == 0, world.ap_counters()


def subprocess_out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
