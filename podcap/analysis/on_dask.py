"""``analyze`` on a Dask cluster: each capture analyzed on a worker, the results joined here.

A worker reads its capture into buckets of conversations and analyzes them one by one, as
``podcap.analysis.buckets`` does in this process (``BucketedRun.file_results``); what comes
back is report rows, not packets: no capture byte passes through this process. Here the
files' buckets are joined exactly as the bucketed run joins them (flow ids renumbered, rows
put back in the whole-capture order, the summary's counts summed), so the reports are the
in-process ones row for row. Only the reports that run per bucket (their record's
``per_bucket``) can; the others need every packet in one place.

The cluster is a local one started for the run (worker processes on this machine), or the
one whose scheduler ``DaskOptions.scheduler`` names (``dask scheduler`` and ``dask worker``,
dask-kubernetes, ...): its workers must see the files at the paths given (a shared file
system). Dask is imported only here, only for such a run: ``pip install 'podcap[dask]'``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from podcap.analysis.buckets import BucketResult, bucketed_run, joined_outcome
from podcap.analysis.steps import Outcome, Request, read_sidecar
from podcap.errors import ClusterError, DecodeError, UsageError
from podcap.reports.registry import REPORTS

INSTALL = "pip install 'podcap[dask]'"
CONNECT_SECONDS = 10  # an external scheduler that has not answered by then is not there
# A cluster without a worker this long is not getting one back (Dask itself would wait on).
NO_WORKERS_SECONDS = 30.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class DaskOptions:
    """Where the work goes: ``scheduler`` (``tcp://HOST:PORT``) of a running cluster, or
    None for a local cluster of ``workers`` processes (default: one per CPU)."""

    scheduler: str | None = None
    workers: int | None = None


@dataclass
class FilePart:
    """What a worker hands back for one capture: its Capture without packets, its buckets'
    results and its sidecar; or the error that kept it from being read."""

    whole: Any = None
    results: list[BucketResult] = field(default_factory=list)
    sidecar: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: DecodeError | None = None


def check_distributable(paths: list[str], request: Request) -> None:
    """UsageError when the run cannot go to Dask: a report that needs every packet at once,
    the tshark engine or a filter only tshark understands, standard input."""
    whole = [name for name in request.reports if not REPORTS[name].per_bucket]
    if whole:
        shared = ", ".join(name for name, r in REPORTS.items() if r.per_bucket)
        raise UsageError(
            f"--dask: the {', '.join(whole)} report needs every packet in one process",
            f"run it without --dask; on Dask: {shared}",
        )
    if request.engine != "native":
        raise UsageError("--dask: the tshark engine runs in this process only")
    if request.display_filter is not None and not request.display_filter.native:
        raise UsageError(
            f"--dask: the filter {request.filter_text!r} needs tshark, which runs in this "
            "process only"
        )
    if "/dev/stdin" in paths:
        raise UsageError("--dask: workers cannot read standard input", "write it to a file")


def analyze_on_dask(
    paths: list[str], request: Request, progress, options: DaskOptions, in_memory_limit: int
) -> Outcome:
    """The reports of ``paths``, each file analyzed on a worker of the cluster."""
    check_distributable(paths, request)
    distributed = _dask()
    with _quiet_dask(), _client(distributed, options, progress) as client:
        futures = [
            client.submit(analyze_file, index, path, request, in_memory_limit, pure=False)
            for index, path in enumerate(paths)
        ]
        try:
            _follow(distributed, client, futures, paths, progress)
            parts = client.gather(futures)
        except (distributed.KilledWorker, distributed.comm.CommClosedError, OSError) as exc:
            raise ClusterError(f"Dask: the work was lost ({_reason(exc)})") from None
        finally:
            client.cancel(futures)
    return _joined(paths, parts, request, progress)


def _joined(paths: list[str], parts: list[FilePart], request: Request, progress) -> Outcome:
    run = bucketed_run(request, progress)
    captures, sidecars, errors, warnings = {}, {}, [], []
    for path, part in zip(paths, parts, strict=True):
        if part.error is not None:
            errors.append(part.error)
            continue
        run.add_results(path, part.whole, part.results)
        captures[path], sidecars[path] = part.whole, part.sidecar
        warnings += [f"{path}: {w}" if path not in w else w for w in part.whole.warnings]
        warnings += part.warnings
    if not captures:  # as read_each says it
        if len(errors) == 1:
            raise errors[0]
        raise DecodeError(f"none of the {len(paths)} files could be read: {errors[0]}")
    return joined_outcome(run, captures, sidecars, errors, warnings)


def analyze_file(index: int, path: str, request: Request, in_memory_limit: int) -> FilePart:
    """On a worker: ``path`` read into buckets small enough for ``in_memory_limit`` packets
    at a time, each analyzed. A worker decodes in one process: the workers are the
    parallelism, and forking a decode helper from a worker's thread could hang on a lock
    another of its threads held at the fork."""
    from podcap.decode import split

    os.environ[split.ENV_SWITCH] = "0"
    try:
        buckets = buckets_for(path, in_memory_limit)
        whole, results = bucketed_run(request, lambda message: None).file_results(
            index, path, buckets
        )
    except DecodeError as exc:
        return FilePart(error=exc)
    warnings: list[str] = []
    return FilePart(whole, results, read_sidecar(path, warnings), warnings)


def buckets_for(path: str, in_memory_limit: int) -> int:
    """How many buckets ``path`` is read into: a third of the limit each (a bucket's flow
    step holds twice its table), at least one."""
    from podcap.analysis.buckets import MAX_BUCKETS
    from podcap.decode.spill import estimate_packets

    per_bucket = max(1, in_memory_limit // 3)
    return min(MAX_BUCKETS, max(1, math.ceil(estimate_packets(path) / per_bucket)))


def _dask():
    try:
        import distributed
    except ImportError:
        raise UsageError("--dask needs Dask, which is not installed", INSTALL) from None
    return distributed


@contextlib.contextmanager
def _client(distributed, options: DaskOptions, progress):
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
                f"--scheduler {options.scheduler}: no Dask scheduler answered ({_reason(exc)})",
                "start one with 'dask scheduler', or leave --scheduler out for a local cluster",
            ) from None
        return client, None
    workers = options.workers or len(os.sched_getaffinity(0))
    progress(f"starting a local Dask cluster of {workers} workers")
    # Its workers' log lines too would land on this terminal: podcap says what matters.
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


def _say_dashboard(client, progress) -> None:
    if (client.scheduler_info().get("services") or {}).get("dashboard"):
        progress(f"Dask dashboard: {client.dashboard_link}")


def _follow(distributed, client, futures, paths: list[str], progress) -> None:
    """Progress as the files' analyses end, in the order they end, until all have (a task
    whose worker died is run again elsewhere by Dask); ClusterError when the cluster has had
    no worker for NO_WORKERS_SECONDS."""
    path_of = {future.key: path for future, path in zip(futures, paths, strict=True)}
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


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_dask():
    """Dask's own log lines (a worker's start, a connection closed at the end) kept off the
    terminal but for errors: podcap reports what matters itself."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
