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

from podcap.analysis.buckets import IN_MEMORY_PACKETS, analyze_in_buckets, bucket_plan
from podcap.analysis.steps import combine_captures, filter_mask, read_all, read_sidecar, start_early
from podcap.errors import PodcapError, UsageError

if TYPE_CHECKING:
    pass

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
    early = None if plan else start_early(paths[0], engine, needles, needs_http)
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
    captures, errors, warnings = read_all(paths, engine, needles, needs_http, progress, early)
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
