"""Docker's remote network driver and IPAM driver for one wlbridge bridge (`wlbridge
docker-plugin`): JSON over HTTP on a unix socket in /run/docker/plugins/, where dockerd finds
it by name (``docker network create -d wlbridge --ipam-driver wlbridge wl``).

No maintained Python library implements these protocols (PyPI's docker-plugin-api is a 4 kB
wrapper last released years ago), so this module is that protocol, kept thin: each call is a
method taking the request's JSON and returning the response's (``{"Err": msg}``, for the
IPAM calls ``{"Error": msg}``, for a refusal, which dockerd shows to the user); the work is the one attach path's
(`wlbridge.host.attach`).  Proven against a real dockerd in
tests/integration/test_docker_plugin.py.

* IPAM: the pool is any address (dockerd refuses a pool its host has a route to), or
  ``--subnet`` inside the LAN (the bridge's IPv4 network); ``--ip`` is a static
  address (refused outside the LAN); otherwise the address is leased from the LAN's DHCP
  server at RequestAddress, for the MAC Docker gives the endpoint (RequiresMACAddress): one
  DHCP exchange in a temporary namespace attached with that MAC, the lease kept (not released).
* CreateEndpoint attaches the veth pair with that MAC, the guest end left in the root
  namespace (`attach.Request.runtime_moves`); Join names it for Docker, which moves it into
  the container; once it is there, the guest's DHCP keeper (`attach.keep_dhcp`) renews the
  lease (same MAC, same client id: the same address) for the container's life and releases it
  when the container stops.  IPv6 comes by SLAAC.
* Names: after Join, off the request path, the plugin asks dockerd (the Engine API,
  ``GET /networks/ID`` through the Docker SDK, on ``--docker-host``) which container the
  endpoint is, and records its name on the port (`attach.name_container`): `wlbridge
  status` shows it.  When dockerd cannot tell, the port's name (the endpoint id's first 12
  characters) is all there is.
* State (networks, endpoints, leases) is saved to a JSON file after every change, so the
  plugin and dockerd can each restart; the ports, their MACs and the keepers' pids are in
  OVSDB.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socketserver
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

LOG = logging.getLogger(__name__)
CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
GATEWAY_TYPE = "com.docker.network.gateway"
MAC_OPTION = "com.docker.network.endpoint.macaddress"
DOCKER_KEY = "wlbridge-docker"      # external_ids: the Docker endpoint id
ANY = "0.0.0.0/0"
TEMP_NETNS = "wlt-"                 # temporary namespaces of the IPAM's DHCP exchange


class Refused(Exception):
    """A request the plugin refuses; its message goes back to dockerd (``Err``)."""


class DockerPlugin:
    def __init__(self, bridge: str, state_path: str, run_dir: str, db_remote: str | None = None,
                 lease_timeout: float = 20.0, db_timeout: float = 10.0,
                 docker_host: str | None = None) -> None:
        self.bridge, self.state_path, self.run_dir = bridge, state_path, run_dir
        self.docker_host = docker_host
        self.db_remote, self.lease_timeout, self.db_timeout = db_remote, lease_timeout, db_timeout
        self.lock = threading.Lock()
        self.state: dict[str, dict[str, Any]] = {"networks": {}, "endpoints": {}, "leases": {}}
        try:
            with open(state_path) as f:
                saved = json.load(f)
            for key in self.state:
                self.state[key].update(saved.get(key, {}))
        except FileNotFoundError:
            pass

    # ---- plumbing ---------------------------------------------------------------------
    def save(self) -> None:
        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        tmp = f"{self.state_path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f, indent=1, sort_keys=True)
        os.replace(tmp, self.state_path)

    def host(self):
        from contextlib import ExitStack

        from wlbridge.host import hostnet, ovsdb

        stack = ExitStack()
        db = stack.enter_context(ovsdb.connect(self.db_remote, self.db_timeout))
        net = stack.enter_context(hostnet.HostNet())
        return stack, db, net

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        # the IPAM API's error field is "Error", the network driver's "Err"
        err = "Error" if method.startswith("IpamDriver.") else "Err"
        handler = HANDLERS.get(method)
        if handler is None:
            return {err: f"wlbridge: {method} is not supported"}
        try:
            with self.lock:
                out = getattr(self, handler)(body or {})
            LOG.debug("%s %s -> %s", method, body, out)
            return out
        except Refused as exc:
            return {err: str(exc)}
        except Exception as exc:     # the message goes to dockerd
            from wlbridge.errors import UserError

            if not isinstance(exc, UserError):
                LOG.exception("%s failed", method)
            return {err: " ".join(str(exc).split()) or type(exc).__name__}

    def lan(self, net: Any) -> ipaddress.IPv4Interface:
        from wlbridge.host import attach

        nets = [ipaddress.ip_interface(n) for n in attach.lan_networks(net, self.bridge)]
        v4 = [n for n in nets if n.version == 4]
        if not v4:
            raise Refused(f"bridge {self.bridge} has no IPv4 address (is `wlbridge setup` "
                          "done and the station's address on the bridge?)")
        return v4[0]

    def check_ready(self, db: Any) -> None:
        from wlbridge.app import instance_lock

        if db.bridge_info(self.bridge) is None:
            raise Refused(f"bridge {self.bridge} does not exist (run `wlbridge setup`)")
        if instance_lock.running(instance_lock.RUN_DIR, self.bridge, None) is None:
            raise Refused(f"no controller is running for bridge {self.bridge} (start "
                          "`wlbridge run`)")

    # ---- the plugin and the IPAM driver -------------------------------------------------
    def activate(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": ["NetworkDriver", "IpamDriver"]}

    def ipam_capabilities(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"RequiresMACAddress": True}

    def address_spaces(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"LocalDefaultAddressSpace": "wlbridge", "GlobalDefaultAddressSpace": "wlbridge"}

    def request_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("V6"):
            raise Refused("wlbridge: IPv6 comes by SLAAC from the LAN's router; create the "
                          "network without --ipv6")
        stack, db, net = self.host()
        with stack:
            self.check_ready(db)
            lan = self.lan(net).network
        if not body.get("Pool"):
            # "any": dockerd would refuse the LAN's own network (it overlaps the host's
            # route to it) and ask again forever; 0.0.0.0/0 is what its null IPAM answers
            return {"PoolID": f"wlbridge/{ANY}", "Pool": ANY, "Data": {}}
        try:
            wanted = ipaddress.ip_network(body["Pool"])
        except ValueError:
            raise Refused(f"wlbridge: subnet {body['Pool']!r} is not a network") from None
        if wanted.version != 4 or not wanted.subnet_of(lan):
            raise Refused(f"wlbridge: subnet {wanted} is outside the LAN ({lan} on "
                          f"{self.bridge})")
        return {"PoolID": f"wlbridge/{wanted}", "Pool": str(wanted), "Data": {}}

    def release_pool(self, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    def request_address(self, body: dict[str, Any]) -> dict[str, Any]:
        pool = ipaddress.ip_network(str(body.get("PoolID", "")).split("/", 1)[-1])
        stack, _, net = self.host()
        with stack:
            mine = self.lan(net)
        lan = mine.network
        if pool.prefixlen == 0:
            pool = lan
        opts = body.get("Options") or {}
        addr = body.get("Address") or ""
        if opts.get("RequestAddressType") == GATEWAY_TYPE:
            # dockerd wants one; the containers' default route is the LAN's router (the
            # DHCP server's, or the host's default route on the bridge), never this
            gw = addr or self.lan_gateway() or str(mine.ip)
            return {"Address": f"{gw}/{lan.prefixlen}", "Data": {}}
        if addr:
            if ipaddress.ip_address(addr) not in pool:
                raise Refused(f"wlbridge: address {addr} is outside the LAN ({pool})")
            return {"Address": f"{addr}/{lan.prefixlen}", "Data": {}}
        mac = str(opts.get(MAC_OPTION) or "").lower()
        if not mac:
            raise Refused("wlbridge: dockerd gave no MAC address to lease an address for")
        ip, plen, router = self.lease(mac)
        self.state["leases"][mac] = {"address": ip, "router": router}
        self.save()
        return {"Address": f"{ip}/{plen}", "Data": {}}

    def release_address(self, body: dict[str, Any]) -> dict[str, Any]:
        """dockerd gives an address back: a lease no endpoint took is released."""
        addr = str(body.get("Address") or "").split("/")[0]
        used = {ep["mac"] for ep in self.state["endpoints"].values()}
        for mac, lease in list(self.state["leases"].items()):
            if lease["address"] == addr:
                del self.state["leases"][mac]
                if mac not in used:
                    self.give_back(mac, addr)
                self.save()
        return {}

    def lan_gateway(self) -> str | None:
        out = subprocess.run(["ip", "-4", "route", "show", "default", "dev", self.bridge],
                             capture_output=True, text=True, check=False).stdout.split()
        return out[out.index("via") + 1] if "via" in out else None

    def lease(self, mac: str, request: str = "", release: bool = False
              ) -> tuple[str, int, str | None]:
        """One DHCP exchange for `mac`, in a temporary namespace attached with that MAC (with
        `release`: the lease of `request` given back)."""
        from wlbridge.host import attach, guest_dhcp

        name = f"{TEMP_NETNS}{mac.replace(':', '')}"
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        stack, db, net = self.host()
        try:
            with stack:
                self.check_ready(db)
                req = attach.Request(name=name, bridge=self.bridge, netns=name, mac=mac)
                plan = attach.make_plan(req, attach.read_facts(req, db, net))
                attach.execute(plan, attach.HostOps(db, net, self.run_dir))
                try:
                    got = guest_dhcp.lease_once(plan.netns_path, req.ifname, name,
                                                self.run_dir, self.lease_timeout, request,
                                                release)
                finally:
                    attach.detach(name, self.bridge, db, net, out=LOG.info)
        finally:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        if got is None:
            raise Refused(f"wlbridge: no DHCP lease within {self.lease_timeout:g}s through "
                          f"bridge {self.bridge} (is the LAN's DHCP server reachable?)")
        return got

    # ---- the network driver ------------------------------------------------------------
    def net_capabilities(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def create_network(self, body: dict[str, Any]) -> dict[str, Any]:
        stack, db, _ = self.host()
        with stack:
            self.check_ready(db)
        self.state["networks"][body["NetworkID"]] = {"gateway": self.lan_gateway()}
        self.save()
        return {}

    def delete_network(self, body: dict[str, Any]) -> dict[str, Any]:
        self.state["networks"].pop(body.get("NetworkID", ""), None)
        self.save()
        return {}

    def create_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        from wlbridge.host import attach

        eid, iface = body["EndpointID"], body.get("Interface") or {}
        if eid in self.state["endpoints"]:
            raise Refused(f"wlbridge: endpoint {eid[:12]} exists already")
        name = eid[:12]
        mac = (iface.get("MacAddress") or attach.guest_mac(name)).lower()
        stack, db, net = self.host()
        with stack:
            self.check_ready(db)
            req = attach.Request(name=name, bridge=self.bridge, runtime_moves=True, mac=mac,
                                 need_controller=False, labels=((DOCKER_KEY, eid),))
            plan = attach.make_plan(req, attach.read_facts(req, db, net))
            if plan.already:
                raise Refused(f"wlbridge: endpoint {name} is attached already")
            attach.execute(plan, attach.HostOps(db, net, self.run_dir))
        address = str(iface.get("Address") or "").split("/")[0]
        lease = self.state["leases"].get(mac)
        self.state["endpoints"][eid] = {
            "network": body.get("NetworkID"), "name": name, "mac": mac, "address": address,
            "dhcp": bool(lease and lease["address"] == address),
            "router": lease["router"] if lease else None}
        self.save()
        return {} if iface.get("MacAddress") else {"Interface": {"MacAddress": mac}}

    def endpoint_info(self, body: dict[str, Any]) -> dict[str, Any]:
        ep = self.state["endpoints"].get(body.get("EndpointID", ""), {})
        return {"Value": {k: str(v) for k, v in ep.items()}}

    def join(self, body: dict[str, Any]) -> dict[str, Any]:
        from wlbridge.host import attach

        ep = self.state["endpoints"].get(body.get("EndpointID", ""))
        if ep is None:
            raise Refused(f"wlbridge: no endpoint {str(body.get('EndpointID'))[:12]}")
        network = self.state["networks"].get(body.get("NetworkID", ""), {})
        gateway = ep.get("router") or network.get("gateway")
        if ep["dhcp"]:
            ep["joined"] = True
            threading.Thread(target=self.keep_dhcp, args=(ep, body["SandboxKey"]),
                             daemon=True).start()
        if self.docker_host:
            threading.Thread(target=self.name_endpoint,
                             args=(body["EndpointID"], body.get("NetworkID", "")),
                             daemon=True).start()
        out: dict[str, Any] = {"InterfaceName": {"SrcName": attach.peer_name(ep["name"]),
                                                 "DstPrefix": "eth"}}
        if gateway:
            out["Gateway"] = gateway
        return out

    def keep_dhcp(self, ep: dict[str, Any], sandbox: str, timeout: float = 30.0) -> None:
        """Once Docker has moved the interface into the container, its DHCP keeper."""
        from wlbridge.host import attach
        from wlbridge.host.pyroute2_lazy import IPRoute

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with IPRoute(netns=sandbox, flags=0) as ipr:
                    found = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()
                             if link.get_attr("IFLA_ADDRESS") == ep["mac"]
                             and link.get_attr("IFLA_IFNAME") != attach.peer_name(ep["name"])]
            except OSError:
                found = []
            if found:
                with self.lock:        # not after Leave: its lease is released there
                    if not ep.get("joined"):
                        return
                    stack, db, _ = self.host()
                    with stack:
                        pid = attach.keep_dhcp(db, ep["name"], sandbox, found[0],
                                               self.run_dir, ep["address"])
                LOG.info("endpoint %s: DHCP keeper %d on %s", ep["name"], pid, found[0])
                return
            time.sleep(0.1)
        LOG.warning("endpoint %s: its interface never reached %s", ep["name"], sandbox)

    def name_endpoint(self, eid: str, network: str, timeout: float = 30.0) -> None:
        """Ask dockerd which container endpoint `eid` is (it lists it on the network once
        the Join is done) and record the container's name on the port."""
        from wlbridge.host import attach

        name = container_of(self.docker_host or "", network, eid, timeout)
        if name is None:
            LOG.info("endpoint %s: dockerd did not name its container", eid[:12])
            return
        with self.lock:
            ep = self.state["endpoints"].get(eid)
            if ep is None:
                return                      # gone meanwhile
            ep["container"] = name
            stack, db, _ = self.host()
            with stack:
                attach.name_container(db, ep["name"], name)
            self.save()
        LOG.info("endpoint %s: container %s", ep["name"], name)

    def leave(self, body: dict[str, Any]) -> dict[str, Any]:
        """The container stops: its DHCP client releases the lease now, while its interface
        is still there (DeleteEndpoint comes after dockerd has taken it out)."""
        from wlbridge.host import attach

        ep = self.state["endpoints"].get(body.get("EndpointID", ""))
        if ep is not None and ep["dhcp"]:
            ep["joined"] = False
            stack, db, _ = self.host()
            with stack:
                if attach.stop_dhcp(db, self.bridge, ep["name"]):   # its pid is in OVSDB
                    LOG.info("endpoint %s: DHCP client stopped, lease released", ep["name"])
                    ep["released"] = True
            self.save()
        return {}

    def delete_endpoint(self, body: dict[str, Any]) -> dict[str, Any]:
        from wlbridge.host import attach

        ep = self.state["endpoints"].pop(body.get("EndpointID", ""), None)
        if ep is not None:
            stack, db, net = self.host()
            with stack:
                if db.bridge_info(self.bridge) is not None:
                    attach.detach(ep["name"], self.bridge, db, net, out=LOG.info)
            if ep["dhcp"] and not ep.get("released"):
                self.give_back(ep["mac"], ep["address"])
            self.state["leases"].pop(ep["mac"], None)
            self.save()
        return {}

    def give_back(self, mac: str, address: str) -> None:
        """Release a lease no keeper released (the container never ran, or stopped before
        its client started): asked for again with its MAC and given back at once."""
        try:
            self.lease(mac, request=address, release=True)
            LOG.info("lease %s of %s released", address, mac)
        except Exception as exc:  # noqa: BLE001 - the endpoint goes anyway; the lease ends
            LOG.warning("lease %s of %s not released: %s", address, mac, exc)

    def nothing(self, body: dict[str, Any]) -> dict[str, Any]:
        return {}


