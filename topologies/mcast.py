"""Group traffic and discovery in the emulated LAN (test tooling): ``python -m topologies.mcast``.

Run inside a namespace (`Host.popen`/`Host.run` with ``sys.executable -m topologies.mcast``):

* ``listen GROUP PORT``: join GROUP on the interface (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP, so the
  kernel sends IGMP/MLD reports as any application would make it) and print every datagram;
  GROUP may be a broadcast address or 0.0.0.0 (no join, receive broadcasts).
* ``send DST PORT PAYLOAD``: send datagrams to a group or a (subnet-directed) broadcast address.
* ``mdns-respond NAME ADDR...`` / ``mdns-query NAME``: a minimal mDNS responder answering A/AAAA
  questions for NAME with multicast answers (RFC 6762), and a querier asking from port 5353 (so
  answers come back multicast), both on 224.0.0.251 and ff02::fb; DNS messages by scapy.
* ``ssdp-respond ST LOCATION`` / ``ssdp-search ST``: an SSDP device answering M-SEARCH
  (multicast to 239.255.255.250 / ff02::c port 1900) with a unicast HTTPU 200 OK, and a searcher.

Every command prints ``ready`` once its sockets are set up, and lines a test can look for.
Exit status of the queriers: 0 when answered, 1 on timeout.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import struct
import sys
import time

MDNS_PORT = 5353
MDNS_GROUPS = {4: "224.0.0.251", 6: "ff02::fb"}
SSDP_PORT = 1900
SSDP_GROUPS = {4: "239.255.255.250", 6: "ff02::c"}


def say(*parts: object) -> None:
    print(*parts, flush=True)


def _family(addr: str) -> int:
    return 6 if ipaddress.ip_address(addr).version == 6 else 4


def group_socket(group: str, port: int, ifname: str, *, join: bool = True,
                 bind: bool = True) -> socket.socket:
    """A UDP socket bound to port, joined to group on ifname (by index: no route needed)."""
    fam = _family(group)
    idx = socket.if_nametoindex(ifname)
    s = socket.socket(socket.AF_INET6 if fam == 6 else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if fam == 6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        if bind:
            s.bind(("::", port))
        if join:
            mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", idx)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    else:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                     struct.pack("4s4si", b"\0" * 4, b"\0" * 4, idx))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        if bind:
            s.bind(("0.0.0.0", port))
        if join and ipaddress.ip_address(group).is_multicast:
            mreq = struct.pack("4s4si", socket.inet_aton(group), b"\0" * 4, idx)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    return s


def _dest(addr: str, port: int, ifname: str) -> tuple:
    if _family(addr) == 6:
        return (addr, port, 0, socket.if_nametoindex(ifname))
    return (addr, port)


def _recv_until(socks: list[socket.socket], deadline: float):
    """Yield (sock, data, src) until the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select(socks, [], [], left)
        for s in ready:
            data, src = s.recvfrom(65535)
            yield s, data, src


# ---------------------------------------------------------------- plain groups


def listen(a) -> int:
    s = group_socket(a.group, a.port, a.ifname, join=a.group != "0.0.0.0")
    say("ready")
    n = 0
    for _, data, src in _recv_until([s], time.monotonic() + a.timeout):
        say("from", src[0], data.decode(errors="replace"))
        n += 1
        if a.count and n >= a.count:
            return 0
    return 0 if n else 1


def send(a) -> int:
    s = group_socket(a.dst, 0, a.ifname, join=False, bind=False)
    for i in range(a.count):
        s.sendto(a.payload.encode(), _dest(a.dst, a.port, a.ifname))
        if i + 1 < a.count:
            time.sleep(a.interval)
    say("sent", a.count)
    return 0


# ---------------------------------------------------------------- mDNS


def _mdns_sockets(a) -> list[socket.socket]:
    return [group_socket(MDNS_GROUPS[f], MDNS_PORT, a.ifname) for f in a.families]


def _parse_dns(data: bytes):
    from scapy.layers.dns import DNS

    try:
        return DNS(data)
    except Exception as exc:  # noqa: BLE001 - anything may be on the wire
        say("unparsable", len(data), "bytes:", exc)
        return None


def mdns_respond(a) -> int:
    from scapy.layers.dns import DNS, DNSRR

    socks = _mdns_sockets(a)
    name = a.name.rstrip(".") + "."
    say("ready")
    for s, data, src in _recv_until(socks, time.monotonic() + a.timeout):
        msg = _parse_dns(data)
        if msg is None or msg.qr or not msg.qd:
            continue
        answers = []
        for q in msg.qd:
            if q.qname.decode().lower() != name.lower():
                continue
            for addr in a.addrs:
                rtype = "AAAA" if _family(addr) == 6 else "A"
                if q.qtype in (255, 28 if rtype == "AAAA" else 1):
                    answers.append(DNSRR(rrname=name, type=rtype, rclass=0x8001, ttl=120,
                                         rdata=addr))
        if not answers:
            continue
        an = answers[0]
        for extra in answers[1:]:
            an = an / extra
        reply = DNS(id=0, qr=1, aa=1, an=an)
        fam = 6 if s.family == socket.AF_INET6 else 4
        s.sendto(bytes(reply), _dest(MDNS_GROUPS[fam], MDNS_PORT, a.ifname))
        say("answered", src[0], " ".join(a.addrs))
    return 0


