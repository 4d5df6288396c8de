"""``podcap analyze --dask``: the same reports as the in-process run, row for row, from a
real Dask cluster: a ``dask scheduler`` and ``dask worker`` processes started here on
127.0.0.1 (stopped at the end, no port left open), and the local cluster ``--dask`` starts
for a run. A worker killed in the middle of a run costs time, not results."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import distributed
import pandas as pd
import pytest

from podcap.analysis import dask_cluster, on_dask
from podcap.analysis.run import analyze
from podcap.errors import ClusterError
from testbed.helpers import descendants, free_port, podcap, start_podcap, wait_for

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p) for p in (REPO / "sample_pcaps").glob("*.pcap*"))
REPORTS = ["summary", "flows", "tcp", "http"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Cluster:
    """A scheduler and its workers, each a process of its own (no nanny: a worker killed
    stays dead)."""

    def __init__(self, workers: int, logs: Path):
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.logs = logs
        self.scheduler = self._start("scheduler", "--host", "127.0.0.1", "--port", self.port)
        self.workers = [
            self._start("worker", self.address, "--host", "127.0.0.1", "--nthreads", 1,
                        "--no-nanny", name=f"worker-{n}")
            for n in range(workers)
        ]  # fmt: skip
        with distributed.Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    def _start(self, kind: str, *args, name: str | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name or kind}.log", "wb")  # noqa: SIM115 - closed by Popen's end
        command = [sys.executable, "-m", "dask", kind, *map(str, args), "--no-dashboard"]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO)  # fmt: skip

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        assert not _listening(self.port), "the scheduler's port is still open"


@contextmanager
def running_cluster(workers: int, logs: Path):
    cluster = Cluster(workers, logs)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(2, tmp_path_factory.mktemp("dask")) as running:
        yield running


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[str]:
    """Four captures of the benchmark's traffic mix, each with its own seed."""
    folder = tmp_path_factory.mktemp("generated")
    paths = []
    for seed in range(1, 5):
        path = folder / f"mix-{seed}.pcap"
        script = [sys.executable, "-m", "bench.make_big_pcap", str(path), "--packets", "30000"]
        subprocess.run([*script, "--seed", str(seed)], check=True, cwd=REPO, timeout=120)
        paths.append(str(path))
    return paths


def assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for name in want:
        assert len(want[name]), f"{name}: the reference has no rows; the test would prove little"
        pd.testing.assert_frame_equal(got[name], want[name], obj=name)


def test_the_samples_on_a_running_cluster_match_the_in_process_run(cluster):
    options = on_dask.DaskOptions(scheduler=cluster.address)
    assert_same(analyze(SAMPLES, reports=REPORTS, dask=options), analyze(SAMPLES, reports=REPORTS))


def test_captures_cut_in_buckets_on_the_workers_match(cluster, generated):
    # 10,000 packets at a time: each 30,000-packet capture is read in several buckets.
    options = on_dask.DaskOptions(scheduler=cluster.address)
    got = analyze(generated, reports=REPORTS, dask=options, in_memory_limit=10_000)
    assert on_dask.buckets_for(generated[0], 10_000) > 1
    assert_same(got, analyze(generated, reports=REPORTS))


def test_a_filter_runs_on_the_workers(cluster, generated):
    options = on_dask.DaskOptions(scheduler=cluster.address)
    text = 'tcp contains "lbtest"'
    got = analyze(generated, filter=text, reports=["summary", "flows"], dask=options)
    want = analyze(generated, filter=text, reports=["summary", "flows"])
    assert_same(got, want)
    assert got.matched == want.matched and 0 < got.matched < want["summary"]["packets"].sum()


def test_the_command_on_a_local_cluster_writes_what_the_in_process_run_writes(generated, tmp_path):
    args = [*generated, "-r", "flows,tcp", "-F", "csv"]
    local = podcap("analyze", *args, "-o", tmp_path / "dask", "--dask-workers", "2", timeout=300)
    alone = podcap("analyze", *args, "-o", tmp_path / "alone")
    assert local.returncode == 0 and alone.returncode == 0, local.stderr + alone.stderr
    for name in ("flows", "tcp"):
        assert (tmp_path / "dask" / f"{name}.csv").read_bytes() == (
            tmp_path / "alone" / f"{name}.csv"
        ).read_bytes()
    assert "Traceback" not in local.stderr


