"""``podcap analyze`` as a library call: captures in, one DataFrame per report out.

Example:
    >>> from podcap.analysis.run import analyze
    >>> result = analyze(["a.pcap"], filter='tcp contains "lbtest"', reports=["summary", "flows"])
    >>> result["flows"]            # a pandas DataFrame
    >>> result.matched             # packets the filter selected, over all files
    >>> result.errors              # one PodcapError per file that could not be read

Steps: decode each file (the fast native decoder, or tshark through pyshark), give every
packet its flow, apply the display filter, then build each report from one shared
:class:`~podcap.analysis.context.Analysis`, which computes the flows once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from podcap import sidecar
from podcap.analysis.buckets import IN_MEMORY_PACKETS, analyze_in_buckets, bucket_plan
from podcap.errors import DecodeError, PodcapError, UsageError

if TYPE_CHECKING:
    import pandas as pd

ENGINES = ("native", "tshark")
DEFAULT_REPORTS = ("summary",)
# Reports that never read the http_* columns: with only these (and no http filter), the
# decoder skips parsing HTTP first lines.
REPORTS_WITHOUT_HTTP = frozenset({"flows", "tcp", "packets"})


class AnalysisResult(dict):
    """``{report name: DataFrame}`` plus what happened on the way.

    ``matched``: packets selected (all packets without a filter); ``errors``: a
    PodcapError per unreadable file (the other files are in the reports); ``warnings``:
    one line each (e.g. a truncated tail); ``analysis``: the shared Analysis object.
    """

    matched: int
    errors: list[PodcapError]
    warnings: list[str]
    analysis: Any
    filtered: bool


def analyze(
    paths: Iterable[str | Path],
    filter: str | None = None,
    reports: Iterable[str] = DEFAULT_REPORTS,
    engine: str = "native",
    options: dict[str, Any] | None = None,
    on_progress: Callable[[str], None] | None = None,
    in_memory_limit: int | None = IN_MEMORY_PACKETS,
) -> AnalysisResult:
    """Analyze capture files and return the requested reports.

    Captures estimated to hold more than ``in_memory_limit`` packets in all are analyzed
    in buckets of conversations spilled to disk, one bucket in memory at a time
    (``podcap.analysis.buckets``; summary, flows, tcp and http reports with a native filter or none).
    The reports are the same; ``result.analysis`` is then None. 0 or None: always in memory.

    Raises:
        FilterError: the filter is neither native nor accepted by tshark.
        UsageError: unknown report or engine.
        DecodeError: no file could be read (with several files, the unreadable ones are
            listed in ``result.errors`` instead and the others analyzed).
    """
    from podcap.dfilter import compile_filter

    if isinstance(paths, str | Path):
        paths = [paths]  # one file given as such, not as a list of characters
    paths = [str(p) for p in paths]
    reports = list(dict.fromkeys(reports))
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", "choose native or tshark")
    if not paths:
        raise UsageError("no capture file given")
    display_filter = compile_filter(filter) if filter else None
    needles = display_filter.needles if display_filter else frozenset()
    progress = on_progress or (lambda message: None)
    needs_http = not (
        set(reports) <= REPORTS_WITHOUT_HTTP
        and "http" not in (display_filter.text.lower() if display_filter else "")
    )
    plan = bucket_plan(paths, reports, display_filter, engine, in_memory_limit)
    # Reading starts before pandas and the reports are imported: for a large pcap a helper
    # process decodes part of it meanwhile (podcap.decode.split).
    early = None if plan else _start_early(paths[0], engine, needles, needs_http)
    try:
        from podcap.analysis.context import Analysis
        from podcap.reports import REPORTS, build_report

        unknown = [name for name in reports if name not in REPORTS]
        if unknown:
            choices = ", ".join(REPORTS)
            raise UsageError(f"unknown report {unknown[0]!r}", f"choose from: {choices}")
    except BaseException:
        if early is not None:
            early.cancel()
        raise
    if plan:
        return _result(
            *analyze_in_buckets(
                paths, plan, display_filter, reports, options, needs_http, progress
            ),
            analysis=None,
            filtered=display_filter is not None,
        )
    captures, errors, warnings = _read_all(paths, engine, needles, needs_http, progress, early)
    packets = combine_captures(captures)
    progress("following connections")
    from podcap.flows import assign_flows

    packets = assign_flows(packets)
    matched = filter_mask(display_filter, packets, captures, progress)
    analysis = Analysis(
        all_packets=packets,
        matched=matched,
        captures=captures,
        sidecars={path: read_sidecar(path, warnings) for path in captures},
        options=dict(options or {}),
        filter_text=display_filter.text if display_filter else None,
        files_given=len(paths),
    )
    tables = {}
    for name in reports:
        progress(f"building the {name} report")
        tables[name] = build_report(name, analysis)
    return _result(
        tables, int(matched.sum()), errors, warnings, analysis, display_filter is not None
    )


def _result(tables, matched, errors, warnings, analysis, filtered) -> AnalysisResult:
    result = AnalysisResult(tables)
    result.matched = matched
    result.errors = errors
    result.warnings = warnings
    result.analysis = analysis
    result.filtered = filtered
    return result


def _start_early(path: str, engine: str, needles: frozenset[bytes], needs_http: bool):
    """The native reading of ``path`` started (``podcap.decode.start_reading``), or None: for
    the tshark engine, or when the file cannot be opened (reading it again later gives that
    error its place among the files')."""
    if engine != "native":
        return None
    from podcap.decode import start_reading

    try:
        return start_reading(path, needles=tuple(needles), http=needs_http)
    except DecodeError:
        return None


def _read_all(paths, engine, needles, needs_http, progress, early=None):
    def read(index: int, path: str):
        progress(f"reading {path}")
        if index == 0 and early is not None:
            return early.finish()
        return _read(path, engine, needles, needs_http, progress)

    return read_each(paths, read)


def read_each(paths: list[str], read: Callable[[int, str], Any]):
    """``read(index, path)`` (a Capture) for each file: (captures by path, one DecodeError per
    file that could not be read, warnings naming their file). Raises DecodeError when no
    file could be read."""
    captures: dict[str, Any] = {}
    errors: list[PodcapError] = []
    warnings: list[str] = []
    for index, path in enumerate(paths):
        try:
            capture = read(index, path)
        except DecodeError as exc:
            errors.append(exc)
            continue
        captures[path] = capture
        warnings.extend(f"{path}: {w}" if path not in w else w for w in capture.warnings)
    if not captures:
        if len(errors) == 1:
            raise errors[0]
        raise DecodeError(f"none of the {len(paths)} files could be read: {errors[0]}")
    return captures, errors, warnings


def _read(path: str, engine: str, needles: frozenset[bytes], needs_http: bool, progress):
    if engine == "tshark":
        from podcap.decode.tshark_engine import read_capture_tshark

        return read_capture_tshark(path, needles=tuple(needles), on_progress=progress)
    from podcap.decode import read_capture

    return read_capture(path, needles=tuple(needles), http=needs_http)


def combine_captures(captures: dict[str, Any]) -> pd.DataFrame:
    """All files' packets in one table, with ``file`` (categorical) and the Linux cooked
    capture columns ``if_index`` and ``pkt_type`` (-1 where the decoder has none)."""
    import pandas as pd

    tables = []
    for capture in captures.values():
        table = capture.packets.copy(deep=False)  # copy-on-write: no column is copied
        n = len(table)
        for name, dtype in (("if_index", np.int32), ("pkt_type", np.int16)):
            values = getattr(capture, name, None)
            table[name] = (
                values if values is not None and len(values) == n else np.full(n, -1, dtype)
            )
        tables.append(table)
    packets = tables[0] if len(tables) == 1 else _concat_tables(tables)
    sizes = [len(t) for t in tables]
    codes = np.repeat(np.arange(len(tables), dtype=np.int32), sizes)
    packets.insert(0, "file", pd.Categorical.from_codes(codes, categories=list(captures)))
    return packets


def _concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Packet tables one after the other; each text column stays a categorical, over the
    union of the files' strings (concat alone would fall back to Python objects)."""
    import pandas as pd

    for name in tables[0].columns:
        if isinstance(tables[0][name].dtype, pd.CategoricalDtype):
            # Every table recoded to the union (integer work), so that concat keeps the dtype.
            union = sorted(set().union(*(t[name].cat.categories for t in tables)))
            categories = pd.Index(union, dtype="str")
            for table in tables:
                table[name] = table[name].cat.set_categories(categories)
    return pd.concat(tables, ignore_index=True)


def filter_mask(display_filter, packets: pd.DataFrame, captures, progress) -> np.ndarray:
    """One bool per row of ``packets`` (the captures' tables one after the other): whether
    the display filter matches it; all true without a filter."""
    if display_filter is None:
        return np.ones(len(packets), bool)
    progress(f"applying the filter {display_filter.text}")
    mask = np.zeros(len(packets), bool)
    start = 0
    for path, capture in captures.items():
        stop = start + len(capture.packets)
        mask[start:stop] = display_filter.mask(packets.iloc[start:stop], capture.contains, path)
        start = stop
    return mask


def read_sidecar(path: str, warnings: list[str]) -> dict:
    """The capture's sidecar as a dict ({} without one); an unreadable one adds a warning."""
    try:
        return sidecar.read_sidecar(path) or {}
    except DecodeError as exc:
        warnings.append(f"{exc}; sidecar ignored")
        return {}
