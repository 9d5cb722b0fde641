"""tcpdump in a world's namespaces, for tests: a pcap read back with scapy (`Capture`), or
tcpdump's printed lines (`tcpdump_lines`, `capture_lines`).

Both run tcpdump with --immediate-mode: without it packets wait for a ~1 s buffer timeout,
and a short exchange stopped before then is lost ("N received by filter, 0 captured").
"""

from __future__ import annotations

from .procs import Proc, wait_for

TCPDUMP = ("tcpdump", "-n", "--immediate-mode")


def _wait_listening(proc: Proc, where: str) -> None:
    if not wait_for(lambda: "listening on" in proc.output() or not proc.alive, timeout=5) \
            or not proc.alive:
        raise AssertionError(f"timed out waiting for tcpdump on {where}\n{proc.output()}")


class Capture:
    """tcpdump writing a pcap in a namespace (the AP's, a guest's), read back with scapy."""

    def __init__(self, world, netns: str | None, ifname: str, name: str, bpf: str = ""):
        """`world`: a `World` or `Processes` (where tcpdump runs and the pcap is kept)."""
        self.path = world.tmp_path(f"{name}.pcap")
        argv = [*TCPDUMP, "-U", "-i", ifname, "-w", str(self.path), *bpf.split()]
        self.proc = world.start(f"tcpdump-{name}", netns, argv)
        _wait_listening(self.proc, ifname)

    def peek(self) -> list:
        """What was captured so far (tcpdump -U writes every packet at once)."""
        from scapy.error import Scapy_Exception
        from scapy.utils import rdpcap

        try:
            return list(rdpcap(str(self.path)))
        except (OSError, EOFError, ValueError, Scapy_Exception):  # nothing yet, half a record
            return []

    def packets(self) -> list:
        """Stop tcpdump; everything it captured."""
        self.proc.stop()
        return self.peek()


def tcpdump_lines(world, netns: str | None, ifname: str, name: str, *args: str) -> Proc:
    """tcpdump in a namespace printing one line per packet (-l; `args`: more options and the
    filter), started once it listens; read it with `.output()`, stop it with `.stop()`."""
    proc = world.start(f"tcpdump-{name}", netns, [*TCPDUMP, "-l", "-i", ifname, *args])
    _wait_listening(proc, ifname)
    return proc


def capture_lines(host, *args: str) -> Proc:
    """`tcpdump_lines` on a host's (a guest's, a peer's) interface."""
    name = f"{host.name}-{len(host.processes.procs)}"
    return tcpdump_lines(host.processes, host.netns, host.ifname, name, *args)
