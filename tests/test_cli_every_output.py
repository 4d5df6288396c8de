"""podcap as `pip install .` gives it, no extras: every report in every format on every sample
capture, through the command line. Each run ends with 0, 1 or 2 and never a traceback, and
every output loads: json and csv into pandas, parquet with pyarrow, html as a whole page."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from podcap.reports.registry import REPORTS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p for p in (ROOT / "sample_pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
FORMATS = ("table", "csv", "json", "parquet", "html")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_every_report_in_every_format_loads(plain_podcap, sample, fmt, tmp_path):
    out = tmp_path / {"html": "out.html", "json": "out.json"}.get(fmt, "out")
    args = [str(plain_podcap), "analyze", str(sample), "-r", ",".join(REPORTS), "-F", fmt]
    if fmt != "table":
        args += ["-o", str(out)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "100"},
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    if fmt == "table":
        assert all(
            f"{name} (" in done.stdout or f"{name}: no rows" in done.stdout for name in REPORTS
        )
    elif fmt == "json":
        assert set(json.loads(out.read_text())) == set(REPORTS)
    elif fmt == "csv":
        for name in REPORTS:
            if (out / f"{name}.csv").stat().st_size > 1:
                pd.read_csv(out / f"{name}.csv")
    elif fmt == "parquet":
        for name in REPORTS:
            assert pq.read_table(out / f"{name}.parquet").num_columns > 0
    else:
        page = out.read_text()
        assert page.lower().startswith("<!doctype html>") and page.rstrip().endswith("</html>")
