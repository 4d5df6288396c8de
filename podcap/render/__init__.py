"""Write reports out: a readable terminal table, or csv / json / parquet files.

``render(reports, fmt, output)`` takes ``{report name: DataFrame}``. Each format is one
function in ``RENDERERS``; adding a format means adding one entry there.

Where output goes:
- ``table`` and ``json`` print to stdout, or write to ``output`` when given.
- ``csv`` prints one report to stdout; several reports need ``output`` as a directory and
  give one file per report, named after it (``flows.csv``).
- ``parquet`` always needs ``output``: a file for one report, a directory for several.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pandas as pd

from podcap.errors import UsageError
from podcap.render.files import write_csv, write_json, write_parquet
from podcap.render.html import write_html
from podcap.render.table import write_table

Renderer = Callable[[dict[str, pd.DataFrame], "str | None", TextIO, dict], list[Path]]

RENDERERS: dict[str, Renderer] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
    "parquet": write_parquet,
    "html": write_html,
}


def check_format(fmt: str) -> str:
    """``fmt`` itself if podcap can write it, else a UsageError naming the choices."""
    if fmt not in RENDERERS:
        raise UsageError(f"unknown format {fmt!r}", f"choose from: {', '.join(RENDERERS)}")
    return fmt


def render(
    reports: dict[str, pd.DataFrame],
    fmt: str = "table",
    output: str | None = None,
    stdout: TextIO | None = None,
    **options,
) -> list[Path]:
    """Render ``reports`` in format ``fmt``; return the files written (empty for stdout)."""
    return RENDERERS[check_format(fmt)](reports, output, stdout or sys.stdout, options)
