"""How fast the pcap stream comes home, and what tcpdump drops under a burst.

    sudo python3 -m bench.capture_throughput [--megabytes 200] [--rates 10000,50000]

1. Stream home: the same synthetic pcap (1514-byte packets) is sent by ``cat`` on the "node"
   and brought into a file, side by side:
   - raw ``cat > file`` (local) and raw ``ssh host cat > file`` (the ceiling for each transport),
   - podcap's stream home (whole records, flushed per batch) via the local and ssh transports,
   - ``ssh host cat | tshark -r - -w file`` (Wireshark's tools reading the same stream).
   ssh goes to a throwaway sshd on 127.0.0.1 (testbed/sshd.py), so no network limits it.
2. Burst: a lab Pod (testbed/lab) is captured with ``podcap capture`` machinery (local transport,
   the node script, nsenter + tcpdump) while another Pod sends UDP at each rate for 2 s; the
   table shows packets sent, in the pcap, and tcpdump's "dropped by kernel", next to dumpcap
   (tshark's capture engine) and plain tcpdump --immediate-mode capturing the same burst.
Needs root (sshd, network namespaces). Prints one table per part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

from podcap.capture import CaptureSession, CaptureSpec
from podcap.capture.stream import PcapSink, PcapStreamCopier, read_chunks
from podcap.reach import open_transport
from testbed import sshd as sshd_fixture

PACKET = bytes(1514)


def make_pcap(path: str, megabytes: int) -> int:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    record = struct.pack("<IIII", 0, 0, len(PACKET), len(PACKET)) + PACKET
    count = megabytes * 1_000_000 // len(record)
    with open(path, "wb") as f:
        f.write(header)
        block = record * 1000
        for _ in range(count // 1000):
            f.write(block)
    return os.path.getsize(path)


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def shell_to_file(argv: list[str], out: str) -> None:
    with open(out, "wb") as f:
        subprocess.run(argv, stdout=f, check=True)


def podcap_stream(transport, source: str, out: str) -> None:
    process = transport.start(["cat", source])
    sink = PcapSink(out)
    copier = PcapStreamCopier(sink)
    next_chunk = read_chunks(process.stdout)
    while chunk := next_chunk():
        copier.feed(chunk)
    sink.close()
    process.wait()


def stream_table(megabytes: int) -> None:
    work = tempfile.mkdtemp(prefix="pcbench")
    source, out = os.path.join(work, "source.pcap"), os.path.join(work, "out.pcap")
    size = make_pcap(source, megabytes)
    keys = tempfile.mkdtemp(prefix="pcsshd")
    server = sshd_fixture._start_sshd(keys)
    try:
        ssh = server.ssh_argv
        transport_ssh = open_transport(
            "ssh", server.host, ssh_user="root", ssh_port=server.port, ssh_key=server.key,
            ssh_options=server.options,
        )  # fmt: skip
        rows = [
            ("local: cat > file (raw)", lambda: shell_to_file(["cat", source], out)),
            ("local: podcap stream home", lambda: podcap_stream(open_transport("local"), source, out)),
            ("ssh: ssh host cat > file (raw)", lambda: shell_to_file(ssh("cat", source), out)),
            ("ssh: podcap stream home", lambda: podcap_stream(transport_ssh, source, out)),
            ("ssh: ssh host cat | tshark -r - -F pcap -w file", lambda: subprocess.run(
                f"{' '.join(ssh('cat', source))} | tshark -r - -F pcap -w {out}", shell=True, check=True,
                stderr=subprocess.DEVNULL)),
        ]  # fmt: skip
        print(f"\nStream home: {size / 1e6:.0f} MB pcap of 1514-byte packets, best of 3")
        print(f"{'path':45} {'MB/s':>8}")
        for name, action in rows:
            best = min(timed(action) for _ in range(3))
            assert os.path.getsize(out) == size, f"{name}: wrong size"
            print(f"{name:45} {size / 1e6 / best:8.0f}")
    finally:
        sshd_fixture._stop_sshd(server)
        shutil.rmtree(keys, ignore_errors=True)
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


SENDER = r"""
import socket, sys, time
ip, rate, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 64
sent, start = 0, time.perf_counter()
while True:
    elapsed = time.perf_counter() - start
    if elapsed >= seconds:
        break
    due = int(elapsed * rate) + 1
    while sent < due:
        s.sendto(payload, (ip, 9999)); sent += 1
