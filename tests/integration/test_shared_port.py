"""Several guests behind one guest port (issue 22, item 3), in the emulated Wi-Fi LAN: a
Linux bridge with three namespaces behind one OVS port (`topologies.SharedPort`), as a
Linux bridge, a VM with nested guests or a container host would put them.  All three reach
the LAN and are reached from it, by DHCP and with static addresses, over IPv4 and IPv6,
through the one-MAC AP (which sees only the station's MAC); a guest on another port reaches
them; the port's status lists the three MACs with each address on its own."""

from __future__ import annotations

from harness import ap_foreign, wait_for

from topologies import SharedPort, slaac_address


def _tail(text: str, n: int = 40) -> str:
    return "\n".join(text.splitlines()[-n:])


def diag(world, wl) -> str:
    parts = [f"--- controller log (tail) ---\n{_tail(wl.logs())}"]
    try:
        parts.append(f"--- status guests ---\n{wl.status()['guests']}")
        parts.append(f"--- counters ---\n{wl.counters()}")
    except OSError as exc:
        parts.append(f"--- status unavailable: {exc}")
    parts.append(f"--- dnsmasq log (tail) ---\n{_tail(world.dnsmasq_log(), 20)}")
    parts.append(f"--- flows ---\n{wl.flows()}")
    return "\n".join(parts)


def shared_world(make_world, wlbridge_on, **lan):
    """Three guests behind one shared port, a fourth on a port of its own."""
    world = make_world(n_guests=4, ipv6=True, **lan)
    behind, alone = world.guests[:3], world.guests[3]
    shared = SharedPort(world, behind).create()
    wl = wlbridge_on(world, guests=[shared, alone])
    return world, wl, shared, behind, alone


def assert_port_carries(wl, shared, guests, addrs) -> None:
    """The shared port's status entry: the guests' MACs, each address bound to its own."""
    entry = next(g for g in wl.status()["guests"] if g["port"] == shared.port)
    assert sorted(entry["macs"]) == sorted(g.mac for g in guests), entry
    mine = {a["ip"]: a["mac"] for a in entry["ips"]}
    for g, addr in zip(guests, addrs):
        assert mine.get(addr) == g.mac, (addr, g.mac, entry)


def assert_lan_both_ways(world, wl, guests, addrs, *, v6: bool = False) -> None:
    peer = world.peers[0]
    peer_ip = peer.addr6.split("/")[0] if v6 else peer.ip
    for g, addr in zip(guests, addrs):
        ping = g.ping6 if v6 else g.ping
        back = peer.ping6 if v6 else peer.ping
        assert ping(peer_ip, count=2, src=addr), f"{g.name} -> peer\n{diag(world, wl)}"
        assert back(addr, count=2), f"peer -> {g.name} ({addr})\n{diag(world, wl)}"


def test_three_guests_behind_one_port_get_dhcp_and_slaac_and_reach_the_lan(make_world,
                                                                          wlbridge_on):
    world, wl, shared, behind, _ = shared_world(make_world, wlbridge_on, static_guests=False)
    leases = []
    for g in behind:
        lease = g.dhcp("dhclient", timeout=20)
        assert lease, f"{g.name} got no lease\n{diag(world, wl)}"
        leases.append(lease)
    for g, lease in zip(behind, leases):
        b = wl.wait_bound(lease, shared.port)
        assert (b["source"], b["mac"]) == ("dhcp", g.mac), b
    assert_port_carries(wl, shared, behind, leases)
    assert_lan_both_ways(world, wl, behind, leases)
    # IPv6: SLAAC from the router's adverts, each guest's own
    for g in behind:
        g.restart_ipv6()
    addrs6 = [str(slaac_address(world.subnet6, g.mac)) for g in behind]
    for g, a in zip(behind, addrs6):
        assert g.wait_ip6(a, timeout=20), f"{g.name}: no SLAAC {a}\n{diag(world, wl)}"
    assert_lan_both_ways(world, wl, behind, addrs6, v6=True)
    assert_port_carries(wl, shared, behind, addrs6)
    assert ap_foreign(world) == 0, diag(world, wl)
    counters = wl.counters()
    assert not {k for k in counters if k.startswith("refused.")} - {"refused.nd-sll-mismatch"}, \
        counters


def test_three_static_guests_behind_one_port_reach_the_lan_and_another_port(make_world,
                                                                           wlbridge_on):
    world, wl, shared, behind, alone = shared_world(make_world, wlbridge_on,
                                                    static_guests6=True)
    addrs = [g.ip for g in behind]
    addrs6 = [g.addr6.split("/")[0] for g in behind]
    for g in [*behind, alone]:
        g.restart_ipv6()
    for g, a in zip(behind, addrs6):
        assert g.wait_ip6(a, timeout=15), f"{g.name}: {a} not usable\n{diag(world, wl)}"
    assert_lan_both_ways(world, wl, behind, addrs)
    assert_lan_both_ways(world, wl, behind, addrs6, v6=True)
    assert_port_carries(wl, shared, behind, addrs + addrs6)
    # siblings reach each other behind the port; the guest on the other port reaches them
    first, *others = behind
    for g in others:
        assert first.ping(g.ip, count=2), f"{first.name} -> {g.name}\n{diag(world, wl)}"
        assert alone.ping(g.ip, count=2), f"{alone.name} -> {g.name}\n{diag(world, wl)}"
        assert g.ping(alone.ip, count=2), f"{g.name} -> {alone.name}\n{diag(world, wl)}"
    assert ap_foreign(world) == 0, diag(world, wl)


def test_a_port_over_its_mac_bound_refuses_the_extra_guest(make_world, wlbridge_on):
    """33 MACs behind one port, at the default bound (32): the guest's own and 32 macvlan
    interfaces on it, each sending in turn; the last is refused and counted."""
    world = make_world(n_guests=1)
    guest, peer = world.guests[0], world.peers[0]
    bound = 32  # max_macs_per_port's default
    guest.run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1", check=True)  # no chatter in any order
    net = world.subnet
    for n in range(1, bound + 1):
        guest.run("ip", "link", "add", "link", guest.ifname, "name", f"mv{n}", "type",
                  "macvlan", "mode", "private", check=True)
        guest.run("ip", "addr", "add", f"{net.network_address + 199 + n}/{net.prefixlen}",
                  "dev", f"mv{n}", check=True)
        guest.run("ip", "link", "set", f"mv{n}", "up", check=True)
    shared = SharedPort(world, [guest]).create()
    # (max_ips_per_port bounds the port's IPv4 addresses, all its guests together)
    wl = wlbridge_on(world, guests=[shared], extra=("--max-ips-per-port", str(bound + 1)))
    assert guest.ping(peer.ip, count=2), diag(world, wl)
    for n in range(1, bound):
        res = guest.run("ping", "-c", "2", "-W", "2", "-I", f"mv{n}", peer.ip)
        assert res.returncode == 0, f"mv{n} -> peer\n{res.stdout}\n{diag(world, wl)}"
    res = guest.run("ping", "-c", "2", "-W", "2", "-I", f"mv{bound}", peer.ip)
    assert res.returncode != 0, f"mv{bound}, beyond the bound, reached the peer"
    wait_for(lambda: wl.counters().get("refused.mac-limit", 0) > 0, timeout=5,
             what="refused.mac-limit counted")
    entry = next(g for g in wl.status()["guests"] if g["port"] == shared.port)
    assert len(entry["macs"]) == bound and guest.mac in entry["macs"], entry
