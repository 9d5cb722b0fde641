"""Fixtures for integration tests: emulated Wi-Fi LANs and OVS bridges, cleaned up after.

* ``wl_prefix``: a fresh name prefix for the test, whose default subnet is not in use here;
  everything named with it is removed at the end (a safety net behind each fixture's teardown).
* ``make_world(graph=None, **basic_lan_kwargs)``: build a `topologies.World` (basic_lan by default).
* ``lan``: a built ``basic_lan()`` (AP with the one-MAC rule, router + dnsmasq, one peer, the
  station uplink in the root namespace, two static-address guests not attached to anything).
* ``ovs_bridge(suffix="br", **kw)``: a netdev `topologies.OvsBridge`, deleted after the test.
* ``guestless_lan``: ``(world, wl, netns)``: a LAN with wlbridge running and no guests, and
  ``netns(suffix, release=None)`` for namespaces the test wires itself (attach, CNI, ...).
* ``libvirtd``: a private libvirtd started by the test (`libvirt_env`), its URI.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from libvirt_env import libvirtd  # noqa: F401  (a fixture: a private libvirtd)

from topologies import OvsBridge, World, basic_lan, cleanup_leftovers, free_prefix


@pytest.fixture
def wl_prefix():
    prefix = free_prefix()
    yield prefix
    cleanup_leftovers(prefix)


@pytest.fixture
def make_world(wl_prefix):
    worlds: list[World] = []

    def make(graph=None, **kwargs) -> World:
        if graph is None:
            kwargs.setdefault("prefix", wl_prefix if not worlds else free_prefix())
            graph = basic_lan(**kwargs)
        world = World(graph)
        worlds.append(world)
        return world.build()

    yield make
    for world in reversed(worlds):
        world.teardown()
        cleanup_leftovers(world.prefix)


@pytest.fixture
def lan(make_world) -> World:
    return make_world()


@pytest.fixture
def ovs_bridge(wl_prefix):
    bridges: list[OvsBridge] = []

    def make(suffix: str = "br", **kwargs) -> OvsBridge:
        br = OvsBridge(f"{wl_prefix}-{suffix}", **kwargs).create()
        bridges.append(br)
        return br

    yield make
    for br in reversed(bridges):
        br.delete()


@pytest.fixture
def wlbridge_on(make_world, tmp_path):
    """``wlbridge_on(world, guests=None, dhcp_mode=..., start=True, setup_extra=())``:
    wlbridge set up on the world's station (real `wlbridge setup`/`run`; ``setup_extra``:
    more setup options), guests attached; torn down after.

    The station's address is static (the world sets it), so setup is told
    ``--address-manager static`` unless ``setup_extra`` names a manager: that is what ``auto``
    finds with nobody managing it, and it stays so while another suite on this machine runs a
    dhcpcd or NetworkManager in the shared root namespace (``auto`` then refuses: it cannot
    tell they leave the uplink alone).  The ``auto`` detection itself is tested in
    test_addr_handoff*.py."""
    from harness import Controller

    made: list[Controller] = []

    def make(world: World, *, guests=None, dhcp_mode: str = "broadcast", start: bool = True,
             extra: tuple[str, ...] = (), setup_extra: tuple[str, ...] = ()) -> Controller:
        workdir = tmp_path / f"wlbridge{len(made)}"
        workdir.mkdir()
        ctl = Controller(world, workdir, dhcp_mode=dhcp_mode, extra=extra)
        made.append(ctl)
        if "--address-manager" not in setup_extra:
            setup_extra = ("--address-manager", "static", *setup_extra)
        ctl.setup(*setup_extra)
        ctl.attach(*(world.guests if guests is None else guests))
        if start:
            ctl.start()
        return ctl

    yield make
    for ctl in reversed(made):
        ctl.close()


@pytest.fixture
def guestless_lan(make_world, wlbridge_on):
    """``(world, wl, netns)``: a LAN (IPv6, the router's DNS and router options) with wlbridge
    set up and running and no guests.  ``netns(suffix, release=None)`` adds the namespace
    ``<prefix>-<suffix>``, deleted after the test, ``release(name)`` first (a detach, a CNI
    DEL: what the test's guest wiring must undo)."""
    world = make_world(n_guests=0, ipv6=True, dns_option=True, router_option=True)
    wl = wlbridge_on(world, guests=[])
    made: list[tuple] = []

    def netns(suffix: str, release=None) -> str:
        name = f"{world.prefix}-{suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append((name, release))
        return name

    yield world, wl, netns
    for name, release in made:
        if release is not None:
            release(name)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
