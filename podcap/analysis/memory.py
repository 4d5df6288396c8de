"""The in-memory strategy: every file read whole, one Analysis over all of them, the reports."""

from __future__ import annotations

from podcap.analysis.steps import (
    Outcome,
    Request,
    analysis_of,
    build_reports,
    read_all,
    read_sidecar,
)
from podcap.reports.registry import REPORTS


def analyze_in_memory(paths: list[str], request: Request, progress, early=None) -> Outcome:
    """The reports of ``paths`` read whole; ``early``: the first file's reading, started."""
    if early is not None:
        import_ahead(request.reports)
    captures, errors, warnings = read_all(paths, request, progress, early)
    sidecars = {path: read_sidecar(path, warnings) for path in captures}
    analysis = analysis_of(captures, request, sidecars, progress)
    tables = build_reports(request.reports, analysis, progress)
    page = None
    if request.page:
        from podcap.analysis.page import page_of

        page = page_of(tables, analysis)
    return Outcome(tables, int(analysis.matched.sum()), errors, warnings, analysis, page, sidecars)


def import_ahead(reports: list[str]) -> None:
    """pandas, the flows stage and the reports' modules, imported while a helper process
    decodes part of the first file (``podcap.decode.split`` cuts the file so that both finish
    together, counting on this 0.3-0.4 s of imports): imported after the reading, they would
    add to the command's time instead."""
    import podcap.analysis.context  # noqa: F401 - pandas
    import podcap.flows  # noqa: F401

    for name in reports:
        REPORTS[name].builder_function()
