"""`wlbridge docker-plugin`: Docker's network and IPAM driver for the bridge, served on a unix
socket where dockerd finds it (`wlbridge.app.docker_plugin`; docs/containers.md)::

    wlbridge docker-plugin --bridge br-wl &
    docker network create -d wlbridge --ipam-driver wlbridge wl
    docker run --network wl IMAGE
"""

from __future__ import annotations

import argparse
import logging
import os

from wlbridge.cli.common import add_bridge_arguments, require_root
from wlbridge.errors import UserError

DEFAULT_SOCKET = "/run/docker/plugins/wlbridge.sock"
DEFAULT_STATE = "/var/lib/wlbridge/docker-plugin.json"
DEFAULT_RUN_DIR = "/run/wlbridge/docker"
DEFAULT_DOCKER = "unix:///var/run/docker.sock"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help="the plugin's socket; its file name (without .sock) is the driver "
                        "name dockerd knows it by (in /run/docker/plugins/)")
    parser.add_argument("--state", default=DEFAULT_STATE, metavar="FILE",
                        help="networks, endpoints and leases, kept across restarts")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, metavar="DIR",
                        help="where the containers' DHCP clients keep their scripts and logs")
    parser.add_argument("--lease-timeout", type=float, default=20.0, metavar="SECONDS",
                        help="how long a container's first DHCP lease may take")
    parser.add_argument("--docker-host", default=os.environ.get("DOCKER_HOST", DEFAULT_DOCKER),
                        metavar="URL", help="dockerd's API, asked for the containers' names "
                        "(shown by `wlbridge status`); '' not to ask")
    add_bridge_arguments(parser)


def main(args: argparse.Namespace) -> int:
    from wlbridge.app.docker_plugin import DockerPlugin, serve

    if not args.socket.endswith(".sock") or not os.path.isabs(args.socket):
        raise UserError(f"--socket {args.socket!r}: want an absolute path ending in .sock; "
                        "nothing changed")
    require_root("docker-plugin")
    logging.getLogger("wlbridge").setLevel(logging.INFO)
    plugin = DockerPlugin(args.bridge, args.state, args.run_dir, args.db, args.lease_timeout,
                          args.timeout, args.docker_host or None)
    try:
        serve(plugin, args.socket)
    except KeyboardInterrupt:
        pass
    return 0
