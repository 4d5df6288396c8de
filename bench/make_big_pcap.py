"""Write a large synthetic capture for the decoder benchmark.

    python3 -m bench.make_big_pcap big.pcap --packets 1000000

The traffic mimics what a node capture during a load-balancer test holds: HTTP connections
(some requests carry an ``lbtest`` marker, some requests are retransmitted), unanswered SYNs
with their retries, connections refused with a RST, DNS queries and answers, and one packet
in ten inside VXLAN on UDP 8472 (flannel/Cilium) between two node addresses. Deterministic
for a given --seed.
"""

import argparse
import random
import struct
import sys
from pathlib import Path

ETH_IPV4 = 0x0800
MACS = bytes.fromhex("0200000000010200000000020800")
NODE_A, NODE_B = bytes([192, 168, 10, 11]), bytes([192, 168, 10, 12])
SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0, src, dst
    )
    return header + payload


def tcp(sport, dport, seq, ack, flags, payload=b"", tsval=0, win=64240) -> bytes:
    options = b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, max(tsval - 3, 0))
    header = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (8 << 12) | flags, win, 0, 0)
    return header + options + payload


def udp(sport, dport, payload) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


class Writer:
    """Collects (ts, frame) records; one tenth of them is wrapped in VXLAN on port 8472."""

    def __init__(self, out, rng: random.Random, limit: int):
        self.out = out
        self.limit = limit
        self.rng = rng
        self.count = 0
        self.ts = 1_700_000_000.0
        self.ident = 0

    def frame(self, src: bytes, dst: bytes, proto: int, l4: bytes, overlay: bool) -> None:
        if self.count >= self.limit:  # the last connection may be cut: exactly --packets
            return
        self.ident = (self.ident + 1) & 0xFFFF
        frame = MACS + ipv4(src, dst, proto, l4, self.ident)
        if overlay:
            vx = struct.pack("!BBHI", 0x08, 0, 0, 1 << 8) + frame
            outer_udp = udp(self.rng.randrange(32768, 61000), 8472, vx)
            frame = MACS + ipv4(NODE_A, NODE_B, 17, outer_udp, self.ident)
        self.ts += self.rng.random() * 0.0002
        seconds = int(self.ts)
        micros = int((self.ts - seconds) * 1e6)
        self.out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
        self.count += 1


def pod_ip(rng: random.Random, subnet: int) -> bytes:
    return bytes([10, 244, subnet, rng.randrange(2, 250)])


def http_connection(w: Writer, rng: random.Random, overlay: bool) -> None:
    client, server = pod_ip(rng, 1), pod_ip(rng, 2)
    sport, dport = rng.randrange(32768, 61000), rng.choice((80, 8080))
    cseq, sseq, ts = rng.randrange(1 << 31), rng.randrange(1 << 31), rng.randrange(1 << 30)
    marker = b"?lbtest=1" if rng.random() < 0.2 else b""
    request = (
        b"GET /mytest" + marker + b" HTTP/1.1\r\nHost: web.default.svc\r\n"
        b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
    )
    body = b"hello from " + server.hex().encode() + b"\n" * rng.randrange(1, 200)
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    c2s = (client, server, 6)
    s2c = (server, client, 6)
    w.frame(*c2s, tcp(sport, dport, cseq, 0, SYN, tsval=ts), overlay)
    w.frame(*s2c, tcp(dport, sport, sseq, cseq + 1, SYN | ACK, tsval=ts + 1), overlay)
    w.frame(*c2s, tcp(sport, dport, cseq + 1, sseq + 1, ACK, tsval=ts + 2), overlay)
    w.frame(*c2s, tcp(sport, dport, cseq + 1, sseq + 1, PSH | ACK, request, ts + 2), overlay)
    if rng.random() < 0.05:  # the request retransmitted
        w.frame(*c2s, tcp(sport, dport, cseq + 1, sseq + 1, PSH | ACK, request, ts + 9), overlay)
    cseq += 1 + len(request)
    w.frame(*s2c, tcp(dport, sport, sseq + 1, cseq, PSH | ACK, response, ts + 3), overlay)
    sseq += 1 + len(response)
    w.frame(*c2s, tcp(sport, dport, cseq, sseq, FIN | ACK, tsval=ts + 4), overlay)
    w.frame(*s2c, tcp(dport, sport, sseq, cseq + 1, FIN | ACK, tsval=ts + 5), overlay)
    w.frame(*c2s, tcp(sport, dport, cseq + 1, sseq + 1, ACK, tsval=ts + 6), overlay)


def unanswered_syn(w: Writer, rng: random.Random, overlay: bool) -> None:
    client, server = pod_ip(rng, 1), pod_ip(rng, 3)
    sport, seq = rng.randrange(32768, 61000), rng.randrange(1 << 31)
    for retry in range(3):
        w.frame(client, server, 6, tcp(sport, 80, seq, 0, SYN, tsval=retry), overlay)


def refused(w: Writer, rng: random.Random, overlay: bool) -> None:
    client, server = pod_ip(rng, 1), pod_ip(rng, 4)
    sport, seq = rng.randrange(32768, 61000), rng.randrange(1 << 31)
    w.frame(client, server, 6, tcp(sport, 9090, seq, 0, SYN, tsval=1), overlay)
    w.frame(server, client, 6, tcp(9090, sport, 0, seq + 1, RST | ACK), overlay)


def dns(w: Writer, rng: random.Random, overlay: bool) -> None:
    client, server = pod_ip(rng, 1), bytes([10, 96, 0, 10])
    sport, qid = rng.randrange(32768, 61000), rng.randrange(1 << 16)
    question = b"\x03web\x07default\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01"
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
    answer = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question
    answer += b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x1e\x00\x04" + bytes([10, 96, 12, 34])
    w.frame(client, server, 17, udp(sport, 53, query), overlay)
    w.frame(server, client, 17, udp(53, sport, answer), overlay)


KINDS = ((http_connection, 0.80), (unanswered_syn, 0.07), (refused, 0.06), (dns, 0.07))


def generate(path: Path, packets: int, seed: int) -> int:
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS, strict=True)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        writer = Writer(out, rng, packets)
        while writer.count < packets:
            kind = rng.choices(kinds, weights)[0]
            kind(writer, rng, rng.random() < 0.1)
    return writer.count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = generate(args.path, args.packets, args.seed)
    print(f"wrote {count} packets, {args.path.stat().st_size / 1e6:.1f} MB to {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
