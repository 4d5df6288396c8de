"""The ``table`` format: one rich table per report, readable in a terminal."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TextIO

import pandas as pd

from podcap.render.files import to_stdout, write_text_output

DEFAULT_MAX_ROWS = 50
# Wide reports show these columns in a terminal; csv/json/parquet always have them all.
TABLE_COLUMNS = {
    "summary": [
        "file", "target", "node", "link_types", "packets", "matched", "duration", "flows",
        "http_requests", "unanswered_syn", "refused", "resets", "retransmissions",
        "zero_windows",
    ],
    "flows": [
        "file", "flow_id", "proto", "client_ip", "client_port", "server_ip", "server_port",
        "state", "history", "duration", "packets_c2s", "packets_s2c", "payload_c2s",
        "payload_s2c", "handshake_rtt_ms", "retransmissions", "encap",
    ],
}  # fmt: skip
# Columns whose text is long and best wrapped rather than shown in full on one line.
WRAPPED = {"hint", "explanation", "history"}


def write_table(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    from rich.console import Console

    max_rows = options.get("max_rows", DEFAULT_MAX_ROWS)
    if to_stdout(output):
        # Piped output is not cut to 80 columns: a file or pager can scroll sideways.
        width = None if stdout.isatty() else 220
        console = Console(file=stdout, soft_wrap=False, width=width)
        _print_all(console, reports, max_rows)
        return []
    text = io.StringIO()
    _print_all(Console(file=text, width=200, no_color=True), reports, max_rows)
    return write_text_output(text.getvalue(), output, stdout)


def _print_all(console, reports: dict[str, pd.DataFrame], max_rows: int | None) -> None:
    for name, table in reports.items():
        if table.empty:
            console.print(f"{name}: no rows", markup=False)
        else:
            console.print(build_table(name, table, max_rows))


def build_table(name: str, table: pd.DataFrame, max_rows: int | None = DEFAULT_MAX_ROWS):
    """A rich Table for one report; a one-row report is shown as field: value lines."""
    from rich.table import Table

    if len(table) == 1:
        return _vertical(name, table)
    full_width = len(table.columns)
    table = _terminal_columns(name, table)
    shown = table if max_rows is None else table.head(max_rows)
    notes = []
    if len(shown) < len(table):
        notes.append(f"{len(table) - len(shown)} more rows (--max-rows)")
    if len(table.columns) < full_width:
        notes.append(f"{full_width - len(table.columns)} more columns")
    caption = f"{', '.join(notes)}: see --format csv/json/parquet" if notes else None
    view = Table(title=f"{name} ({len(table)} rows)", caption=caption, title_justify="left")
    for column in table.columns:
        numeric = pd.api.types.is_numeric_dtype(table[column])
        view.add_column(
            column,
            justify="right" if numeric else "left",
            overflow="fold" if column in WRAPPED else "ellipsis",
            no_wrap=column not in WRAPPED,
        )
    for row in shown.itertuples(index=False):
        view.add_row(*(format_cell(value) for value in row))
    return view


def _terminal_columns(name: str, table: pd.DataFrame) -> pd.DataFrame:
    """The report's terminal columns, without those that are empty in every row."""
    columns = [c for c in TABLE_COLUMNS.get(name, table.columns) if c in table.columns]
    return table[[c for c in columns if not _all_empty(table[c])]]


def _all_empty(column: pd.Series) -> bool:
    return bool(column.isna().all() or (column.astype(str) == "").all())


def _vertical(name: str, table: pd.DataFrame):
    from rich.table import Table

    view = Table(title=f"{name} (1 row)", show_header=False, title_justify="left")
    view.add_column("field", style="bold")
    view.add_column("value")
    for column, value in table.iloc[0].items():
        view.add_row(format_cell(column), format_cell(value))
    return view


def format_cell(value):
    """A cell as rich Text (never markup: a URI may hold "[...]")."""
    from rich.text import Text

    return Text(cell_text(value))


def cell_text(value) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