def test_an_unreadable_file_is_named_and_the_others_analyzed(cluster, tmp_path):
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(b"not a capture at all")
    done = podcap("analyze", SAMPLES[0], broken, "--scheduler", cluster.address, "-r", "flows",
                  "-F", "csv")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"podcap: error: {broken}: "), done.stderr
    assert "client_ip" in done.stdout and SAMPLES[0] in done.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (["-r", "flows", "-Y", "frame.len > 60 && smb2"], "needs tshark"),
        (["--dask-workers", "0"], "--dask-workers 0: must be 1 or more"),
        (["--scheduler", "tcp://127.0.0.1:9", "--dask-workers", "2"], "sizes the local cluster"),
    ],
)
def test_what_cannot_run_on_dask_gets_one_line(args, says):
    done = podcap("analyze", SAMPLES[0], "--dask", *args)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_a_scheduler_that_is_not_there_gets_one_line():
    port = free_port()
    done = podcap("analyze", SAMPLES[0], "--scheduler", f"tcp://127.0.0.1:{port}", timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith(f"podcap: error: --scheduler tcp://127.0.0.1:{port}: no Dask")
    assert len(done.stderr.strip().splitlines()) == 1


def _busy_worker(address: str) -> int | None:
    """The process id of a worker that is analyzing a capture right now."""
    with distributed.Client(address, timeout="10s") as client:
        busy = [worker for worker, tasks in client.processing().items() if tasks]
        return client.run(os.getpid, workers=busy[:1])[busy[0]] if busy else None


def test_a_worker_killed_in_the_middle_costs_time_not_results(generated, tmp_path):
    args = [*generated, "-r", ",".join(REPORTS), "-F", "parquet", "--in-memory-limit", "5000"]
    assert podcap("analyze", *args, "-o", tmp_path / "alone").returncode == 0
    with running_cluster(2, tmp_path) as cluster:
        run = start_podcap("analyze", *args, "-o", tmp_path / "out", "--scheduler", cluster.address)
        try:
            busy = wait_for(lambda: _busy_worker(cluster.address), timeout=60, interval=0.02)
            assert busy, "no worker was seen analyzing a capture"
            [victim] = [worker for worker in cluster.workers if worker.pid == busy]
            os.killpg(victim.pid, signal.SIGKILL)
            _, stderr = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, stderr.decode()
        assert victim.poll() is not None
    for name in REPORTS:
        got = pd.read_parquet(tmp_path / "out" / f"{name}.parquet")
        want = pd.read_parquet(tmp_path / "alone" / f"{name}.parquet")
        assert len(want), f"{name}: the reference has no rows; the test would prove little"
        pd.testing.assert_frame_equal(got, want, obj=name)


def test_a_cluster_left_without_workers_fails_with_one_error(generated, tmp_path, monkeypatch):
    monkeypatch.setattr(dask_cluster, "NO_WORKERS_SECONDS", 2.0)
    with running_cluster(1, tmp_path) as cluster:
        os.killpg(cluster.workers[0].pid, signal.SIGKILL)
        cluster.workers[0].wait()
        started = time.monotonic()
        with pytest.raises(ClusterError, match="no worker for 2 s"):
            analyze(generated, reports=["flows"], dask=on_dask.DaskOptions(cluster.address))
        assert time.monotonic() - started < 30


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_and_its_local_cluster(generated, signum, tmp_path):
    """Started as a script's ``&`` starts it (SIGINT ignored): podcap's own handlers stop
    the run; the local cluster's processes end with it."""
    run = start_podcap("analyze", *generated, "--dask-workers", "2", "-r", "flows", "-F", "csv",
                       "-o", tmp_path / "out", "--in-memory-limit", "2000",
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    try:
        workers = wait_for(lambda: len(descendants(run.pid)) >= 2 and descendants(run.pid), 60)
        assert workers, "the local cluster's workers never started"
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 128 + signum
    reason = "interrupted" if signum == signal.SIGINT else "terminated"
    assert stderr.decode().strip().splitlines() == [f"podcap: error: {reason}"]
    assert wait_for(lambda: not [pid for pid in workers if Path(f"/proc/{pid}").exists()], 20)


def test_without_dask_installed_the_flag_names_the_install(plain_podcap):
    """`pip install .` alone has no Dask: --dask says what to install, nothing else breaks."""
    done = podcap_in(plain_podcap, "analyze", SAMPLES[0], "--dask", "-r", "flows")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "podcap: error: --dask needs Dask, which is not installed (pip install 'podcap[dask]')"
    ]
    assert podcap_in(plain_podcap, "analyze", SAMPLES[0], "-r", "flows").returncode == 0


def podcap_in(command: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(command), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip


def test_one_large_capture_is_cut_across_the_workers(cluster, generated):
    """One file, two workers: its byte ranges decoded apart, its buckets put together from
    both; the reports are the in-process ones."""
    said: list[str] = []
    options = on_dask.DaskOptions(scheduler=cluster.address, range_bytes=1 << 20)
    got = analyze(generated[:1], reports=REPORTS, dask=options, on_progress=said.append)
    assert f"{generated[0]}: cut in 2 byte ranges, one a worker" in said
    assert_same(got, analyze(generated[:1], reports=REPORTS))


def test_without_the_flag_nothing_of_dask_is_imported():
    probe = (
        "import sys; from podcap.analysis.run import analyze; "
        f"analyze([{SAMPLES[0]!r}], reports=['flows', 'summary']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=REPO, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _as_paths(result, urls: dict[str, str], like) -> dict:
    """The tables of a run over URLs with each URL put back to the path it stands for, as
    the run ``like`` (over the paths) types its ``file`` column."""
    tables = {}
    for name, table in result.items():
        if "file" in table:
            table = table.assign(file=table["file"].astype(str).replace(urls))
            table["file"] = table["file"].astype(like[name]["file"].dtype)
        tables[name] = table
    return tables


def test_file_urls_are_fetched_by_the_workers_with_their_sidecars(cluster):
    urls = {f"file://{path}": path for path in SAMPLES}
    options = on_dask.DaskOptions(scheduler=cluster.address)
    got = analyze(list(urls), reports=REPORTS, dask=options)
    want = analyze(SAMPLES, reports=REPORTS)
    assert set(got["flows"]["file"].astype(str)) == {
        u for u, p in urls.items() if p in set(want["flows"]["file"].astype(str))
    }
    assert_same(_as_paths(got, urls, want), want)
    assert {urls[u]: facts for u, facts in got.sidecars.items()} == want.sidecars
    assert any(want.sidecars.values()), "no sample has a sidecar: the test would prove little"


def test_a_directory_url_in_memory_on_an_in_process_cluster():
    """fsspec's memory file system is this process's: an in-process cluster (threads)
    sees it; the URL's directory is listed here, its files fetched by the workers."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in SAMPLES[:3]:
        memory.pipe(f"/podcap-test/{Path(path).name}", Path(path).read_bytes())
    memory.pipe("/podcap-test/notes.txt", b"not a capture")
    try:
        with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as lc:
            options = on_dask.DaskOptions(scheduler=lc.scheduler_address)
            got = analyze(["memory://podcap-test/"], reports=["flows"], dask=options)
    finally:
        memory.rm("/podcap-test", recursive=True)
    urls = {f"memory:///podcap-test/{Path(p).name}": p for p in SAMPLES[:3]}
    want = analyze(SAMPLES[:3], reports=["flows"])
    assert_same(_as_paths(got, urls, want), want)


def test_a_url_that_cannot_be_fetched_is_named_in_one_line(cluster):
    missing = f"file://{REPO}/sample_pcaps/no-such.pcap"
    done = podcap("analyze", missing, "nosuchscheme://host/x.pcap", "--scheduler",
                  cluster.address, "-r", "flows")  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"podcap: error: none of the 2 files could be read: {missing}: no such file"]


def test_a_url_without_dask_is_refused_in_one_line():
    done = podcap("analyze", f"file://{SAMPLES[0]}", "-r", "flows")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"podcap: error: file://{SAMPLES[0]}: a URL is read by the workers of --dask "
        "(add --dask, or copy the file here)"
    ]


def test_the_dns_reports_run_on_each_capture_held_whole(cluster, tmp_path):
    """dns and dns_servers (a lookup never spans captures) run on each capture held whole,
    whatever --in-memory-limit says; their rows joined are the in-process ones, also where
    two captures hold lookups at the same instants (both generated from one start time)."""
    from bench.dns import generate

    files = []
    for seed in (1, 2):
        generate(tmp_path / f"dns-{seed}.pcap", 8_000, seed)
        files.append(str(tmp_path / f"dns-{seed}.pcap"))
    files += SAMPLES
    names = ["dns", "dns_servers", "flows"]
    options = on_dask.DaskOptions(scheduler=cluster.address)
    got = analyze(files, reports=names, dask=options, in_memory_limit=5_000)
    want = analyze(files, reports=names)
    # Categorical columns over the categories each run met (the in-process run: every
    # address of every packet): the same values, compared as text.
    assert_same(*({name: _as_text(t) for name, t in run.items()} for run in (got, want)))
    assert want["dns"]["ts"].duplicated().any(), "no two lookups at one instant: proves less"
    assert set(want["dns"]["file"]) >= set(files[:2])


def _as_text(table: pd.DataFrame) -> pd.DataFrame:
    categorical = [c for c in table if isinstance(table[c].dtype, pd.CategoricalDtype)]
    return table.astype({c: str for c in categorical})


def test_the_reports_of_every_capture_at_once_run_on_one_worker(cluster):
    """path, packets and snat need the Pod's, node's and peer's captures together: one task
    on one worker, beside the per-capture tasks of flows; by URL too."""
    files = [
        str(REPO / "sample_pcaps" / f"10-snat-{point}.pcap") for point in ("pod", "node", "peer")
    ]
    names = ["flows", "path", "packets", "snat"]
    options = on_dask.DaskOptions(scheduler=cluster.address)
    want = analyze(files, reports=names)
    assert_same(analyze(files, reports=names, dask=options), want)
    urls = {f"file://{path}": path for path in files}
    by_url = analyze(list(urls), reports=["path"], dask=options)
    assert_same(_as_paths(by_url, urls, want), {"path": want["path"]})
