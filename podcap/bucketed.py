"""``analyze`` for captures too large to hold in memory: one bucket of conversations at a time.

A packet costs about 500 bytes of memory while the flows are followed (the table, then the
flow step's temporaries), so ``podcap.analyze`` holds a capture whole only up to
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


def bucket_plan(
    paths: list[str], reports: list[str], display_filter, engine: str, limit: int | None
) -> dict[str, int] | None:
    """Buckets per file when the captures should be analyzed in buckets, else None."""
    from podcap.decode.spill import estimate_packets

    if not limit or engine != "native" or not set(reports) <= BUCKET_REPORTS:
        return None
    if display_filter is not None and not display_filter.native:
        return None
    estimates = {path: estimate_packets(path) for path in paths}
    if sum(estimates.values()) <= limit:
        return None
    # A third of the limit per bucket: the flow step of a bucket costs twice its table.
    per_bucket = max(1, limit // 3)
    return {
        path: min(MAX_BUCKETS, max(1, math.ceil(count / per_bucket)))
        for path, count in estimates.items()
    }


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

    def add_file(self, file_index: int, path: str, buckets: int, needs_http: bool):
        """Read ``path`` into buckets and analyze them; the whole file's Capture (no packets)."""
        from podcap.decode.spill import read_spilled

        self.progress(f"reading {path} into {buckets} buckets of conversations")
        needles = tuple(self.display_filter.needles) if self.display_filter else ()
        with read_spilled(path, buckets, needles=needles, http=needs_http) as spilled:
            self.captures[path] = spilled.whole
            chosen = list(range(buckets)) if spilled.packets else [0]
            for i in chosen:
                self.progress(f"analyzing bucket {i + 1} of {buckets} of {path}")
                capture = spilled.capture(i)
                if len(capture.packets) or not spilled.packets:
                    self._add_bucket(file_index, path, capture)
        return spilled.whole

    def _add_bucket(self, file_index: int, path: str, capture) -> None:
        from podcap.analyze import combine_captures, filter_mask
        from podcap.reports import build_report
        from podcap.reports.analysis import Analysis
        from podcap.reports.flows import assign_flows, first_of_code

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
        self.matched += int(matched.sum())
        first = packets["frame"].to_numpy()[first_of_code(packets["flow_id"].to_numpy())]
        # One sortable number per flow: its file, then its first frame in that file.
        self.first_frames.append((np.int64(file_index) << 40) | first)
        for name in self.reports:
            if name == "summary":
                self.counts.append(analysis.file_counts)
            else:
                table = build_report(name, analysis)
                table["_bucket"] = len(self.first_frames) - 1
                self.tables.setdefault(name, []).append(table)

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
    from podcap.analyze import read_each, read_sidecar

    run = BucketedRun(reports, display_filter, dict(options or {}), len(paths), progress)
    captures, errors, warnings = read_each(
        paths, lambda index, path: run.add_file(index, path, plan[path], needs_http)
    )
    sidecars = {path: read_sidecar(path, warnings) for path in captures}
    return run.results(sidecars), run.matched, errors, warnings
