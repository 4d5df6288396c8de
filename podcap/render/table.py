"""The ``table`` format: each report as a terminal shows it, its answer always readable.

A report declares the columns that answer its question (``Report.key_columns``) and the
others in the order they are worth adding (``Report.more_columns``). The table shows the key
columns whole, never cut, then adds the others while they fit the width; when even the key
columns cannot fit, each row becomes a record (one field a line) instead of a table squeezed
to unreadable slivers. A one-row report is always a record. Long text (a fix, a hint) wraps.
``columns=[...]`` picks the columns, ``wide=True`` shows them all. The width is ``COLUMNS``
when set (also when piped), else the terminal's, else 220 for a pipe or a file (a pager
scrolls sideways).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import pandas as pd

from podcap.errors import UsageError
from podcap.render.files import to_stdout, write_text_output
from podcap.reports.registry import REPORTS

DEFAULT_MAX_ROWS = 50
PIPE_WIDTH = 220
# Columns whose text is long: wrapped within at least WRAP_MIN characters, not cut.
WRAPPED = {"hint", "explanation", "fix", "rewritten_by", "evidence", "history", "uri", "info"}
WRAP_MIN = 14
WRAP_MAX = 60
ROOMY = 40  # what an extra (not key) wrapped column needs to be added
CELL_OVERHEAD = 3  # a space each side and one border
TABLE_OVERHEAD = 1  # the table's last border


@dataclass(frozen=True)
class Layout:
    """Which columns a report shows, and whether as a table or as records."""

    columns: list[str]
    hidden: int  # columns left out for want of width
    records: bool  # one field a line per row


def write_table(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    from rich.console import Console

    width = terminal_width(stdout if to_stdout(output) else None)
    if to_stdout(output):
        console = Console(file=stdout, soft_wrap=False, width=width)
        _print_all(console, reports, width, options)
        return []
    text = io.StringIO()
    _print_all(Console(file=text, width=width, no_color=True), reports, width, options)
    return write_text_output(text.getvalue(), output, stdout)


def terminal_width(stream: TextIO | None) -> int:
    """``COLUMNS`` when set, else the terminal's width, else 220 (a pipe or a file)."""
    given = os.environ.get("COLUMNS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    if stream is not None and stream.isatty():
        return os.get_terminal_size(stream.fileno()).columns
    return PIPE_WIDTH


def _print_all(console, reports: dict[str, pd.DataFrame], width: int, options) -> None:
    max_rows = options.get("max_rows", DEFAULT_MAX_ROWS)
    for name, table in reports.items():
        if table.empty:
            console.print(f"{name}: no rows", markup=False)
            continue
        layout = choose_layout(name, table, width, options.get("columns"), options.get("wide"))
        for piece in build_view(name, table, layout, max_rows):
            console.print(piece)


def choose_layout(
    name: str,
    table: pd.DataFrame,
    width: int,
    columns: list[str] | None = None,
    wide: bool = False,
) -> Layout:
    """The columns to show within ``width``: the ones asked for, all (``wide``), or the
    report's key columns plus as many of its others as fit."""
    if columns:
        unknown = [c for c in columns if c not in table.columns]
        if unknown:
            raise UsageError(
                f"--columns: {name} has no column {unknown[0]!r}",
                hint=f"its columns: {', '.join(table.columns)}",
            )
        return Layout(list(columns), 0, len(table) == 1 or _width_of(table, columns) > width)
    record = REPORTS.get(name)
    quiet = record.shown_when_nonzero if record else ()
    shown = [c for c in table.columns
             if not _all_empty(table[c]) and not (c in quiet and (table[c] == 0).all())]  # fmt: skip
    if wide:
        return Layout(shown, 0, len(table) == 1)
    keys = [c for c in (record.key_columns if record else shown) if c in shown]
    more = [c for c in (record.more_columns if record else ()) if c in shown and c not in keys]
    if record is not None and not record.more_columns:  # extras unranked: in table order
        more = [c for c in shown if c not in keys]
    if not keys:
        keys, more = shown[:1], shown[1:]
    if len(table) == 1:  # one record: every field, the answer first
        rest = [c for c in shown if c not in keys and c not in more]
        return Layout(keys + more + rest, 0, True)
    if _width_of(table, keys) > width:
        return Layout(keys + more, len(shown) - len(keys) - len(more), True)
    # Extras come after the key columns' long text has room to read: an info or a fix
    # wrapped in 14 characters makes every row several lines tall.
    chosen = list(keys)
    used = TABLE_OVERHEAD + sum(_roomy_width(table, c) + CELL_OVERHEAD for c in keys)
    for column in more:
        need = _roomy_width(table, column) + CELL_OVERHEAD
        if used + need <= width:
            chosen.append(column)
            used += need
    return Layout(chosen, len(shown) - len(chosen), False)


def _width_of(table: pd.DataFrame, columns: list[str]) -> int:
    return TABLE_OVERHEAD + sum(_min_width(table, c) + CELL_OVERHEAD for c in columns)


def _min_width(table: pd.DataFrame, column: str) -> int:
    """The narrowest a column may be: whole values, or a wrapped text's minimum."""
    natural = _natural_width(table, column)
    return min(natural, max(WRAP_MIN, len(column))) if column in WRAPPED else natural


def _roomy_width(table: pd.DataFrame, column: str) -> int:
    """The width a column reads well in: whole values, long text up to ROOMY characters."""
    if column in WRAPPED:
        return min(_natural_width(table, column), ROOMY)
    return _natural_width(table, column)


def _natural_width(table: pd.DataFrame, column: str) -> int:
    texts = table[column].head(DEFAULT_MAX_ROWS * 4).map(cell_text)
    return max([len(column), *texts.str.len().tolist()])


def build_view(name: str, table: pd.DataFrame, layout: Layout, max_rows: int | None):
    """What the console prints for one report: one table, or one record per row."""
    shown = table if max_rows is None else table.head(max_rows)
    notes = [str(table.attrs["note"])] if table.attrs.get("note") else []
    if table.attrs.get("folded_from"):
        notes.append(f"repeated problems folded from {table.attrs['folded_from']} (--all-rows)")
    if len(shown) < len(table):
        notes.append(f"{len(table) - len(shown)} more rows (--max-rows 0 for all)")
    if layout.hidden:
        notes.append(f"{layout.hidden} more columns (--wide, --columns A,B or -F csv)")
    caption = "; ".join(notes) or None
    title = f"{name} ({len(table)} row{'s' if len(table) != 1 else ''})"
    if layout.records:
        return [*_records(title, shown, layout.columns), *([caption] if caption else [])]
    return [_table(title, caption, shown, layout.columns)]


def _table(title: str, caption: str | None, shown: pd.DataFrame, columns: list[str]):
    from rich.table import Table

    view = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for column in columns:
        wrapped = column in WRAPPED
        view.add_column(
            column,
            justify="right" if pd.api.types.is_numeric_dtype(shown[column]) else "left",
            overflow="fold" if wrapped else "ellipsis",
            no_wrap=not wrapped,
            min_width=_min_width(shown, column),
            max_width=WRAP_MAX if wrapped else None,
        )
    for row in shown[columns].itertuples(index=False):
        view.add_row(*(format_cell(value) for value in row))
    return view


def _records(title: str, shown: pd.DataFrame, columns: list[str]):
    """Each row as ``field  value`` lines, as ``kubectl describe`` shows an object."""
    from rich.table import Table

    pieces = []
    for number, (_, row) in enumerate(shown[columns].iterrows(), start=1):
        heading = title if len(shown) == 1 else f"{title}: row {number}"
        view = Table(title=heading, show_header=False, title_justify="left")
        view.add_column("field", style="bold", no_wrap=True)
        view.add_column("value", overflow="fold")
        for column, value in row.items():
            view.add_row(format_cell(column), format_cell(value))
        pieces.append(view)
    return pieces


def _all_empty(column: pd.Series) -> bool:
    return bool(column.isna().all() or (column.astype(str) == "").all())


def format_cell(value):
    """A cell as rich Text (never markup: a URI may hold "[...]")."""
    from rich.text import Text

    return Text(cell_text(value))


def cell_text(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):  # the reports' times are UTC: say so
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") + (" UTC" if value.tzinfo else "")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
