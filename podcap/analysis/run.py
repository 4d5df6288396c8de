"""``podcap analyze`` as a library call: captures in, one DataFrame per report out.

Example:
    >>> from podcap.analysis.run import analyze
    >>> result = analyze(["a.pcap"], filter='tcp contains "lbtest"', reports=["summary", "flows"])
    >>> result["flows"]            # a pandas DataFrame
    >>> result.matched             # packets the filter selected, over all files
    >>> result.errors              # one PodcapError per file that could not be read

Steps (``podcap.analysis.steps``): decode each file (the fast native decoder, or tshark through
pyshark), give every packet its flow, apply the display filter, then build each report from one
shared :class:`~podcap.analysis.context.Analysis`, which computes the flows once. This module
checks what is asked and picks the strategy: all in memory (``podcap.analysis.memory``) or
bucket by bucket for captures too large to hold (``podcap.analysis.buckets``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podcap.analysis.buckets import IN_MEMORY_PACKETS, analyze_in_buckets, bucket_plan
from podcap.analysis.memory import analyze_in_memory
from podcap.analysis.steps import Outcome, Request, start_early
from podcap.errors import PodcapError, UsageError
from podcap.reports.registry import CAPTURE_SUFFIXES, check_reports

if TYPE_CHECKING:
    from podcap.analysis.on_dask import DaskOptions
    from podcap.snat.inputs import SnatInputs

ENGINES = ("native", "tshark")
DEFAULT_REPORTS = ("summary",)


class AnalysisResult(dict):
    """``{report name: DataFrame}`` plus what happened on the way.

    ``matched``: packets selected (all packets without a filter); ``errors``: a
    PodcapError per unreadable file (the other files are in the reports); ``warnings``:
    one line each (e.g. a truncated tail); ``analysis``: the shared Analysis object;
    ``page``: what the html page shows (``podcap.analysis.page.Page``); ``sidecars``: per
    file read, in order, its sidecar (``{}`` without one).
    """

    matched: int
    errors: list[PodcapError]
    warnings: list[str]
    analysis: Any
    filtered: bool
    sidecars: dict[str, dict]

    def __init__(self, outcome: Outcome, filtered: bool):
        super().__init__(outcome.tables)
        self.matched = outcome.matched
        self.errors = outcome.errors
        self.warnings = outcome.warnings
        self.analysis = outcome.analysis
        self.filtered = filtered
        self.sidecars = outcome.sidecars
        self._page = outcome.page

    @property
    def page(self):
        """Gathered by the run when ``analyze(page=True)``; else built on first use from the
        analysis held in memory (for captures analyzed in buckets: these reports alone)."""
        if self._page is None:
            from podcap.analysis.page import page_of

            self._page = page_of(self, self.analysis)
        return self._page


def capture_paths(given: Iterable[str | Path]) -> list[str]:
    """The files to read: ``-`` is standard input (a pipe from ``tcpdump -w -``), a directory
    its capture files (what ``podcap capture -o DIR`` wrote), sorted by name."""
    paths = []
    for item in map(str, given):
        if item == "-":
            paths.append("/dev/stdin")
        elif _is_url(item):
            paths += _listed(item) if item.endswith("/") else [item]
        elif Path(item).is_dir():
            found = sorted(p for p in Path(item).iterdir() if p.name.endswith(CAPTURE_SUFFIXES))
            if not found:
                suffixes = ", ".join(CAPTURE_SUFFIXES)
                raise UsageError(f"{item}: a directory without capture files ({suffixes})")
            paths += [str(p) for p in found]
        else:
            paths.append(item)
    return paths


def _is_url(item: str) -> bool:
    from podcap.analysis.fetched import is_url

    return is_url(item)


def _listed(url: str) -> list[str]:
    from podcap.analysis.fetched import listed

    return listed(url, CAPTURE_SUFFIXES)


def _compiled(text: str):
    from podcap.dfilter import compile_filter  # 15 ms: only for a command with a filter

    return compile_filter(text)


def analyze(
    paths: Iterable[str | Path],
    filter: str | None = None,
    reports: Iterable[str] = DEFAULT_REPORTS,
    engine: str = "native",
    snat: SnatInputs | None = None,
    on_progress: Callable[[str], None] | None = None,
    in_memory_limit: int | None = IN_MEMORY_PACKETS,
    page: bool = False,
    dask: DaskOptions | None = None,
) -> AnalysisResult:
    """Analyze capture files and return the requested reports.

    Captures estimated to hold more than ``in_memory_limit`` packets in all are analyzed
    in buckets of conversations spilled to disk, one bucket in memory at a time
    (``podcap.analysis.buckets``; reports whose record says they can run per bucket, with a
    native filter or none). The reports are the same; ``result.analysis`` is then None.
    0 or None: always in memory. ``page``: also gather what the html page shows
    (``result.page``), in buckets too. ``snat``: what the snat and dnat reports know besides
    the packets and the sidecars (``podcap.snat.inputs.snat_inputs``). ``dask``: each file
    analyzed on a worker of a Dask cluster (``podcap.analysis.on_dask``; the reports that run
    per bucket only), ``in_memory_limit`` packets at a time per worker.

    Raises:
        FilterError: the filter is neither native nor accepted by tshark.
        UsageError: unknown report or engine.
        DecodeError: no file could be read (with several files, the unreadable ones are
            listed in ``result.errors`` instead and the others analyzed).
    """
    if isinstance(paths, str | Path):
        paths = [paths]  # one file given as such, not as a list of characters
    if isinstance(reports, str):
        reports = [name.strip() for name in reports.split(",")]  # "flows" or "flows,tcp"
    reports = check_reports(reports)
    paths = capture_paths(paths)
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}", "choose native or tshark")
    if not paths:
        raise UsageError("no capture file given")
    urls = [path for path in paths if _is_url(path)]
    if urls and dask is None:
        raise UsageError(f"{urls[0]}: a URL is read by the workers of --dask",
                         "add --dask, or copy the file here")  # fmt: skip
    display_filter = _compiled(filter) if filter else None
    request = Request(reports, display_filter, engine, snat, len(paths), page)
    progress = on_progress or (lambda message: None)
    if dask is not None:
        from podcap.analysis.on_dask import analyze_on_dask

        limit = in_memory_limit or IN_MEMORY_PACKETS
        outcome = analyze_on_dask(paths, request, progress, dask, limit)
        return AnalysisResult(outcome, filtered=display_filter is not None)
    plan = bucket_plan(paths, request.reports, display_filter, engine, in_memory_limit)
    if plan:
        outcome = analyze_in_buckets(paths, plan, request, progress)
    else:
        # Reading starts before pandas and the reports are imported: for a large pcap a helper
        # process decodes part of it meanwhile (podcap.decode.split).
        early = start_early(paths[0], request)
        try:
            outcome = analyze_in_memory(paths, request, progress, early)
        finally:
            if early is not None:
                early.cancel()  # a no-op once read; else the helper stopped, the file closed
    return AnalysisResult(outcome, filtered=display_filter is not None)
