"""The table format as a terminal shows it: each report's key columns whole at any width,
records instead of slivers, nothing wider than the screen, --columns and --wide."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podcap.analysis.run import analyze
from podcap.render.table import WRAPPED, cell_text
from podcap.reports.registry import REPORTS
from testbed.helpers import podcap

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
CAPTURE_SETS = {
    "single": [SAMPLES / "01-http-mytest.pcap"],
    "failures": [SAMPLES / n for n in ("06-syn-dropped.pcap", "07-conn-refused.pcap")],
    "snat": [SAMPLES / n for n in ("10-snat-pod.pcap", "10-snat-node.pcap", "10-snat-peer.pcap")],
    "overlay": [SAMPLES / "05-vxlan-node-nic.pcap"],
}


@pytest.fixture(scope="module")
def results():
    return {name: analyze(files, reports=list(REPORTS)) for name, files in CAPTURE_SETS.items()}


def _table_text(files, report: str, width: int, *flags) -> str:
    env = {**os.environ, "COLUMNS": str(width)}
    done = podcap("analyze", *files, "-r", report, "--max-rows", "3", *flags, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize("capture_set", sorted(CAPTURE_SETS))
@pytest.mark.parametrize("report", sorted(REPORTS))
def test_the_key_columns_are_shown_whole_at_any_width(results, capture_set, report, width):
    table = REPORTS[report].folded_view(results[capture_set][report])  # as a terminal shows it
    text = _table_text(CAPTURE_SETS[capture_set], report, width)
    if table.empty:
        assert text == f"{report}: no rows\n"
        return
    assert max(len(line) for line in text.splitlines()) <= width
    known = table.notna() & table.astype(str).ne("")
    keys = [c for c in REPORTS[report].key_columns if c in table and known[c].any()]
    assert keys
    for column in keys:
        assert column in text, f"{column} missing at {width} columns"
        if column not in WRAPPED:  # wrapped text may break across lines; the rest never
            for value in table[column].head(3):
                assert _whole(cell_text(value), text), f"{column}={value!r} cut at {width} columns"


def _whole(value: str, text: str) -> bool:
    """``value`` is in ``text`` uncut: on one line, or (in a record, whose value column folds
    a value longer than the screen) in pieces on consecutive lines, never with an ellipsis."""
    if value in text:
        return True
    squashed = "".join("".join("".join(line.split("│")[2:]).split()) for line in text.splitlines())
    return "…" not in text and "".join(value.split()) in squashed


def test_a_narrow_terminal_gives_records_instead_of_slivers():
    text = _table_text(CAPTURE_SETS["snat"], "snat", 60)
    lines = text.splitlines()
    assert lines[0].startswith("snat (") and lines[0].rstrip().endswith("rows): row 1")
    assert any(line.startswith("│ verdict ") and " snat " in line for line in lines)


def test_columns_picks_and_orders_and_wide_shows_all(results):
    files = CAPTURE_SETS["failures"]
    text = _table_text(files, "flows", 200, "--columns", "state,server_port")
    header = next(line for line in text.splitlines() if "state" in line)
    assert header.index("state") < header.index("server_port") and "client_ip" not in text
    wide = _table_text(files, "flows", 400, "--wide")
    flows = results["failures"]["flows"]
    shown = [
        c for c in flows.columns if not flows[c].isna().all() and flows[c].astype(str).ne("").any()
    ]
    assert all(column in wide for column in shown) and "more columns" not in wide


def test_an_unknown_column_names_the_known_ones():
    done = podcap("analyze", *CAPTURE_SETS["failures"], "-r", "flows", "--columns", "verdict")
    assert done.returncode == 2
    assert done.stderr.startswith("podcap: error: --columns: flows has no column 'verdict'")
    assert "client_ip" in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_snat_table_says_which_facts_it_used():
    files = CAPTURE_SETS["snat"]
    text = _table_text(
        files, "snat", 200, "--pod-cidr", "10.244.0.0/16", "--node-ip", "172.20.0.11"
    )
    assert "facts: --pod-cidr; --node-ip" in text
    assert "facts: none given or recorded" in _table_text(files, "snat", 200)
