"""Rendering: table, json, csv and parquet, to stdout and to files."""

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.errors import UsageError
from podcap.render import render
from podcap.reports.registry import REPORTS


@pytest.fixture(scope="module")
def reports(mixed_pcap):
    return analyze([mixed_pcap], reports=["summary", "flows", "http"])


def test_json_is_one_object_keyed_by_report(reports):
    out = io.StringIO()
    assert render(reports, "json", stdout=out) == []
    document = json.loads(out.getvalue())
    assert list(document) == ["summary", "flows", "http"]
    assert document["summary"][0]["target"] == "default/web-0"
    assert [r["uri"] for r in document["http"]][0] == "/mytest"
    first = document["flows"][0]
    assert first["first_ts"].startswith("2023-11-14T22:13:20.001")  # ISO 8601, UTC
    assert document["flows"][1]["handshake_rtt_ms"] is None  # NaN becomes null


def test_csv_of_one_report_goes_to_stdout(reports):
    out = io.StringIO()
    render({"http": reports["http"]}, "csv", stdout=out)
    table = pd.read_csv(io.StringIO(out.getvalue()))
    assert list(table["uri"]) == list(reports["http"]["uri"])


def test_csv_and_parquet_of_several_reports_write_one_file_each(reports, tmp_path):
    written = render(reports, "csv", output=str(tmp_path / "csv"))
    assert sorted(p.name for p in written) == ["flows.csv", "http.csv", "summary.csv"]
    flows_csv = pd.read_csv(tmp_path / "csv" / "flows.csv")
    assert len(flows_csv) == len(reports["flows"])
    # The report's columns and nothing else (no index column), as with one report.
    assert list(flows_csv.columns) == list(reports["flows"].columns)
    one = tmp_path / "one.csv"
    render({"flows": reports["flows"]}, "csv", output=str(one))
    assert one.read_text() == (tmp_path / "csv" / "flows.csv").read_text()
    out = io.StringIO()
    render({"flows": reports["flows"]}, "csv", stdout=out)
    assert out.getvalue() == one.read_text()
    written = render(reports, "parquet", output=str(tmp_path / "pq"))
    flows = pd.read_parquet(tmp_path / "pq" / "flows.parquet")
    assert list(flows["state"]) == list(reports["flows"]["state"])
    assert str(flows["first_ts"].dtype).startswith("datetime64")


def test_parquet_of_one_report_is_the_file_named(reports, tmp_path):
    target = tmp_path / "flows.parquet"
    assert render({"flows": reports["flows"]}, "parquet", output=str(target)) == [target]
    assert len(pd.read_parquet(target)) == 11


def test_outputs_that_cannot_work_are_usage_errors(reports, tmp_path):
    with pytest.raises(UsageError, match="-o DIR"):
        render(reports, "csv")
    with pytest.raises(UsageError, match="binary"):
        render(reports, "parquet")
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(UsageError, match="this is a file"):
        render(reports, "csv", output=str(afile))
    with pytest.raises(UsageError, match="unknown format"):
        render(reports, "xml")


def test_table_shows_every_report_and_caps_rows(reports):
    out = io.StringIO()
    render(reports, "table", stdout=out, max_rows=3)
    text = out.getvalue()
    assert "summary" in text and "default/web-0" in text
    assert "flows (11 rows)" in text and "8 more rows" in text
    assert "/mytest" in text


def test_table_does_not_read_markup_in_values():
    out = io.StringIO()
    render({"http": pd.DataFrame({"uri": ["/a[bold]b[/bold]"]})}, "table", stdout=out)
    assert "/a[bold]b[/bold]" in out.getvalue()


@pytest.mark.parametrize("rows_at_a_time", [1, 2, 1000])
def test_json_written_piece_by_piece_is_the_whole_document(
    reports, tmp_path, monkeypatch, rows_at_a_time
):
    """The json writer turns a few rows at a time into Python objects; the text must be
    exactly ``json.dumps`` of the whole document, however the rows are cut."""
    from podcap.render import files

    monkeypatch.setattr(files, "JSON_ROWS", rows_at_a_time)
    tables = dict(reports)
    tables["empty"] = tables["flows"].iloc[:0]
    document = {
        name: json.loads(table.to_json(orient="records", date_format="iso", date_unit="us"))
        for name, table in tables.items()
    }
    expected = json.dumps(document, indent=1) + "\n"
    out = io.StringIO()
    render(tables, "json", None, stdout=out)
    assert out.getvalue() == expected
    render(tables, "json", str(tmp_path / "all.json"))
    assert (tmp_path / "all.json").read_text() == expected
    assert len(document["flows"]) > 2  # several pieces when 1 or 2 rows at a time


def test_every_report_writes_to_every_file_format(tmp_path):
    # The snat report's attrs hold a DataFrame (clock offsets), which pandas cannot store as
    # parquet metadata: the file is written all the same, with its rows.
    samples = Path(__file__).resolve().parent.parent / "sample_pcaps"
    files = [samples / "10-snat-pod.pcap", samples / "10-snat-peer.pcap"]
    result = analyze(files, reports=list(REPORTS))
    assert result["snat"].attrs  # what made parquet fail
    for fmt in ("parquet", "csv", "json"):
        written = render(dict(result), fmt, str(tmp_path / fmt))
        assert len(written) == (1 if fmt == "json" else len(REPORTS))
    snat = pd.read_parquet(tmp_path / "parquet" / "snat.parquet")
    assert snat["verdict"].tolist() == result["snat"]["verdict"].tolist()


def test_a_failed_write_leaves_no_file_of_the_set(reports, tmp_path):
    out = tmp_path / "out"
    (out / "http.csv").mkdir(parents=True)  # the third report cannot be written
    with pytest.raises(UsageError, match="http.csv: cannot write"):
        render(dict(reports), "csv", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["http.csv"]  # no summary.csv, no temp


def test_a_file_of_the_same_name_is_replaced_whole_or_not_at_all(reports, tmp_path):
    target = tmp_path / "flows.parquet"
    target.write_bytes(b"earlier")
    render({"flows": reports["flows"]}, "parquet", str(target))
    assert len(pd.read_parquet(target)) == len(reports["flows"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.parquet"]


def test_a_device_is_written_to_not_replaced(reports):
    render({"summary": reports["summary"]}, "csv", "/dev/null")
    assert Path("/dev/null").is_char_device()


def test_the_python_api_takes_one_report_name_as_a_string(mixed_pcap):
    assert list(analyze(mixed_pcap, reports="flows")) == ["flows"]
    assert list(analyze(mixed_pcap, reports="flows, tcp")) == ["flows", "tcp"]
