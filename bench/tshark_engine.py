"""Time ``podcap analyze --engine tshark`` (Wireshark's dissectors through pyshark) against the
native engine and plain ``tshark -T fields`` on the first packets of a capture.

    python3 -m bench.make_big_pcap /tmp/big.pcap
    python3 -m bench.tshark_engine /tmp/big.pcap --packets 5000

Each contender runs as its own process, start-up included; packets per second are the
capture's packets over the wall time.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--packets", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="podcap-bench-") as tmp:
        sample = Path(tmp) / "sample.pcap"
        subprocess.run(
            ["editcap", "-r", str(args.capture), str(sample), f"1-{args.packets}"], check=True
        )
        podcap = [sys.executable, "-m", "podcap", "analyze", str(sample), "-r", "packets"]
        runs = {
            "podcap --engine tshark (pyshark, PDML)": [*podcap, "--engine", "tshark", "-F", "csv"],
            "podcap --engine native": [*podcap, "-F", "csv"],
            "tshark -T fields (header fields)": [
                "tshark", "-n", "-r", str(sample), "-d", "udp.port==8472,vxlan", "-T", "fields",
                "-e", "frame.number", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport",
                "-e", "tcp.dstport", "-e", "http.request.uri",
            ],
        }  # fmt: skip
        print(f"{args.packets} packets of {args.capture}")
        print(f"| {'contender':<40} | {'seconds':>7} | {'packets/s':>9} |")
        print(f"|{'-' * 42}|{'-' * 8}:|{'-' * 10}:|")
        for name, argv in runs.items():
            seconds = timed(argv)
            print(f"| {name:<40} | {seconds:7.2f} | {args.packets / seconds:9.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
