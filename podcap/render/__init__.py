"""Write reports out: a readable terminal table, or csv / json / parquet files.

``render(reports, fmt, output)`` takes ``{report name: DataFrame}``. Each format is one
function in ``RENDERERS``; the notebooks issue adds ``html`` there (``RENDERERS["html"] =
...``) without touching the others.

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

from podcap.render.files import write_csv, write_json, write_parquet
from podcap.render.html import write_html  # notebooks issue: the self-contained page
from podcap.render.table import write_table

Renderer = Callable[[dict[str, pd.DataFrame], "str | None", TextIO, dict], list[Path]]

RENDERERS: dict[str, Renderer] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
    "parquet": write_parquet,
    "html": write_html,  # notebooks issue
}


def render(
    reports: dict[str, pd.DataFrame],
    fmt: str = "table",
    output: str | None = None,
    stdout: TextIO | None = None,
    **options,
) -> list[Path]:
    """Render ``reports`` in format ``fmt``; return the files written (empty for stdout)."""
    from podcap.errors import UsageError

    if fmt not in RENDERERS:
        raise UsageError(f"unknown format {fmt!r}", f"choose from: {', '.join(RENDERERS)}")
    return RENDERERS[fmt](reports, output, stdout or sys.stdout, options)
