"""Reports: each turns an :class:`~podcap.analysis.context.Analysis` into one DataFrame.

A report is a function registered by name with ``@report("name", "one-line description")``.
``podcap analyze --report NAME`` and ``podcap.analysis.run.analyze(reports=[...])`` look names up
in ``REPORTS``; adding a report means adding a module here and importing it at the bottom.

Example:
    >>> from podcap.reports import report
    >>> @report("talkers", "bytes per source address")
    ... def talkers(analysis):
    ...     return analysis.packets.groupby("src")["length"].sum().reset_index()
"""

# Importing the modules registers their reports (order = the order `--help` lists them).
from podcap.reports import flows, http, packets, snat, summary, tcp  # noqa: E402, F401, I001
from podcap.reports.registry import REPORTS, Report, build_report, report

__all__ = ["REPORTS", "Report", "build_report", "report"]
