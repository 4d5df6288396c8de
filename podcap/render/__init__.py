"""Write reports out: a readable terminal table, or csv / json / parquet files.

``render(reports, fmt, output)`` takes ``{report name: DataFrame}``. Each format is one
function named in ``RENDERERS``; adding a format means adding one entry there.

Where output goes:
- ``table`` and ``json`` print to stdout, or write to ``output`` when given.
- ``csv`` prints one report to stdout; several reports need ``output`` as a directory and
  give one file per report, named after it (``flows.csv``).
- ``parquet`` always needs ``output``: a file for one report, a directory for several.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from podcap.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

# Format -> (module, function). The writers are imported when used: checking a format (the
# CLI does it before reading anything) must not import pandas (see podcap.decode.split).
RENDERERS: dict[str, tuple[str, str]] = {
    "table": ("podcap.render.table", "write_table"),
    "csv": ("podcap.render.files", "write_csv"),
    "json": ("podcap.render.files", "write_json"),
    "parquet": ("podcap.render.files", "write_parquet"),
    "html": ("podcap.render.html", "write_html"),
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
    module, function = RENDERERS[check_format(fmt)]
    write = getattr(importlib.import_module(module), function)
    return write(reports, output, stdout or sys.stdout, options)
