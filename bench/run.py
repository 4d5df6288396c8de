"""Time podcap's decoder against tshark and a plain dpkt loop on one capture, side by side.

    python3 -m bench.make_big_pcap /tmp/big.pcap
    python3 -m bench.run /tmp/big.pcap

Every contender runs as its own process, start-up included, and its wall time and peak
memory (the process and any helper process it starts, see ``run_measured``) are printed in
one table:

* podcap: the whole command ``podcap analyze FILE --report flows --format parquet -o
  flows.parquet`` (when the analyze command exists), and the decoder alone: a Python process
  that imports podcap.decode and runs ``read_capture``, to show what decoding costs within it.
* tshark: ``tshark -T fields`` extracting the same header fields (VXLAN on 8472 decoded with
  ``-d``), written to a file.
* dpkt: a plain ``dpkt.pcap.Reader`` + ``dpkt.ethernet.Ethernet`` loop collecting the same
  fields into lists.
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TSHARK_FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ip.proto",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw",
    "tcp.ack_raw", "tcp.window_size_value", "tcp.len", "tcp.options.timestamp.tsval",
    "http.request.method", "http.request.uri", "http.host", "http.response.code",
]  # fmt: skip
# The flows report's inputs alone: issue 15's speed target is set against this run.
TSHARK_HEADER_FIELDS = [
    "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.flags",
    "tcp.len", "tcp.stream",
]  # fmt: skip

READ_CAPTURE_SCRIPT = """
import sys
from podcap.decode import read_capture
cap = read_capture(sys.argv[1], needles=(b"lbtest",))
print(len(cap.packets), "packets,", int(cap.contains[b"lbtest"].sum()), "with lbtest")
"""

DPKT_SCRIPT = """
import socket, sys
import dpkt
rows = []
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if not isinstance(ip, dpkt.ip.IP):
            continue
        l4 = ip.data
        if isinstance(l4, dpkt.udp.UDP) and l4.dport == 8472:  # VXLAN by hand: dpkt has none
            inner = dpkt.ethernet.Ethernet(l4.data[8:]).data
            if isinstance(inner, dpkt.ip.IP):
                ip, l4 = inner, inner.data
        row = [ts, len(buf), socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), ip.p]
        if isinstance(l4, dpkt.tcp.TCP):
            row += [l4.sport, l4.dport, l4.flags, l4.seq, l4.ack, l4.win, len(l4.data)]
        elif isinstance(l4, dpkt.udp.UDP):
            row += [l4.sport, l4.dport]
        rows.append(row)
