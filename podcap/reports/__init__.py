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

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from podcap.errors import UsageError


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    build: Callable[..., pd.DataFrame]


REPORTS: dict[str, Report] = {}


def report(name: str, description: str = ""):
    """Register the decorated function ``f(analysis) -> DataFrame`` as report ``name``."""

    def register(build: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        REPORTS[name] = Report(name, description or (build.__doc__ or "").strip(), build)
        return build

    return register


def build_report(name: str, analysis) -> pd.DataFrame:
    """Run report ``name`` on ``analysis``; UsageError for an unknown name."""
    if name not in REPORTS:
        known = ", ".join(sorted(REPORTS))
        raise UsageError(f"unknown report {name!r}", f"choose from: {known}")
    return REPORTS[name].build(analysis)


# Importing the modules registers their reports (order = the order `--help` lists them).
from podcap.reports import summary, packets, flows, http, tcp, snat  # noqa: E402, F401, I001
