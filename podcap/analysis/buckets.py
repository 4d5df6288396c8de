"""``analyze`` for captures too large to hold in memory: one bucket of conversations at a time.

A packet costs about 500 bytes of memory while the flows are followed (the table, then the
flow step's temporaries), so ``podcap.analysis.run`` holds a capture whole only up to
``IN_MEMORY_PACKETS`` (estimated from the file size). Above that, each file is read into
buckets on disk (``podcap.decode.spill``): a conversation's packets all land in one bucket,
so each bucket is analyzed alone, exactly as a whole capture is, and only one is in memory at
a time. The buckets' reports are then joined: flow ids renumbered in order of each flow's
first packet in its file (as the whole-capture analysis numbers them), rows put back in the
whole-capture order, and the summary's counts summed. The result equals the in-memory one
(tests/test_analysis_buckets.py compares them on every sample capture).

Memory then depends on the bucket size and on the report rows kept (a flow row is a few
hundred bytes), not on the number of packets. What each report allows is in its record
(``podcap.reports.registry``: ``per_bucket``); the ``packets``, ``snat`` and ``dnat`` reports,
and filters only tshark understands, need every packet at once: with those, a capture is
always held whole. For the html page the run also builds its sections that can run per bucket,
and the timeline's packets (``podcap.analysis.page``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from podcap.analysis.steps import (
    Outcome,
    Request,
    analysis_of,
    build_reports,
    read_each,
    read_sidecar,
)
from podcap.reports.registry import REPORTS, BucketJoin

if TYPE_CHECKING:
    import pandas as pd

IN_MEMORY_PACKETS = 1_500_000
MAX_BUCKETS = 256  # open files at once while spilling (a process may have 1024)
TIMELINE = "timeline"  # the page's timeline packets, joined as a report's rows are


@dataclass
class BucketPlan:
    """How captures too large to hold are analyzed: buckets per file, and processes at once."""

    buckets: dict[str, int]
    workers: int


def bucket_plan(
    paths: list[str], reports: list[str], display_filter, engine: str, limit: int | None
) -> BucketPlan | None:
    """The plan when the captures should be analyzed in buckets, else None."""
    from podcap.decode import split
    from podcap.decode.spill import estimate_packets

    if not limit or engine != "native" or not all(REPORTS[n].per_bucket for n in reports):
        return None
    if display_filter is not None and not display_filter.native:
        return None
    estimates = {path: estimate_packets(path) for path in paths}
    if sum(estimates.values()) <= limit:
        return None
    # A second CPU analyzes every other bucket when one is free (the helper of podcap.decode.split).
    workers = 2 if split.second_process() else 1
    # A third of the limit held at a time (the flow step of a bucket costs twice its table),
    # shared by the buckets being analyzed at once.
    per_bucket = max(1, limit // (3 * workers))
    buckets = {
        path: min(MAX_BUCKETS, max(1, math.ceil(count / per_bucket)))
        for path, count in estimates.items()
    }
    return BucketPlan(buckets, workers)


@dataclass
class Totals:
    """What a report joined by its per-file counts (the summary) reads, for captures
    analyzed in buckets."""

    captures: dict[str, Any]  # path -> the whole file's Capture, without its packets
    sidecars: dict[str, dict]
    file_counts: pd.DataFrame

    @property
    def files(self) -> list[str]:
        return list(self.captures)


@dataclass
class BucketResult:
    """One bucket's share of the reports (a helper process hands it back pickled)."""

    first_frames: np.ndarray  # per flow id: (file index << 40) | its first frame
    tables: dict[str, pd.DataFrame]  # the parts joined by rows (BucketJoin.rows, TIMELINE)
    counts: pd.DataFrame | None  # the per-file counts, when a report joins by them
    matched: int


def _start_helper(work):
    from podcap.decode import split

    try:
        return split.Helper(work)
    except OSError:  # no process or scratch file to be had: this process does it all
        return None


