"""What the drop watcher (``podcap capture --drops``) costs: UDP packets per second through a
veth pair between two namespaces this script makes, with and without the watcher attached,
round after round (alternating, so the machine's slow minutes fall on both).

Two kinds of traffic, both unrelated to the watched addresses (as a busy node's is):
``delivered`` (to a listening socket: the kernel consumes those packets, no kfree_skb) and
``dropped`` (to a closed port: every packet is a kfree_skb with NO_SOCKET, so the watcher's
program runs for each and throws it away in the kernel). The rate is the receiving side's:
the UDP counters of its namespace (/proc/net/snmp: InDatagrams for the delivered, read by a
receiver as fast as it can; NoPorts for the dropped).

    python3 -m bench.drops_overhead --seconds 3 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from podcap.capture.drops import DropWatch
from podcap.reach.local import LocalTransport

A, B, WATCHED = "10.97.0.1", "10.97.0.2", "10.96.0.9"
# Sends for SECONDS at most RATE packets/s (0: as fast as it can); prints the CPU seconds it
# used, in which the kernel's work for each packet (veth, the receiving stack, a drop and the
# watcher's program) is mostly counted, and how many it sent.
SEND = """import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
payload, start = b"x" * 18, time.monotonic()
end, rate, sent = start + float(sys.argv[3]), float(sys.argv[4]), 0
while time.monotonic() < end:
    for _ in range(1000):
        try:
            s.send(payload)
        except OSError:
            pass
    sent += 1000
    if rate:
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
t = os.times()
print(t.user + t.system, sent)
"""
LISTEN = """import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind(("0.0.0.0", 9999))
buffer = bytearray(2048)
while True:
    s.recv_into(buffer)
"""


def _ns(name: str, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *argv], check=True, **kwargs)


def _udp_counters(ns: str) -> dict[str, int]:
    lines = _ns(ns, "cat", "/proc/net/snmp", capture_output=True, text=True).stdout.splitlines()
    names, values = [line.split()[1:] for line in lines if line.startswith("Udp:")][:2]
    return dict(zip(names, map(int, values), strict=True))


def _rate(a: str, b: str, port: int, seconds: float, counter: str, rate: float):
    """(packets/s that arrived, the sender's CPU microseconds per packet sent)."""
    before = _udp_counters(b)[counter]
    done = _ns(a, sys.executable, "-c", SEND, B, str(port), str(seconds), str(rate),
               capture_output=True, text=True)  # fmt: skip
    cpu, sent = done.stdout.split()
    time.sleep(0.2)
    return (_udp_counters(b)[counter] - before) / seconds, float(cpu) / int(sent) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0, help="packets/s offered (0: all)")
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    a, b = f"podcap-bench-a-{tag}", f"podcap-bench-b-{tag}"
    listener = None
    try:
        for name in (a, b):
            subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "link", "add", f"ba{tag}", "type", "veth", "peer", "name",
                        f"bb{tag}"], check=True)  # fmt: skip
        for ns, dev, ip in ((a, f"ba{tag}", A), (b, f"bb{tag}", B)):
            subprocess.run(["ip", "link", "set", dev, "netns", ns], check=True)
            _ns(ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            _ns(ns, "ip", "link", "set", dev, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", b, sys.executable, "-c", LISTEN])
        time.sleep(0.5)
        results: dict[tuple[str, bool], list[float]] = {}
        for round_no in range(1, args.rounds + 1):
            for watched in (False, True):
                watch = thread = None
                if watched:
                    out = Path(tempfile.mkdtemp()) / "bench.drops.jsonl"
                    watch = DropWatch(LocalTransport("bench"), [WATCHED], out, 600, None)
                    thread = threading.Thread(target=watch.run, daemon=True)
                    thread.start()
                    assert watch.wait_ready(30), "the watcher did not attach"
                for kind, port, counter in (("delivered", 9999, "InDatagrams"),
                                            ("dropped", 9998, "NoPorts")):  # fmt: skip
                    rate, cpu = _rate(a, b, port, args.seconds, counter, args.rate)
                    results.setdefault((kind, watched), []).append(rate)
                    results.setdefault((kind, watched, "cpu"), []).append(cpu)
                    print(f"round {round_no} {kind:9} watcher={'on ' if watched else 'off'} "
                          f"{rate / 1000:8.1f} k packets/s, {cpu:.2f} us CPU per packet",
                          flush=True)  # fmt: skip
                if watch is not None:
                    watch.stop()
                    thread.join(30)
        for kind in ("delivered", "dropped"):
            off, on = (statistics.median(results[(kind, w)]) for w in (False, True))
            cpu_off, cpu_on = (statistics.median(results[(kind, w, "cpu")]) for w in (False, True))
            print(f"{kind}: {off / 1000:.1f} k/s without, {on / 1000:.1f} k/s with the watcher "
                  f"({(off - on) / off * 100:+.1f} %); CPU per packet {cpu_off:.2f} us without, "
                  f"{cpu_on:.2f} us with ({(cpu_on - cpu_off) / cpu_off * 100:+.1f} %); medians "
                  f"of {args.rounds}")  # fmt: skip
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for name in (a, b):
            subprocess.run(["ip", "netns", "del", name], check=False)


if __name__ == "__main__":
    main()