print(len(rows), "rows")
"""


def run_measured(
    argv: list[str], cwd: Path, stdout_path: Path | None = None, sample: bool = True
) -> tuple[float, float]:
    """Run argv to completion; return (wall seconds, peak RSS MiB of the process tree).
    ``sample=False``: no sampling thread (on 2 CPUs it takes time from a command that runs
    two processes), the peak is then wait4's alone.

    The peak is the larger of: the largest single process (wait4's max RSS covers the
    process and the children it waited for, but as a maximum, not a sum) and the sum over
    the process and its children sampled every 20 ms (podcap's decoder may run a helper
    process next to the main one: their memory adds up)."""
    out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
    sampler = TreeMemory(proc.pid)
    if sample:
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if sample:
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if stdout_path:
        out.close()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {stderr.strip()[-500:]}")
    return elapsed, max(usage.ru_maxrss / 1024, sampler.peak_kib / 1024)


class TreeMemory(threading.Thread):
    """Samples the summed resident memory of a process and its direct children."""

    def __init__(self, pid: int, period: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_kib = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.period):
            pids = [self.pid, *self._children()]
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in pids))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def _children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def podcap_command() -> str:
    """The ``podcap`` console script pip installed for this Python. Found on PATH first there
    may be a version manager's shim instead (pyenv: a bash script running ``pyenv exec``,
    about 0.09 s per call here), which is that tool's start-up, not podcap's."""
    beside = Path(sys.executable).parent / "podcap"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("podcap") or "podcap"


def compile_podcap() -> None:
    """podcap's modules compiled to bytecode, as ``pip install`` leaves them: a checkout
    installed editable under PYTHONDONTWRITEBYTECODE (this machine's default) would
    otherwise compile every module at each start (0.1-0.15 s), which no installed copy does."""
    import compileall

    import podcap

    compileall.compile_dir(Path(podcap.__file__).parent, quiet=1)


def analyze_command_exists() -> bool:
    probe = subprocess.run(
        [podcap_command(), "analyze", "--help"], capture_output=True, text=True, check=False
    )
    return probe.returncode == 0 and "--report" in probe.stdout


def contenders(capture: Path, workdir: Path) -> list[tuple[str, list[str], Path | None]]:
    python = sys.executable
    runs = []
    if analyze_command_exists():
        runs.append(
            (
                "podcap analyze --report flows --format parquet (whole command)",
                [podcap_command(), "analyze", str(capture), "--report", "flows", "--format", "parquet",
                 "-o", str(workdir / "flows.parquet")],
                None,
            )
        )  # fmt: skip
        runs.append(
            (
                "  the same, one process (PODCAP_DECODE_HELPER=0)",
                ["env", "PODCAP_DECODE_HELPER=0", *runs[-1][1]],
                None,
            )
        )
    runs.append(
        (
            "podcap decoder alone: python -c 'read_capture(...)'",
            [python, "-c", READ_CAPTURE_SCRIPT, str(capture)],
            None,
        )
    )
    for fields in (TSHARK_HEADER_FIELDS, TSHARK_FIELDS):
        tshark = ["tshark", "-n", "-r", str(capture), "-d", "udp.port==8472,vxlan", "-T", "fields"]
        for name in fields:
            tshark += ["-e", name]
        label = f"tshark -T fields ({len(fields)} fields) > file"
        runs.append((label, tshark, workdir / f"tshark-{len(fields)}.tsv"))
    runs.append(
        (
            "dpkt loop (pcap.Reader + Ethernet objects)",
            [python, "-c", DPKT_SCRIPT, str(capture)],
            None,
        )
    )
    return runs


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    tshark = subprocess.run(["tshark", "--version"], capture_output=True, text=True).stdout
    return (
        f"{os.cpu_count()} vCPU {cpu}, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{tshark.splitlines()[0] if tshark else 'tshark ?'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument(
        "--skip", action="append", default=[], help="skip contenders whose name starts so"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds (each contender once per round); best shown"
    )
    args = parser.parse_args()
    if not shutil.which("tshark"):
        raise SystemExit("tshark is needed for the comparison (apt install tshark)")
    # OpenBLAS picks a core type at import; a wrong forced value only slows numpy down here.
    os.environ.pop("OPENBLAS_CORETYPE", None)
    size_mb = args.capture.stat().st_size / 1e6
    print(f"capture: {args.capture} ({size_mb:.1f} MB)")
    print(f"machine: {machine()}")
    print(f"podcap: {podcap_command()}")
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="podcap-bench-") as tmp:
        chosen = [
            contender
            for contender in contenders(args.capture, Path(tmp))
            if not any(contender[0].startswith(s) for s in args.skip)
        ]
        # Round after round, every contender once each: the machine's slow and quick minutes
        # fall on all of them alike, and each round gives a ratio measured in the same minutes.
        for round_number in range(1, args.repeat + 1):
            for name, argv, stdout_path in chosen:
                runs.setdefault(name, []).append(run_measured(argv, Path(tmp), stdout_path))
            times = ", ".join(f"{name.split(':')[0].strip()} {runs[name][-1][0]:.2f} s"
                              for name, _, _ in chosen)  # fmt: skip
            print(f"  round {round_number}: {times}", flush=True)
    results = [(name, *min(measured)) for name, measured in runs.items()]
    # Ratios are against the first tshark run: the 8 header fields the flows report needs.
    tshark_time = next((r[1] for r in results if r[0].startswith("tshark")), None)
    print()
    print(f"| {'contender':<66} | {'seconds':>7} | {'vs tshark':>9} | {'peak MiB':>12} |")
    print(f"|{'-' * 68}|{'-' * 9}:|{'-' * 10}:|{'-' * 13}:|")
    for name, seconds, rss in results:
        ratio = f"{tshark_time / seconds:.1f}x" if tshark_time else "-"
        print(f"| {name:<66} | {seconds:7.2f} | {ratio:>9} | {rss:12.0f} |")
    tshark_runs = next((m for name, m in runs.items() if name.startswith("tshark")), None)
    if tshark_runs:
        print()
        print("vs tshark (8 fields) round by round (both timed in the same minutes):")
        for name, measured in runs.items():
            if not name.startswith("tshark"):
                ratios = [t[0] / m[0] for t, m in zip(tshark_runs, measured, strict=True)]
                listed = " ".join(f"{r:.1f}x" for r in ratios)
                print(f"  {name.strip()}: {listed} (median {statistics.median(ratios):.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