def mdns_query(a) -> int:
    from scapy.layers.dns import DNS, DNSQR

    socks = _mdns_sockets(a)
    name = a.name.rstrip(".") + "."
    say("ready")
    deadline = time.monotonic() + a.timeout
    next_query = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_query:
            for s in socks:
                fam = 6 if s.family == socket.AF_INET6 else 4
                q = DNS(id=0, rd=0, qd=DNSQR(qname=name, qtype="AAAA" if fam == 6 else "A"))
                s.sendto(bytes(q), _dest(MDNS_GROUPS[fam], MDNS_PORT, a.ifname))
            next_query = time.monotonic() + a.interval
        for _, data, src in _recv_until(socks, min(deadline, next_query)):
            msg = _parse_dns(data)
            for i in range(msg.ancount if msg is not None and msg.qr else 0):
                rr = msg.an[i]
                if rr.rrname.decode().lower() == name.lower():
                    say("answer", rr.rdata, "from", src[0])
                    return 0
    return 1


# ---------------------------------------------------------------- SSDP


def ssdp_respond(a) -> int:
    socks = [group_socket(SSDP_GROUPS[f], SSDP_PORT, a.ifname) for f in a.families]
    say("ready")
    for s, data, src in _recv_until(socks, time.monotonic() + a.timeout):
        text = data.decode(errors="replace")
        lines = text.split("\r\n")
        if not lines[0].startswith("M-SEARCH * HTTP/1.1"):
            continue
        headers = {k.strip().upper(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if ":" in line)}
        if headers.get("ST") not in (a.st, "ssdp:all"):
            continue
        reply = ("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\n"
                 f"LOCATION: {a.location}\r\nSERVER: wlbridge-test/1 UPnP/1.1\r\n"
                 f"ST: {a.st}\r\nUSN: uuid:wlbridge-test::{a.st}\r\n\r\n")
        s.sendto(reply.encode(), src)  # unicast back to the searcher
        say("answered", src[0])
    return 0


def ssdp_search(a) -> int:
    fam = a.families[0]
    group = SSDP_GROUPS[fam]
    s = group_socket(group, 0, a.ifname, join=False)  # ephemeral port, answers come unicast
    host = f"[{group}]" if fam == 6 else group
    msg = (f"M-SEARCH * HTTP/1.1\r\nHOST: {host}:{SSDP_PORT}\r\nMAN: \"ssdp:discover\"\r\n"
           f"MX: 1\r\nST: {a.st}\r\n\r\n").encode()
    say("ready")
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        s.sendto(msg, _dest(group, SSDP_PORT, a.ifname))
        for _, data, src in _recv_until([s], min(deadline, time.monotonic() + a.interval)):
            text = data.decode(errors="replace")
            if text.startswith("HTTP/1.1 200") and f"ST: {a.st}" in text:
                loc = next((line.split(":", 1)[1].strip() for line in text.split("\r\n")
                            if line.upper().startswith("LOCATION:")), "")
                say("answer", loc, "from", src[0])
                return 0
    return 1


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m topologies.mcast", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ifname", default="eth0")
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--interval", type=float, default=1.0, help="between queries/sends")
    p.add_argument("-6", dest="families", action="append_const", const=6,
                   help="IPv6 (mDNS/SSDP; repeat -4/-6 for both)")
    p.add_argument("-4", dest="families", action="append_const", const=4, help="IPv4")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("listen")
    c.add_argument("group")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=0)
    c = sub.add_parser("send")
    c.add_argument("dst")
    c.add_argument("port", type=int)
    c.add_argument("payload")
    c.add_argument("--count", type=int, default=1)
    c = sub.add_parser("mdns-respond")
    c.add_argument("name")
    c.add_argument("addrs", nargs="+")
    c = sub.add_parser("mdns-query")
    c.add_argument("name")
    c = sub.add_parser("ssdp-respond")
    c.add_argument("st")
    c.add_argument("location")
    c = sub.add_parser("ssdp-search")
    c.add_argument("st")
    a = p.parse_args(argv)
    a.families = a.families or [4]
    handler = {"listen": listen, "send": send, "mdns-respond": mdns_respond,
               "mdns-query": mdns_query, "ssdp-respond": ssdp_respond,
               "ssdp-search": ssdp_search}[a.cmd]
    return handler(a)


if __name__ == "__main__":
    sys.exit(main())