print(sent)
"""


def send_burst(lab, source, target, rate: int, seconds: float = 2.0) -> int:
    done = lab.run(source, [sys.executable, "-c", SENDER, target.ip, str(rate), str(seconds)])
    return int(done.stdout.strip())


def podcap_burst(lab, rate: int, work: str) -> tuple[int, int, int, int]:
    target, source = lab.pods[0], lab.pods[1]
    out = os.path.join(work, f"burst{rate}.pcap")
    spec = CaptureSpec(container_id=target.container_id, bpf_filter="udp port 9999")
    session = CaptureSession(open_transport("local"), spec, out)
    results = {}
    runner = threading.Thread(target=lambda: results.update(r=session.run()))
    runner.start()
    try:
        while not session.node_report().ready:
            time.sleep(0.05)
        sent = send_burst(lab, source, target, rate)
        time.sleep(0.5)
    finally:
        session.stop()
        runner.join(60)
    result = results["r"]
    return sent, result.packets, result.node_stats.dropped, result.node_stats.received


def dumpcap_burst(lab, rate: int, work: str) -> tuple[int, int, str]:
    target, source = lab.pods[0], lab.pods[1]
    out = os.path.join(work, f"dumpcap{rate}.pcap")
    proc = subprocess.Popen(
        ["nsenter", "-n", "-t", str(target.pid), "dumpcap", "-q", "-i", "eth0", "-f",
         "udp port 9999", "-P", "-w", out],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(1.5)  # dumpcap prints nothing when ready with -q: give it time to listen
    sent = send_burst(lab, source, target, rate)
    time.sleep(1.5)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=30)
    count = subprocess.run(["capinfos", "-c", "-M", out], capture_output=True, text=True).stdout
    packets = int(count.strip().split()[-1])
    dropped = next((line for line in stderr.splitlines() if "dropped" in line), "").strip()
    return sent, packets, dropped


def immediate_mode_burst(lab, rate: int, work: str) -> tuple[int, int, int]:
    """Plain tcpdump with --immediate-mode (what the node script avoids), same burst."""
    target, source = lab.pods[0], lab.pods[1]
    out = os.path.join(work, f"immediate{rate}.pcap")
    proc = subprocess.Popen(
        ["nsenter", "-n", "-t", str(target.pid), "tcpdump", "--immediate-mode", "-U", "-i",
         "eth0", "-w", out, "udp port 9999"],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    proc.stderr.readline()  # "listening on eth0 ..."
    sent = send_burst(lab, source, target, rate)
    time.sleep(1.5)
    proc.send_signal(2)
    _, stderr = proc.communicate(timeout=30)
    stats = dict(
        (words[-1] if words[-1] != "kernel" else "dropped", int(words[0]))
        for words in (line.split() for line in stderr.splitlines())
        if words and words[0].isdigit()
    )
    return sent, stats.get("captured", -1), stats.get("dropped", -1)


def burst_table(rates: list[int]) -> None:
    from testbed.lab.core import Lab

    work = tempfile.mkdtemp(prefix="pcburst")
    with Lab(nodes=2, pods_per_node=1) as lab:
        print("\nBurst into a lab Pod (64-byte UDP for 2 s), tcpdump via podcap vs dumpcap")
        print(f"{'rate (pps)':>10} {'sent':>8} {'podcap pcap':>12} {'tcpdump dropped':>16} "
              f"{'dumpcap pcap (sent)':>20} {'--immediate-mode captured/dropped (sent)':>42}")  # fmt: skip
        for rate in rates:
            sent, packets, dropped, _ = podcap_burst(lab, rate, work)
            d_sent, d_packets, d_dropped = dumpcap_burst(lab, rate, work)
            i_sent, i_packets, i_dropped = immediate_mode_burst(lab, rate, work)
            print(f"{rate:>10} {sent:>8} {packets:>12} {dropped:>16} "
                  f"{f'{d_packets} ({d_sent})':>20} {f'{i_packets}/{i_dropped} ({i_sent})':>42}")  # fmt: skip
            print(f"{'':>10} dumpcap: {d_dropped}")
    for name in os.listdir(work):
        os.unlink(os.path.join(work, name))
    os.rmdir(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rates", default="10000,50000")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    args = parser.parse_args()
    if not args.skip_stream:
        stream_table(args.megabytes)
    if not args.skip_burst:
        burst_table([int(r) for r in args.rates.split(",")])


if __name__ == "__main__":
    main()
