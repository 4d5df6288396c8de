"""What a report is: a ``Report`` record (name, builder, what it needs, how a terminal and
the html page show it), the ``Section`` it takes on the html page, and how it runs on buckets
of conversations (``BucketJoin``). The records themselves are in ``podcap.reports.registry``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BucketJoin(StrEnum):
    """How a report runs on buckets of conversations (``podcap.analysis.buckets``) and how
    the buckets' parts become the whole capture's report."""

    rows = "rows"  # each bucket's rows, flow ids renumbered, put back in ``Report.row_order``
    file_counts = "file_counts"  # per-file counts summed, the report built from the totals


@dataclass(frozen=True)
class Section:
    """A report's part of the html page (``podcap.render.html``)."""

    title: str
    empty: str  # what an empty table means
    place: int  # sections are laid out by place, the reports without a section between
    css: str = ""
    plots: tuple[str, ...] = ()  # drawn after the table (``podcap.analysis.page`` gives them)
    min_files: int = 1  # on the page only for at least this many captures (the path: two)


@dataclass(frozen=True)
class Report:
    """One report: what it is, how it is built, what it needs."""

    name: str
    description: str
    builder: str | Callable  # "module:function" taking the Analysis, giving a DataFrame
    per_bucket: BucketJoin | None = None  # None: it needs every packet at once
    # Its rows never span captures (a DNS lookup is one client's, in one file): on Dask it
    # runs on each capture held whole, the captures' rows joined in file order, then sorted
    # by ``row_order`` (stable).
    per_capture: bool = False
    row_order: tuple[str, ...] = ()  # how its rows are ordered in the whole-capture analysis
    http_fields: bool = True  # reads the decoder's HTTP columns (else it may skip parsing them)
    payloads: bool = False  # reads each payload's first bytes (the decoder's ``preview``)
    section: Section | None = None
    # In a terminal (``podcap.render.table``): the columns that answer the report's question,
    # always shown and never cut, then the others in the order they are added while they fit.
    key_columns: tuple[str, ...] = ()
    more_columns: tuple[str, ...] = ()
    # Counts of the unusual, shown in a terminal only where some row has one (csv, json and
    # parquet always hold them).
    shown_when_nonzero: tuple[str, ...] = ()
    # A terminal shows this view of the report unless every row is asked for (--all-rows):
    # "module:function" taking the report's DataFrame, giving a shorter one.
    folded: str | None = None

    def folded_view(self, table):
        """The report as a terminal shows it by default: folded when that makes it shorter."""
        if self.folded is None:
            return table
        view = _function(self.folded)(table)
        return view if len(view) < len(table) else table

    def build(self, analysis):
        """The report of ``analysis`` (a ``podcap.analysis.context.Analysis``)."""
        return self.builder_function()(analysis)

    def builder_function(self) -> Callable:
        """The builder itself, its module imported."""
        return self.builder if callable(self.builder) else _function(self.builder)


def _function(spec: str) -> Callable:
    """The function a ``"module:function"`` string names, its module imported on first use."""
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)