def container_of(docker_host: str, network: str, eid: str, timeout: float) -> str | None:
    """The name of the container endpoint `eid` of `network` is, as dockerd tells it
    (``GET /networks/ID``, the Docker SDK), waiting up to `timeout`; None if it never does."""
    import docker

    deadline = time.monotonic() + timeout
    try:
        client = docker.APIClient(base_url=docker_host, timeout=10)
    except docker.errors.DockerException as exc:
        LOG.warning("dockerd at %s: %s", docker_host, exc)
        return None
    with client:
        while time.monotonic() < deadline:
            try:
                found = client.inspect_network(network).get("Containers") or {}
            except (docker.errors.DockerException, OSError) as exc:
                LOG.debug("dockerd at %s: %s", docker_host, exc)
                found = {}
            for entry in found.values():
                if entry.get("EndpointID") == eid and entry.get("Name"):
                    return str(entry["Name"])
            time.sleep(0.2)
    return None


HANDLERS = {
    "Plugin.Activate": "activate",
    "IpamDriver.GetCapabilities": "ipam_capabilities",
    "IpamDriver.GetDefaultAddressSpaces": "address_spaces",
    "IpamDriver.RequestPool": "request_pool",
    "IpamDriver.ReleasePool": "release_pool",
    "IpamDriver.RequestAddress": "request_address",
    "IpamDriver.ReleaseAddress": "release_address",
    "NetworkDriver.GetCapabilities": "net_capabilities",
    "NetworkDriver.CreateNetwork": "create_network",
    "NetworkDriver.DeleteNetwork": "delete_network",
    "NetworkDriver.CreateEndpoint": "create_endpoint",
    "NetworkDriver.EndpointOperInfo": "endpoint_info",
    "NetworkDriver.DeleteEndpoint": "delete_endpoint",
    "NetworkDriver.Join": "join",
    "NetworkDriver.Leave": "leave",
    "NetworkDriver.DiscoverNew": "nothing",
    "NetworkDriver.DiscoverDelete": "nothing",
    "NetworkDriver.ProgramExternalConnectivity": "nothing",
    "NetworkDriver.RevokeExternalConnectivity": "nothing",
}


class _Handler(BaseHTTPRequestHandler):
    plugin: DockerPlugin

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        out = ({"Err": "wlbridge: the request is not JSON"} if not isinstance(body, dict)
               else self.plugin.call(self.path.lstrip("/"), body))
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "dockerd"

    def log_message(self, fmt: str, *args: Any) -> None:
        LOG.debug("docker: " + fmt, *args)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def serve(plugin: DockerPlugin, socket_path: str) -> None:
    """Serve `plugin` on `socket_path` until interrupted (the socket removed at the end)."""
    os.makedirs(os.path.dirname(socket_path), exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    handler = type("Handler", (_Handler,), {"plugin": plugin})
    with _Server(socket_path, handler) as server:
        os.chmod(socket_path, 0o660)
        LOG.info("Docker network and IPAM driver for %s on %s", plugin.bridge, socket_path)
        try:
            server.serve_forever()
        finally:
            os.unlink(socket_path)
