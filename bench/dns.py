"""The dns report against tshark's DNS fields on one capture of DNS traffic, side by side.

    python3 -m bench.dns /tmp/dns.pcap --packets 1000000 --repeat 3

Writes (once, unless the file exists) a capture of Pods resolving names the way glibc does
with ``ndots:5``: A and AAAA together, each search domain in turn (NXDOMAIN) before the name
that answers, some AAAA answers lost and asked again 5 s later, some names missing everywhere.
Then times, round by round, ``podcap analyze FILE -r dns -F parquet`` (the whole command,
lookups folded with their verdicts) against ``tshark -T fields -e dns.qry.name -e
dns.flags.rcode -e dns.time`` (the fields, nothing folded).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
from pathlib import Path

from bench.make_big_pcap import MACS, ipv4, udp
from bench.run import compile_podcap, machine, podcap_command, run_measured

SEARCH = (b"default.svc.cluster.local", b"svc.cluster.local", b"cluster.local")
SERVICES = [f"svc{i}.ns{i % 40}".encode() for i in range(400)]
EXTERNAL = [f"api{i}.example.com".encode() for i in range(200)]
A, AAAA = 1, 28


def wire(name: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in name.split(b".")) + b"\x00"


def message(ident: int, flags: int, name: bytes, qtype: int, address: bytes = b"") -> bytes:
    answers = 1 if address else 0
    body = wire(name) + struct.pack("!HH", qtype, 1)
    if address:
        body += b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 30, len(address)) + address
    return struct.pack("!HHHHHH", ident & 0xFFFF, flags, 1, answers, 0, 0) + body


class Writer:
    def __init__(self, out, limit: int):
        self.out, self.limit, self.count, self.ts = out, limit, 0, 1_700_000_000.0

    def datagram(self, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, gap: float):
        if self.count >= self.limit:
            return
        self.ts += gap
        frame = MACS + ipv4(src, dst, 17, udp(sport, dport, payload), self.count & 0xFFFF)
        seconds = int(self.ts)
        self.out.write(
            struct.pack("<IIII", seconds, int((self.ts - seconds) * 1e6), len(frame), len(frame))
        )
        self.out.write(frame)
        self.count += 1


def lookup(w: Writer, rng: random.Random) -> None:
    client, server = (
        bytes([10, 244, rng.randrange(1, 8), rng.randrange(2, 250)]),
        bytes([10, 96, 0, 10]),
    )
    port, ident = rng.randrange(32768, 61000), rng.randrange(1 << 16)
    external = rng.random() < 0.3
    base = rng.choice(EXTERNAL if external else SERVICES)
    names = (
        [base + b"." + domain for domain in SEARCH] + [base]
        if external
        else [base + b".svc.cluster.local"]
    )
    lost = rng.random() < 0.02
    for n, name in enumerate(names):
        last = n == len(names) - 1
        for qtype in (A, AAAA):
            w.datagram(
                client, server, port, 53, message(ident + qtype, 0x0100, name, qtype), 0.0001
            )
        for qtype in (A, AAAA):
            if last and lost and qtype == AAAA:
                continue
            rcode = 0 if last else 3
            address = bytes([10, 96, 1, 1]) if last and qtype == A else b""
            w.datagram(
                server,
                client,
                53,
                port,
                message(ident + qtype, 0x8180 | rcode, name, qtype, address),
                0.0005,
            )
        ident += 2
    if lost:
        w.datagram(
            client, server, port, 53, message(ident - 2 + AAAA, 0x0100, names[-1], AAAA), 5.0
        )
        w.datagram(
            server, client, 53, port, message(ident - 2 + AAAA, 0x8180, names[-1], AAAA), 0.0005
        )


def generate(path: Path, packets: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        writer = Writer(out, packets)
        while writer.count < packets:
            lookup(writer, rng)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if not args.path.exists():
        generate(args.path, args.packets, seed=1)
    compile_podcap()
    print(machine())
    fields = ["-e", "dns.qry.name", "-e", "dns.flags.rcode", "-e", "dns.time"]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="podcap-bench-") as tmp:
        work = Path(tmp)
        contenders = {
            "podcap analyze -r dns -F parquet (lookups and verdicts)": (
                [podcap_command(), "analyze", str(args.path), "-r", "dns", "-F", "parquet",
                 "-o", str(work / "dns.parquet")], None),  # fmt: skip
            "tshark -T fields (dns.qry.name, dns.flags.rcode, dns.time)": (
                ["tshark", "-n", "-r", str(args.path), "-T", "fields", *fields], work / "t.txt"),
        }  # fmt: skip
        for round_ in range(1, args.repeat + 1):
            times = []
            for name, (argv, out) in contenders.items():
                seconds, _ = run_measured(argv, work, out, sample=False)  # time alone
                best[name] = min(best.get(name, seconds), seconds)
                times.append(f"{name} {seconds:.2f} s")
            print(f"  round {round_}: " + ", ".join(times))
    tshark = best["tshark -T fields (dns.qry.name, dns.flags.rcode, dns.time)"]
    for name, seconds in best.items():
        print(f"{name}: {seconds:.2f} s ({tshark / seconds:.1f}x tshark)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
