"""Loopback HTTP endpoint: ``/status`` (JSON for `wlbridge status`) and ``/metrics`` (Prometheus).

prometheus_client loads at the first ``/metrics`` request, not at start-up (it is a tenth
of the controller's import time, and most controllers are never scraped).
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

LOG = logging.getLogger(__name__)
StatusFn = Callable[[], dict[str, Any]]


class MetricsCollector:
    """Turns the status snapshot into Prometheus metrics at scrape time."""

    def __init__(self, status: StatusFn) -> None:
        self.status = status

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.status()
        events = CounterMetricFamily("wlbridge_events", "controller events by kind",
                                     labels=["event"])
        for name, value in snap.get("counters", {}).items():
            events.add_metric([name], value)
        yield events
        confirmed = [g for g in snap.get("guests", []) if g.get("confirmed", True)]
        guests = GaugeMetricFamily("wlbridge_guests", "guest ports on the bridge")
        guests.add_metric([], len(confirmed))
        yield guests
        waiting = GaugeMetricFamily(
            "wlbridge_unconfirmed_bindings",
            "saved guest IPv4/IPv6 bindings waiting for their port (switch not connected yet, or "
            "port missing)")
        waiting.add_metric([], sum(len(g.get("ips", [])) for g in snap.get("guests", [])
                                   if not g.get("confirmed", True)))
        yield waiting
        bindings = GaugeMetricFamily("wlbridge_bindings",
                                     "guest IPv4 and IPv6 bindings by source (IPv6: nd, ipv6)",
                                     labels=["source"])
        by_source: dict[str, int] = {}
        for g in confirmed:
            for ip in g.get("ips", []):
                by_source[ip["source"]] = by_source.get(ip["source"], 0) + 1
        for source, count in sorted(by_source.items()):
            bindings.add_metric([source], count)
        yield bindings
        groups = GaugeMetricFamily("wlbridge_group_memberships",
                                   "guest memberships of multicast groups (IGMP/MLD snooping)")
        groups.add_metric([], sum(len(g.get("members", [])) for g in snap.get("groups", [])))
        yield groups
        policing = snap.get("policing") or {}
        if policing:
            budget = GaugeMetricFamily(
                "wlbridge_ipv6_station_budget",
                "IPv6 addresses of all the guests behind the station MAC: in use and the "
                "budget (max_ipv6_per_station)", labels=["kind"])
            budget.add_metric(["used"], policing.get("ipv6_used", 0))
            budget.add_metric(["max"], policing.get("ipv6_budget", 0))
            yield budget
            refused = GaugeMetricFamily(
                "wlbridge_ipv6_station_refused",
                "IPv6 addresses refused over the station's budget, still shown in status")
            refused.add_metric([], len(policing.get("ipv6_refused", [])))
            yield refused
        up = GaugeMetricFamily("wlbridge_switch_connected", "1 when the bridge is connected")
        up.add_metric([], 1 if snap.get("connected") else 0)
        yield up


def serve(host: str, port: int, status: StatusFn,
          extra: dict[str, Callable[[], Any]] | None = None) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; return the server (call .shutdown() to stop).

    ``/status`` answers `status()`, ``/metrics`` Prometheus text, and each path in
    `extra` the JSON of its function."""
    routes: dict[str, Callable[[], Any]] = {"/status": status, "/": status, **(extra or {})}
    made: list = []   # the registry, made at the first scrape
    lock = threading.Lock()

    def metrics() -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        with lock:
            if not made:
                registry = CollectorRegistry()
                registry.register(MetricsCollector(status))
                made.append(registry)
        return generate_latest(made[0])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                if self.path in routes:
                    body = json.dumps(routes[self.path](), indent=1).encode()
                    ctype = "application/json"
                elif self.path == "/metrics":
                    body = metrics()
                    ctype = "text/plain; version=0.0.4"
                else:
                    self.send_error(404)
                    return
            except Exception:
                LOG.exception("status request failed")
                self.send_error(500)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            LOG.debug("status: " + fmt, *args)

    server = StatusServer((host, port), Handler)
    # no poll interval: the thread sleeps until a request comes (`stop` wakes it)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": None},
                     name="wlbridge-status", daemon=True).start()
    return server


class StatusServer(ThreadingHTTPServer):
    """Serves without polling (its thread sleeps until a request comes); `shutdown` wakes
    it with a connection of its own, so it returns as the standard server's does."""

    daemon_threads = True

    def shutdown(self, timeout: float = 2.0) -> None:
        import socket
        import time

        stopper = threading.Thread(target=super().shutdown, daemon=True)
        stopper.start()
        deadline = time.monotonic() + timeout
        while stopper.is_alive() and time.monotonic() < deadline:
            try:
                socket.create_connection(self.server_address[:2], timeout=0.2).close()
            except OSError:
                pass
            stopper.join(0.05)


def stop(server: ThreadingHTTPServer) -> None:
    """Stop a server started by `serve`."""
    server.shutdown()
    server.server_close()
