"""Time the snat report against the decoder alone and tshark, on the same captures, side by side.

    python3 -m bench.make_big_pcap /tmp/big.pcap --packets 200000
    python3 -m bench.snat_report /tmp/big.pcap --copies 2

``--copies 2`` analyzes the capture plus a copy of it, as if taken at two points: every
connection then has a twin to match by its NAT-invariant keys (SYN ISN, TSval, SYN-ACK ISN,
IP ID, data segments), which is the cross-capture matcher's worst case per connection.
Contenders, each its own process with start-up included (wall time, peak RSS):

* ``podcap analyze FILES --report snat`` (decode, flows, matching, verdicts);
* ``podcap analyze FILES --report flows`` (decode and flows only: the baseline);
* ``tshark -T fields`` extracting just the matching keys from the same files (what one
  would start from by hand: mergecap, then correlate ``tcp.seq_raw`` in a spreadsheet).
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

KEY_FIELDS = ["frame.time_epoch", "ip.src", "ip.dst", "ip.id", "ip.ttl", "tcp.srcport",
              "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
              "tcp.options.timestamp.tsval"]  # fmt: skip


def measured(argv: list[str], stdout: Path | None = None) -> tuple[float, float]:
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if stdout:
        out.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{argv[:3]} failed ({code}): {proc.stderr.read().decode()[-400:]}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--copies", type=int, default=2, help="analyze this many copies (>= 1)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podcap-bench-snat-"))
    try:
        files = [str(args.capture)]
        for i in range(1, args.copies):
            copy = work / f"copy{i}{args.capture.suffix}"
            shutil.copy(args.capture, copy)
            files.append(str(copy))
        runs = [
            ("podcap analyze --report snat", ["podcap", "analyze", *files, "-r", "snat",
             "--format", "csv", "-o", str(work / "snat.csv")], None),
            ("podcap analyze --report flows", ["podcap", "analyze", *files, "-r", "flows",
             "--format", "csv", "-o", str(work / "flows.csv")], None),
        ]  # fmt: skip
        for i, path in enumerate(files):
            tshark = ["tshark", "-n", "-r", path, "-T", "fields"]
            for field in KEY_FIELDS:
                tshark += ["-e", field]
            runs.append(
                (f"tshark -T fields, matching keys only (file {i + 1})", tshark, work / f"t{i}.tsv")
            )
        size = sum(Path(f).stat().st_size for f in files) / 2**20
        print(f"{len(files)} file(s), {size:.1f} MiB in all")
        print(f"{'contender':58} {'wall s':>8} {'peak MiB':>9}")
        for name, argv, stdout in runs:
            wall, rss = measured(argv, stdout)
            print(f"{name:58} {wall:8.2f} {rss:9.0f}")
        rows = sum(1 for _ in open(work / "snat.csv")) - 1
        print(f"snat rows: {rows}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
