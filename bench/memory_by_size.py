"""Peak memory and time of the whole analyze command, capture size by capture size.

    python3 -m bench.make_big_pcap /tmp/big1m.pcap --packets 1000000
    python3 -m bench.make_big_pcap /tmp/big3m.pcap --packets 3000000
    python3 -m bench.memory_by_size /tmp/big1m.pcap /tmp/big3m.pcap

Each capture runs ``podcap analyze FILE --report flows --format parquet -o flows.parquet``
twice: as shipped (a capture estimated above ``--in-memory-limit``, 1.5 M packets, is
analyzed in buckets spilled to disk, ``podcap.analysis.buckets``) and with ``--in-memory-limit 0``
(always whole in memory), so the table shows what the buckets buy. Memory is measured as in
``run.py`` (the process tree's peak resident memory).
"""

import argparse
import sys
import tempfile
from pathlib import Path

from bench.run import podcap_command, run_measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", type=Path, nargs="+")
    parser.add_argument("--limit", default="1500000", help="--in-memory-limit as shipped")
    args = parser.parse_args()
    podcap = podcap_command()
    print(f"| {'capture':<28} | {'MB':>6} | {'mode':<22} | {'seconds':>7} | {'peak MiB':>8} |")
    print(f"|{'-' * 30}|{'-' * 7}:|{'-' * 24}|{'-' * 8}:|{'-' * 9}:|")
    with tempfile.TemporaryDirectory(prefix="podcap-bench-") as tmp:
        for capture in args.captures:
            size = capture.stat().st_size / 1e6
            for mode, limit in (("as shipped", args.limit), ("always in memory", "0")):
                argv = [podcap, "analyze", str(capture), "--report", "flows", "--format",
                        "parquet", "-o", "flows.parquet", "--in-memory-limit", limit]  # fmt: skip
                seconds, peak = run_measured(argv, Path(tmp))
                print(
                    f"| {capture.name:<28} | {size:6.0f} | {mode:<22} | {seconds:7.2f} "
                    f"| {peak:8.0f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
