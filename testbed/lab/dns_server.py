"""A small DNS responder for the lab, the CoreDNS of its tests (UDP, one socket).

Run inside a namespace: ``ip netns exec NS python3 dns_server.py --zone ZONE.json --log LOG``.
The zone file says how each name is answered (names are given without the final dot):

    {"addresses": {"api.shop": "93.184.216.34"},   # A answered; AAAA answered without data
     "servfail": ["broken.example.com"],             # SERVFAIL
     "truncate": ["big.example.com"],                # an empty answer with the TC bit
     "silent": ["dead.svc.cluster.local"],           # never answered (a server that drops)
     "lose_once": {"db.prod.svc.cluster.local": 28}} # the first query of that type is lost

Any other name is NXDOMAIN. Each query is appended to ``--log`` as one JSON line (name, type,
id, client address and port, and what was done: the rcode's name, ``truncated`` or ``lost``),
the ground truth a test compares the dns report with. Prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt

SEARCH = "default.svc.cluster.local svc.cluster.local cluster.local"


def answer(query: dpkt.dns.DNS, zone: dict, lost: set) -> tuple[bytes | None, str]:
    """The response to ``query`` (None: none is sent) and what was done, for the log."""
    question = query.qd[0]
    name, qtype = question.name.rstrip("."), question.type
    if name in zone.get("silent", []):
        return None, "lost"
    if zone.get("lose_once", {}).get(name) == qtype and (name, qtype) not in lost:
        lost.add((name, qtype))
        return None, "lost"
    reply = dpkt.dns.DNS(id=query.id, qd=query.qd, an=[])
    reply.qr, reply.rd, reply.ra, reply.rcode = dpkt.dns.DNS_R, query.rd, 1, 0
    address = zone.get("addresses", {}).get(name)
    done = "NOERROR"
    if name in zone.get("servfail", []):
        reply.rcode, done = 2, "SERVFAIL"
    elif name in zone.get("truncate", []):
        done = "truncated"
    elif address is None:
        reply.rcode, done = 3, "NXDOMAIN"
    elif qtype == dpkt.dns.DNS_A:
        reply.an = [dpkt.dns.DNS.RR(name=question.name, type=qtype, ttl=30,
                                    rdata=socket.inet_aton(address))]  # fmt: skip
    raw = bytearray(bytes(reply))
    if done == "truncated":
        raw[2] |= 0x02
    return bytes(raw), done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zone", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    with open(args.zone, encoding="utf-8") as f:
        zone = json.load(f)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.port))
    print("ready", flush=True)
    lost: set = set()
    with open(args.log, "a", encoding="utf-8") as log:
        while True:
            data, peer = sock.recvfrom(4096)
            try:
                query = dpkt.dns.DNS(data)
            except dpkt.UnpackError:
                continue
            if not query.qd:
                continue
            reply, done = answer(query, zone, lost)
            if reply is not None:
                sock.sendto(reply, peer)
            question = query.qd[0]
            entry = {"time": time.time(), "name": question.name.rstrip("."),
                     "type": question.type, "id": query.id, "client": peer[0],
                     "port": peer[1], "done": done}  # fmt: skip
            log.write(json.dumps(entry) + "\n")
            log.flush()


if __name__ == "__main__":
    sys.exit(main())


@contextlib.contextmanager
def serving(lab, pod, zone: dict, log: Path) -> Iterator[None]:
    """This responder in ``pod``'s namespace for the block (the lab stops it at close too)."""
    zone_file = log.with_suffix(".zone.json")
    zone_file.write_text(json.dumps(zone))
    argv = [sys.executable, __file__, "--zone", str(zone_file), "--log", str(log)]
    server = lab.popen(pod, argv, stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the DNS responder in {pod.name} did not start")
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def resolv_conf(pod, nameserver: str, search: str = SEARCH) -> Iterator[None]:
    """A kubelet's resolv.conf for ``pod`` (``ip netns exec`` mounts /etc/netns/NS/resolv.conf
    over /etc/resolv.conf): the search list, ndots:5, a 1 s timeout to keep tests short."""
    etc = Path("/etc/netns") / pod.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(
        f"search {search}\nnameserver {nameserver}\noptions ndots:5 timeout:1 attempts:2\n"
    )
    try:
        yield
    finally:
        shutil.rmtree(etc, ignore_errors=True)


# The application: getaddrinfo without AI_ADDRCONFIG (getent's flag, which leaves out AAAA
# where the Pod has no IPv6 address), so glibc sends A and AAAA together from one socket.
RESOLVE = "import socket,sys; print(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80)}))"


def resolve(lab, pod, name: str):
    """Resolve ``name`` in ``pod`` as an application does; the CompletedProcess."""
    return lab.run(pod, [sys.executable, "-c", RESOLVE, name])


def logged(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]
