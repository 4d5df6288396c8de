"""The Dask side of ``analyze --dask``: a client of a cluster (a local one started for the run,
or a running one), progress while the work runs, and the errors a cluster can give in words.

``podcap.analysis.on_dask`` says what the work is; this module only reaches the workers.
Dask is imported here alone, and only for such a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

from podcap.errors import ClusterError, UsageError

INSTALL = "pip install 'podcap[dask]'"
CONNECT_SECONDS = 10  # an external scheduler that has not answered by then is not there
# A cluster without a worker this long is not getting one back (Dask itself would wait on).
NO_WORKERS_SECONDS = 30.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DaskOptions:
    """Where the work goes: ``scheduler`` (``tcp://HOST:PORT``) of a running cluster, or
    None for a local cluster of ``workers`` processes (default: one per CPU).
    ``range_bytes``: with fewer files than workers, a plain pcap of at least twice this is
    cut into byte ranges decoded on several workers (``podcap.decode.ranges``)."""

    scheduler: str | None = None
    workers: int | None = None
    range_bytes: int = 64 * 1024 * 1024


def import_dask():
    try:
        import distributed
    except ImportError:
        raise UsageError("--dask needs Dask, which is not installed", INSTALL) from None
    return distributed


@contextlib.contextmanager
def cluster_client(distributed, options: DaskOptions, progress):
    """A client of the scheduler named, or of a local cluster started (and stopped) here.
    Starting and stopping run to their end under a first signal (``signals.deferred``): a
    cluster cut off half-started would leave its worker processes behind."""
    from podcap import signals

    with signals.deferred():
        client, cluster = _connect(distributed, options, progress)
    try:
        _say_dashboard(client, progress)
        yield client
    finally:
        with signals.deferred():
            client.close()
            if cluster is not None:
                cluster.close()


def _connect(distributed, options: DaskOptions, progress):
    if options.scheduler:
        progress(f"connecting to the Dask scheduler at {options.scheduler}")
        try:
            client = distributed.Client(options.scheduler, timeout=f"{CONNECT_SECONDS}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(
                f"--scheduler {options.scheduler}: no Dask scheduler answered ({reason(exc)})",
                "start one with 'dask scheduler', or leave --scheduler out for a local cluster",
            ) from None
        return client, None
    workers = options.workers or len(os.sched_getaffinity(0))
    progress(f"starting a local Dask cluster of {workers} workers")
    # Its workers' log lines too would land on this terminal: podcap says what matters.
    with _without_malloc_trim():
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        )
    try:
        return distributed.Client(cluster), cluster
    except BaseException:
        cluster.close()
        raise


@contextlib.contextmanager
def _without_malloc_trim():
    """Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, so that glibc hands freed
    memory back at once: podcap's numpy passes then fault every page of their large arrays
    in again (measured: three 1M-packet captures on one local worker, 7.6-8.0 s with it,
    4.5-5.5 s without). The local cluster's workers keep glibc's own setting."""
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {k: v for k, v in dask.config.get(key).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({key: environ}):
        yield


def _say_dashboard(client, progress) -> None:
    if (client.scheduler_info().get("services") or {}).get("dashboard"):
        progress(f"Dask dashboard: {client.dashboard_link}")


def gathered(distributed, client, futures, paths: list[str], progress) -> list:
    """The futures' results, each fetched as soon as its task ends (the transfer of one
    file's report rows overlaps the others' work), with a progress line each; a task whose
    worker died is run again elsewhere by Dask. ClusterError when the cluster has had no
    worker for NO_WORKERS_SECONDS."""
    path_of = {future.key: path for future, path in zip(futures, paths, strict=True)}
    results = {}
    pending, finished = set(futures), 0
    alone_since = None
    while pending:
        try:
            done, pending = distributed.wait(
                pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED"
            )
        except TimeoutError:
            done = set()
        for future in done:
            results[future.key] = future.result()
            client.cancel([future])  # fetched: the worker may let go of it
            finished += 1
            progress(
                f"analyzed {finished} of {len(futures)} captures on Dask ({path_of[future.key]})"
            )
        if done or client.nthreads():
            alone_since = None
        elif alone_since is None:
            alone_since = time.monotonic()
        elif time.monotonic() - alone_since > NO_WORKERS_SECONDS:
            raise ClusterError(
                f"Dask: the cluster has had no worker for {NO_WORKERS_SECONDS:.0f} s",
                f"{len(pending)} of {len(futures)} captures not analyzed; start workers",
            )
    return [results[future.key] for future in futures]


def reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def quiet_dask():
    """Dask's own log lines (a worker's start, a connection closed at the end) kept off the
    terminal but for errors: podcap reports what matters itself."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
