"""``analyze`` on a Dask cluster: each capture analyzed on a worker, the results joined here.

A worker reads its capture into buckets of conversations and analyzes them one by one, as
``podcap.analysis.buckets`` does in this process (``BucketedRun.file_results``); what comes
back is report rows, not packets: no capture byte passes through this process. Here the
files' buckets are joined exactly as the bucketed run joins them (flow ids renumbered, rows
put back in the whole-capture order, the summary's counts summed), so the reports are the
in-process ones row for row. So run the reports that run per bucket (their record's
``per_bucket``); those whose rows never span captures (``per_capture``: dns) run on each
capture held whole, their rows joined in file order; those that need every capture at once
(path, packets, snat...) run as one more task, on one worker (``podcap.analysis.together``).

The cluster is a local one started for the run (worker processes on this machine), or the
one whose scheduler ``DaskOptions.scheduler`` names (``dask scheduler`` and ``dask worker``,
dask-kubernetes, ...): its workers must see the files at the paths given (a shared file
system), or fetch them by URL (``podcap.analysis.fetched``). Dask is imported only here, only
for such a run: ``pip install 'podcap[dask]'``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podcap.analysis.buckets import BucketResult, bucketed_run, joined_outcome
from podcap.analysis.dask_cluster import (
    DaskOptions,
    cluster_client,
    gathered,
    import_dask,
    quiet_dask,
    reason,
)
from podcap.analysis.steps import (
    Outcome,
    Request,
    analysis_of,
    build_reports,
    read_file,
    read_sidecar,
)
from podcap.errors import ClusterError, DecodeError, UsageError
from podcap.reports.registry import REPORTS


@dataclass
class FilePart:
    """What a worker hands back for one capture: its Capture without packets, its buckets'
    results and its sidecar; or the error that kept it from being read."""

    whole: Any = None
    results: list[BucketResult] = field(default_factory=list)
    sidecar: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: DecodeError | None = None
    tables: dict = field(default_factory=dict)  # the per-capture reports (``Report.per_capture``)


def check_distributable(paths: list[str], request: Request) -> None:
    """UsageError when the run cannot go to Dask: the tshark engine or a filter only tshark
    understands, standard input."""
    if request.engine != "native":
        raise UsageError("--dask: the tshark engine runs in this process only")
    if request.display_filter is not None and not request.display_filter.native:
        raise UsageError(
            f"--dask: the filter {request.filter_text!r} needs tshark, which runs in this "
            "process only"
        )
    if "/dev/stdin" in paths:
        raise UsageError("--dask: workers cannot read standard input", "write it to a file")


def _distributable(name: str) -> bool:
    return bool(REPORTS[name].per_bucket) or REPORTS[name].per_capture


def together(request: Request) -> list[str]:
    """The reports asked for that need every capture's packets at once: one task, one
    worker (``podcap.analysis.together``)."""
    return [name for name in request.reports if not _distributable(name)]


def per_capture(request: Request) -> list[str]:
    """The reports asked for that run on each capture held whole."""
    return [name for name in request.reports if not REPORTS[name].per_bucket and
            REPORTS[name].per_capture]  # fmt: skip


def analyze_on_dask(
    paths: list[str], request: Request, progress, options: DaskOptions, in_memory_limit: int
) -> Outcome:
    """The reports of ``paths``, each file analyzed on a worker of the cluster (a large one
    in byte ranges on several, when the files are fewer than the workers); those that need
    every capture at once by one worker, meanwhile."""
    from podcap.analysis.together import analyze_together, joined

    check_distributable(paths, request)
    at_once = together(request)
    per_file = dataclasses.replace(
        request, reports=[n for n in request.reports if n not in at_once]
    )
    distributed = import_dask()
    with quiet_dask(), cluster_client(distributed, options, progress) as client:
        try:
            task = None
            if at_once:  # first: the longest task starts while the others queue
                to_run = dataclasses.replace(request, reports=at_once, page=False)
                task = client.submit(analyze_together, paths, to_run, pure=False)
            parts = None
            if per_file.reports or request.page or not at_once:
                parts = _file_parts(distributed, client, paths, per_file, in_memory_limit,
                                    progress, options.range_bytes)  # fmt: skip
            whole = gathered(distributed, client, [task], [_EVERY], progress)[0] if task else None
        except (distributed.KilledWorker, distributed.comm.CommClosedError, OSError) as exc:
            raise ClusterError(f"Dask: the work was lost ({reason(exc)})") from None
    if parts is None:
        return _alone(whole)
    outcome = _joined(paths, parts, per_file, progress)
    return joined(outcome, whole, request.reports) if whole else outcome


_EVERY = "every capture at once"


def _alone(whole) -> Outcome:
    """The together task's reports as the run's Outcome (no per-capture task ran)."""
    if whole.error is not None:
        raise whole.error
    return Outcome(whole.tables, whole.matched, whole.errors, whole.warnings,
                   sidecars=whole.sidecars)  # fmt: skip


def _file_parts(
    distributed, client, paths, request, limit: int, progress, range_bytes: int
) -> list[FilePart]:
    """Each file's FilePart. A file cut in ranges whose cuts were not all proven (None) is
    analyzed again whole."""
    ranges = max(1, sum(client.nthreads().values()) // len(paths))

    def planned(future, path: str):  # a plan's result, under the no-worker watchdog too
        return gathered(distributed, client, [future], [path], lambda message: None)[0]

    cutting = (ranges, range_bytes, planned)
    futures = [
        _submitted(client, i, path, request, limit, cutting, progress)
        for i, path in enumerate(paths)
    ]
    again = {}
    try:
        parts = gathered(distributed, client, futures, paths, progress)
        again = {
            i: client.submit(analyze_file, i, paths[i], request, limit, pure=False)
            for i, part in enumerate(parts)
            if part is None
        }
        if again:
            redone = gathered(distributed, client, list(again.values()),
                              [paths[i] for i in again], progress)  # fmt: skip
            parts = [redone.pop(0) if i in again else part for i, part in enumerate(parts)]
        return parts
    finally:
        client.cancel(futures + list(again.values()))


def _submitted(client, index: int, path: str, request: Request, limit: int, cutting, progress):
    """The future of ``path``'s FilePart: one task, or (``cutting``: how many ranges, their
    least size, and how a plan's future is waited on; ranges more than 1, and a plain pcap of
    at least two ranges' bytes) its ranges decoded on several workers and its buckets put
    together from them."""
    from podcap.analysis.fetched import is_url

    if is_url(path):  # fetched by the worker, whole
        return client.submit(analyze_url, index, path, request, limit, pure=False)
    ranges, range_bytes, planned = cutting
    if ranges > 1 and not per_capture(request):  # those need the capture whole
        plan = planned(
            client.submit(plan_ranges, path, ranges, range_bytes, limit, pure=False), path
        )
        if plan is not None:
            progress(f"{path}: cut in {len(plan[0]) - 1} byte ranges, one a worker")
            return _submitted_in_ranges(client, index, path, request, *plan)
    return client.submit(analyze_file, index, path, request, limit, pure=False)


def _submitted_in_ranges(client, index, path, request, cuts: list[int], buckets: int):
    from podcap.decode.ranges import bucket_share, decode_range

    options = (tuple(request.needles), request.needs_http, request.needs_http_lengths)
    decoded = [
        client.submit(decode_range, path, start, stop, buckets, *options, pure=False)
        for start, stop in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    outcomes = []
    for bucket in range(buckets):
        shares = [client.submit(bucket_share, part, bucket, pure=False) for part in decoded]
        outcomes.append(
            client.submit(analyze_bucket, index, path, request, bucket, shares, pure=False)
        )
    return client.submit(assemble, path, outcomes, pure=False)


def plan_ranges(path: str, ranges: int, range_bytes: int, in_memory_limit: int):
    """On a worker: where to cut ``path`` and into how many buckets (at least one a range),
    or None to read it whole."""
    from podcap.decode.ranges import range_cuts

    try:
        cuts = range_cuts(path, ranges, range_bytes)
    except DecodeError:
        return None  # analyze_file says it
    return (cuts, max(ranges, buckets_for(path, in_memory_limit))) if cuts else None


def analyze_bucket(index: int, path: str, request: Request, bucket: int, shares):
    """On a worker: one bucket put together from the ranges' shares and analyzed: (whether
    every cut was proven, the file's Capture without packets (bucket 0's only), the
    BucketResult or None for an empty bucket)."""
    from podcap.decode.ranges import bucket_from_ranges, whole_capture

    if not all(share.exact for share in shares):
        return False, None, None
    capture = bucket_from_ranges(path, shares, tuple(request.needles))
    empty_file = sum(share.packets for share in shares) == 0
    result = None
    if len(capture.packets) or (empty_file and bucket == 0):  # as the spilled read does
        result = bucketed_run(request, lambda message: None).bucket_result(index, path, capture)
    return True, whole_capture(path, shares) if bucket == 0 else None, result  # one is enough


def assemble(path: str, outcomes) -> FilePart | None:
    """On a worker: the file's part from its buckets' outcomes; None when a cut was wrong."""
    if not all(proven for proven, _, _ in outcomes):
        return None
    warnings: list[str] = []
    results = [result for _, _, result in outcomes if result is not None]
    return FilePart(outcomes[0][1], results, read_sidecar(path, warnings), warnings)


def _joined(paths: list[str], parts: list[FilePart], request: Request, progress) -> Outcome:
    whole_reports = per_capture(request)
    in_buckets = [name for name in request.reports if name not in whole_reports]
    run = bucketed_run(dataclasses.replace(request, reports=in_buckets), progress)
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
    outcome = joined_outcome(run, captures, sidecars, errors, warnings)
    read = [part for part in parts if part.error is None]
    tables = outcome.tables | {
        name: capture_rows(name, [part.tables[name] for part in read], list(captures))
        for name in whole_reports
    }
    return dataclasses.replace(outcome, tables={name: tables[name] for name in request.reports})


def capture_rows(name: str, tables: list, files: list[str]):
    """A per-capture report's rows from each capture (in file order), as one analysis of
    every capture gives them: the ``file`` column over every file, ``row_order`` (stable)."""
    import pandas as pd

    from podcap.decode.table import concat_tables

    joined = concat_tables([table for table in tables if len(table)] or tables[:1])
    if "file" in joined and isinstance(joined["file"].dtype, pd.CategoricalDtype):
        joined["file"] = pd.Categorical(joined["file"].astype(str), categories=files)
    order = [column for column in REPORTS[name].row_order if column in joined]
    return joined.sort_values(order, kind="stable", ignore_index=True) if order else joined


def analyze_file(index: int, path: str, request: Request, in_memory_limit: int) -> FilePart:
    """On a worker: ``path`` analyzed as one process would: held whole when it is estimated
    at no more than ``in_memory_limit`` packets (one bucket), else read into buckets small
    enough. A worker decodes in one process: the workers are the parallelism, and forking a
    decode helper from a worker's thread could hang on a lock another of its threads held at
    the fork."""
    from podcap.decode import split
    from podcap.decode.spill import estimate_packets

    os.environ[split.ENV_SWITCH] = "0"
    whole_reports = per_capture(request)
    in_buckets = [name for name in request.reports if name not in whole_reports]
    run = bucketed_run(dataclasses.replace(request, reports=in_buckets), lambda message: None)
    warnings: list[str] = []
    sidecar = read_sidecar(path, warnings)
    try:
        if whole_reports or estimate_packets(path) <= in_memory_limit:
            capture = read_file(path, request, lambda message: None)
            analysis = analysis_of({path: capture}, request, {path: sidecar}, lambda m: None)
            results = [run.bucket_result(index, path, capture, analysis)]
            tables = build_reports(whole_reports, analysis, lambda message: None)
            return FilePart(_without_packets(capture), results, sidecar, warnings, tables=tables)
        whole, results = run.file_results(index, path, buckets_for(path, in_memory_limit))
    except DecodeError as exc:
        return FilePart(error=exc)
    return FilePart(whole, results, sidecar, warnings)


def analyze_url(index: int, url: str, request, in_memory_limit: int):
    """On a worker: the FilePart of the capture at ``url``, fetched to a scratch copy."""
    from podcap.analysis.fetched import fetch, fetch_sidecar, renamed

    with tempfile.TemporaryDirectory(prefix="podcap-url-") as scratch:
        local = str(Path(scratch) / (posixpath.basename(url.rstrip("/")) or "capture"))
        try:
            fetch(url, local)
        except DecodeError as exc:
            return FilePart(error=exc)
        fetch_sidecar(url, local)
        return renamed(analyze_file(index, local, request, in_memory_limit), local, url)


def _without_packets(capture):
    """What the joined reports read of a file (its link types, warnings, format), without
    the packets that would travel back with it."""
    return dataclasses.replace(
        capture,
        packets=capture.packets.iloc[:0],
        contains={needle: found[:0] for needle, found in capture.contains.items()},
        if_index=None if capture.if_index is None else capture.if_index[:0],
        pkt_type=None if capture.pkt_type is None else capture.pkt_type[:0],
        payload_head=None,
    )


def buckets_for(path: str, in_memory_limit: int) -> int:
    """How many buckets ``path`` is read into: a third of the limit each (a bucket's flow
    step holds twice its table), at least one."""
    from podcap.analysis.buckets import MAX_BUCKETS
    from podcap.decode.spill import estimate_packets

    per_bucket = max(1, in_memory_limit // 3)
    return min(MAX_BUCKETS, max(1, math.ceil(estimate_packets(path) / per_bucket)))
