"""``analyze`` for captures too large to hold in memory: one bucket of conversations at a time.

A packet costs about 500 bytes of memory while the flows are followed (the table, then the
flow step's temporaries), so ``podcap.analysis.run`` holds a capture whole only up to
``IN_MEMORY_PACKETS`` (estimated from the file size). Above that, each file is read into
buckets on disk (``podcap.decode.spill``): a conversation's packets all land in one bucket,
so each bucket is analyzed alone, exactly as a whole capture is, and only one is in memory at
a time. The buckets' reports are then joined: flow ids renumbered in order of each flow's
first packet in its file (as the whole-capture analysis numbers them), rows put back in the
whole-capture order, and the summary's counts summed. The result equals the in-memory one
(tests/test_bucketed.py compares them on every sample capture).

Memory then depends on the bucket size and on the report rows kept (a flow row is a few
hundred bytes), not on the number of packets. The ``packets``, ``snat`` and ``dnat`` reports,
and filters only tshark understands, need every packet at once: with those, a capture is
always held whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

IN_MEMORY_PACKETS = 1_500_000
MAX_BUCKETS = 256  # open files at once while spilling (a process may have 1024)
BUCKET_REPORTS = frozenset({"summary", "flows", "tcp", "http"})
# How each report's rows are ordered in the whole-capture analysis.
ROW_ORDER = {"flows": ["flow_id"], "tcp": ["flow_id", "problem"], "http": ["_file", "frame"]}


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

    if not limit or engine != "native" or not set(reports) <= BUCKET_REPORTS:
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
    """What the summary report reads, for captures analyzed in buckets."""

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
    tables: dict[str, pd.DataFrame]  # the reports other than the summary
    counts: pd.DataFrame | None  # the summary's counts, when asked for
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

    reports: list[str]
    display_filter: Any
    options: dict
    files_given: int
    progress: Any
    tables: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    first_frames: list[np.ndarray] = field(default_factory=list)  # per bucket, by flow id
    counts: list[pd.DataFrame] = field(default_factory=list)
    captures: dict[str, Any] = field(default_factory=dict)
    matched: int = 0
    workers: int = 1  # processes analyzing buckets at once (1 or 2)

    def add_file(self, file_index: int, path: str, buckets: int, needs_http: bool):
        """Read ``path`` into buckets and analyze them; the whole file's Capture (no packets)."""
        from podcap.decode.spill import read_spilled

        self.progress(f"reading {path} into {buckets} buckets of conversations")
        needles = tuple(self.display_filter.needles) if self.display_filter else ()
        with read_spilled(path, buckets, needles=needles, http=needs_http) as spilled:
            self.captures[path] = spilled.whole
            chosen = list(range(buckets)) if spilled.packets else [0]
            for result in self._bucket_results(file_index, path, spilled, chosen):
                self._add(result)
        return spilled.whole

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
                    results[i] = self._bucket_result(file_index, path, capture)
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

    def _bucket_result(self, file_index: int, path: str, capture) -> BucketResult:
        from podcap.analysis.context import Analysis
        from podcap.analysis.steps import combine_captures, filter_mask
        from podcap.flows import assign_flows, first_of_code
        from podcap.reports import build_report

        packets = assign_flows(combine_captures({path: capture}))
        matched = filter_mask(self.display_filter, packets, {path: capture}, lambda m: None)
        analysis = Analysis(
            all_packets=packets,
            matched=matched,
            captures={path: capture},
            options=self.options,
            filter_text=self.display_filter.text if self.display_filter else None,
            files_given=self.files_given,
        )
        first = packets["frame"].to_numpy()[first_of_code(packets["flow_id"].to_numpy())]
        return BucketResult(
            # One sortable number per flow: its file, then its first frame in that file.
            first_frames=(np.int64(file_index) << 40) | first,
            tables={
                name: build_report(name, analysis) for name in self.reports if name != "summary"
            },
            counts=analysis.file_counts if "summary" in self.reports else None,
            matched=int(matched.sum()),
        )

    def results(self, sidecars: dict[str, dict]) -> dict[str, pd.DataFrame]:
        from podcap.reports import build_report
        from podcap.reports.summary import merge_counts

        new_ids = _renumber(self.first_frames)
        files = list(self.captures)
        out = {}
        for name in self.reports:
            if name == "summary":
                totals = Totals(self.captures, sidecars, merge_counts(self.counts))
                out[name] = build_report("summary", totals)
            else:
                out[name] = _join(self.tables[name], new_ids, files, ROW_ORDER[name])
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
    tables: list[pd.DataFrame], new_ids: list[np.ndarray], files: list[str], order: list[str]
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
    joined = joined.sort_values(order, kind="stable").reset_index(drop=True)
    return joined.drop(columns=["_bucket", "_file"])


def analyze_in_buckets(paths, plan, display_filter, reports, options, needs_http, progress):
    """The reports, the matched count, errors and warnings of ``paths`` read in buckets."""
    from podcap.analysis.steps import read_each, read_sidecar

    run = BucketedRun(
        reports, display_filter, dict(options or {}), len(paths), progress, workers=plan.workers
    )
    captures, errors, warnings = read_each(
        paths, lambda index, path: run.add_file(index, path, plan.buckets[path], needs_http)
    )
    sidecars = {path: read_sidecar(path, warnings) for path in captures}
    return run.results(sidecars), run.matched, errors, warnings
