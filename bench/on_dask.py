"""Many captures at once: in one process file by file, on Dask's local cluster with 1 and 2
workers, and on a running cluster (``dask scheduler`` + 2 ``dask worker``), side by side with
tshark's header fields over the same files.

    python3 -m bench.on_dask /tmp/podcap-dask --files 8 --packets 1000000 --repeat 2

Writes (once) FILES captures of the benchmark's traffic mix (``bench.make_big_pcap``, seeds
1..FILES) into the folder, then times each contender as a whole command, round after round:
the flows report as Parquet (the Dask runs write it as a dataset, ``--dataset``), the peak
memory of the largest process (for a cluster: of a worker) and the bytes written.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.make_big_pcap import generate
from bench.run import TSHARK_HEADER_FIELDS, machine, podcap_command, run_measured

LOCAL = "127.0.0.1"


def captures(folder: Path, files: int, packets: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"mix-{seed}.pcap" for seed in range(1, files + 1)]
    for seed, path in enumerate(paths, start=1):
        if not path.exists():
            generate(path, packets, seed)
    return paths


class Cluster:
    """A scheduler and two workers (no nanny, one thread each) on 127.0.0.1."""

    def __init__(self, workers: int = 2):
        import distributed

        self.port = _free_port()
        self.address = f"tcp://{LOCAL}:{self.port}"
        dask = [sys.executable, "-m", "dask"]
        self.processes = [self._start([*dask, "scheduler", "--host", LOCAL, "--port",
                                       str(self.port), "--no-dashboard"])]  # fmt: skip
        self.processes += [
            self._start([*dask, "worker", self.address, "--host", LOCAL, "--nthreads", "1",
                         "--no-nanny", "--no-dashboard"])
            for _ in range(workers)
        ]  # fmt: skip
        with distributed.Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    @staticmethod
    def _start(argv: list[str]) -> subprocess.Popen:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip

    def worker_peaks_mib(self) -> list[float]:
        """Each worker's peak resident memory so far (VmHWM)."""
        peaks = []
        for process in self.processes[1:]:
            for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks

    def stop(self) -> None:
        """The workers first: a worker whose scheduler is gone keeps trying to reach it."""
        for process in [*self.processes[1:], self.processes[0]]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return s.getsockname()[1]


def written_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def one_round(paths: list[Path], work: Path, cluster: Cluster | None, tshark: bool) -> dict:
    podcap = podcap_command()
    flows = ["-r", "flows", "-F", "parquet"]
    results = {}
    seconds, peak = 0.0, 0.0
    for n, path in enumerate(paths):
        t, p = run_measured([podcap, "analyze", str(path), *flows, "-o", str(work / f"{n}.parquet")],
                            work)  # fmt: skip
        seconds, peak = seconds + t, max(peak, p)
    written = sum(written_mb(work / f"{n}.parquet") for n in range(len(paths)))
    results["in one process, file by file"] = (seconds, peak, written)
    files = [str(p) for p in paths]
    for workers in (1, 2):
        out = work / f"dask-{workers}"
        argv = [podcap, "analyze", *files, *flows, "-o", str(out), "--dataset",
                "--dask-workers", str(workers)]  # fmt: skip
        t, p = run_measured(argv, work)
        results[f"--dask, local cluster of {workers} worker(s)"] = (t, p, written_mb(out))
    if cluster is not None:
        out = work / "external"
        argv = [podcap, "analyze", *files, *flows, "-o", str(out), "--dataset",
                "--scheduler", cluster.address]  # fmt: skip
        t, _ = run_measured(argv, work)
        peak = max(cluster.worker_peaks_mib())
        results["--scheduler (dask scheduler + 2 dask worker)"] = (t, peak, written_mb(out))
    if tshark:
        seconds, peak = 0.0, 0.0
        for n, path in enumerate(paths):
            argv = ["tshark", "-n", "-r", str(path), "-d", "udp.port==8472,vxlan", "-T", "fields"]
            argv += [word for field in TSHARK_HEADER_FIELDS for word in ("-e", field)]
            t, p = run_measured(argv, work, work / f"tshark-{n}.tsv")
            seconds, peak = seconds + t, max(peak, p)
        results["tshark -T fields (8 fields), file by file"] = (seconds, peak, 0.0)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-tshark", action="store_true", help="leave tshark's runs out")
    args = parser.parse_args()
    paths = captures(args.folder, args.files, args.packets)
    size = sum(p.stat().st_size for p in paths) / 1e6
    print(f"{len(paths)} captures of {args.packets:,} packets, {size:.0f} MB in all")
    print(machine())
    best: dict[str, tuple[float, float, float]] = {}
    cluster = Cluster()
    try:
        for round_ in range(1, args.repeat + 1):
            with tempfile.TemporaryDirectory(prefix="podcap-bench-dask-") as tmp:
                results = one_round(paths, Path(tmp), cluster, not args.no_tshark)
            line = ", ".join(f"{name} {s:.1f} s" for name, (s, _, _) in results.items())
            print(f"  round {round_}: {line}")
            for name, result in results.items():
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
            time.sleep(1)
    finally:
        cluster.stop()
    one = best["--dask, local cluster of 1 worker(s)"][0]
    for name, (seconds, peak, written) in best.items():
        print(f"{name}: {seconds:.1f} s ({one / seconds:.2f}x the 1-worker run), "
              f"peak {peak:.0f} MiB, {written:.1f} MB written")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
