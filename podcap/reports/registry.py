"""The report registry: each report registered by name, with its description and builder."""

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