@dataclass
class BucketedRun:
    """The reports of captures analyzed bucket by bucket, joined at the end."""

    request: Request
    reports: list[str]  # those asked for, and the page's sections when it is asked for
    progress: Any
    tables: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    first_frames: list[np.ndarray] = field(default_factory=list)  # per bucket, by flow id
    counts: list[pd.DataFrame] = field(default_factory=list)
    captures: dict[str, Any] = field(default_factory=dict)
    matched: int = 0
    workers: int = 1  # processes analyzing buckets at once (1 or 2)
    # What tshark matched in each file, when the filter needs it: asked once for all its buckets.
    tshark_frames: dict = field(default_factory=dict)

    def joined_by(self, join: BucketJoin) -> list[str]:
        return [name for name in self.reports if REPORTS[name].per_bucket == join]

    def add_file(self, file_index: int, path: str, buckets: int):
        """Read ``path`` into buckets and analyze them; the whole file's Capture (no packets)."""
        whole, results = self.file_results(file_index, path, buckets)
        self.add_results(path, whole, results)
        return whole

    def file_results(self, file_index: int, path: str, buckets: int):
        """``path`` read into buckets, each analyzed: the whole file's Capture (no packets)
        and the buckets' results in bucket order (what ``add_results`` takes; a Dask worker
        runs this, ``podcap.analysis.on_dask``)."""
        from podcap.decode.spill import read_spilled

        self.progress(f"reading {path} into {buckets} buckets of conversations")
        needles = tuple(self.request.needles)
        http, lengths = self.request.needs_http, self.request.needs_http_lengths
        with read_spilled(path, buckets, needles, http, http_lengths=lengths) as spilled:
            chosen = list(range(buckets)) if spilled.packets else [0]
            return spilled.whole, self._bucket_results(file_index, path, spilled, chosen)

    def add_results(self, path: str, whole, results: list[BucketResult]) -> None:
        """One file's share, after the files before it."""
        self.captures[path] = whole
        for result in results:
            self._add(result)

    def _bucket_results(self, file_index: int, path: str, spilled, chosen: list[int]):
        """The chosen buckets' results, in bucket order. With two workers a forked helper
        (podcap.decode.split) analyzes every other bucket meanwhile; if it fails, this process
        analyzes its buckets too, so the results never depend on it."""

        def analyze(indexes: list[int], say=lambda i: None) -> dict[int, BucketResult]:
            results = {}
            for i in indexes:
                say(i)
                capture = spilled.capture(i)
                if len(capture.packets) or not spilled.packets:
                    results[i] = self.bucket_result(file_index, path, capture)
            return results

        def say(i: int) -> None:
            self.progress(f"analyzing bucket {i + 1} of {spilled.buckets} of {path}")

        theirs = chosen[1::2] if self.workers > 1 else []
        helper = _start_helper(lambda: analyze(theirs)) if theirs else None
        try:
            results = analyze(chosen[0::2] if helper else chosen, say)
            if helper is not None:
                handed_back = helper.result()
                results.update(analyze(theirs, say) if handed_back is None else handed_back)
        finally:
            if helper is not None:
                helper.cancel()
        return [results[i] for i in sorted(results)]

    def _add(self, result: BucketResult) -> None:
        self.matched += result.matched
        self.first_frames.append(result.first_frames)
        if result.counts is not None:
            self.counts.append(result.counts)
        for name, table in result.tables.items():
            table["_bucket"] = len(self.first_frames) - 1
            self.tables.setdefault(name, []).append(table)

    def bucket_result(self, file_index: int, path: str, capture, analysis=None) -> BucketResult:
        """One bucket of ``path`` (a Capture of its packets) analyzed: its share of the
        reports. ``analysis``: the capture's, when the caller made it already."""
        from podcap.flows import first_of_code

        if analysis is None:
            captures = {path: capture}
            analysis = analysis_of(captures, self.request, {}, lambda m: None, self.tshark_frames)
        tables = build_reports(self.joined_by(BucketJoin.rows), analysis, lambda m: None)
        if self.request.page:
            from podcap.analysis.page import timeline_packets

            tables[TIMELINE] = timeline_packets(analysis.all_packets, tables["flows"])
        packets = analysis.all_packets
        first = packets["frame"].to_numpy()[first_of_code(packets["flow_id"].to_numpy())]
        return BucketResult(
            # One sortable number per flow: its file, then its first frame in that file.
            first_frames=(np.int64(file_index) << 40) | first,
            tables=tables,
            counts=analysis.file_counts if self.joined_by(BucketJoin.file_counts) else None,
            matched=int(analysis.matched.sum()),
        )

    def results(self, sidecars: dict[str, dict]) -> dict[str, pd.DataFrame]:
        """Every report of ``self.reports`` (and the TIMELINE part), the buckets joined."""
        from podcap.analysis.page import TIMELINE_ORDER

        new_ids = _renumber(self.first_frames)
        files = list(self.captures)
        orders = {name: REPORTS[name].row_order for name in self.joined_by(BucketJoin.rows)}
        if self.request.page:
            orders[TIMELINE] = TIMELINE_ORDER
        out = {
            name: _join(self.tables[name], new_ids, files, order) for name, order in orders.items()
        }
        by_counts = self.joined_by(BucketJoin.file_counts)
        if by_counts:
            from podcap.reports.summary import merge_counts

            totals = Totals(self.captures, sidecars, merge_counts(self.counts))
            out.update({name: REPORTS[name].build(totals) for name in by_counts})
        return out


def _renumber(first_frames: list[np.ndarray]) -> list[np.ndarray]:
    """Per bucket, the new id of each of its flows: the rank of the flow's (file, first
    frame) among all flows, as the whole-capture analysis numbers them."""
    everything = np.concatenate(first_frames) if first_frames else np.zeros(0, np.int64)
    rank = np.empty(len(everything), np.int64)
    rank[np.argsort(everything, kind="stable")] = np.arange(len(everything))
    bounds = np.cumsum([0] + [len(f) for f in first_frames])
    return [rank[start:stop] for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def _join(
    tables: list[pd.DataFrame], new_ids: list[np.ndarray], files: list[str], order
) -> pd.DataFrame:
    import pandas as pd

    for table in tables:
        if len(table):
            table["flow_id"] = new_ids[int(table["_bucket"].iloc[0])][table["flow_id"].to_numpy()]
    kept = [t for t in tables if len(t)] or tables[:1]
    joined = pd.concat(kept, ignore_index=True)
    for column in joined.columns:
        if isinstance(tables[0][column].dtype, pd.CategoricalDtype):
            joined[column] = pd.Categorical(joined[column].astype(object), categories=files)
    position = {path: i for i, path in enumerate(files)}
    joined["_file"] = joined["file"].map(position) if "file" in joined else 0
    joined = joined.sort_values(list(order), kind="stable").reset_index(drop=True)
    return joined.drop(columns=["_bucket", "_file"])


def analyze_in_buckets(paths: list[str], plan: BucketPlan, request: Request, progress) -> Outcome:
    """The reports of ``paths`` read in buckets (and the html page's, when asked for)."""
    run = bucketed_run(request, progress, plan.workers)
    captures, errors, warnings = read_each(
        paths, lambda index, path: run.add_file(index, path, plan.buckets[path])
    )
    sidecars = {path: read_sidecar(path, warnings) for path in captures}
    return joined_outcome(run, captures, sidecars, errors, warnings)


def bucketed_run(request: Request, progress, workers: int = 1) -> BucketedRun:
    """A run building the reports asked for, and the page's sections when it is asked for."""
    from podcap.analysis.page import bucket_sections

    reports = bucket_sections(request.reports) if request.page else request.reports
    return BucketedRun(request, reports, progress, workers=workers)


def joined_outcome(run: BucketedRun, captures, sidecars, errors, warnings) -> Outcome:
    """The run's buckets joined into the reports (and the page) of every file read."""
    from podcap.analysis.page import bucket_page

    request = run.request
    built = run.results(sidecars)
    tables = {name: built[name] for name in request.reports}
    page = None
    if request.page:
        sections = {name: built[name] for name in run.reports}
        page = bucket_page(sections, list(captures), request.filter_text, built[TIMELINE])
    return Outcome(tables, run.matched, errors, warnings, page=page, sidecars=sidecars)
