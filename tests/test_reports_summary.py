"""The summary report and what analyze() does with several files, sidecars and bad files."""

import json

import pytest

from podcap.analysis.run import analyze
from podcap.errors import DecodeError, UsageError
from podcap.reports import REPORTS, report
from tests.analyze_fixtures import Capture


def test_summary_counts_and_sidecar(mixed_pcap):
    row = analyze([mixed_pcap])["summary"].iloc[0]
    assert (row["target"], row["node"]) == ("default/web-0", "node-a")  # from mixed.pcap.json
    assert row["link_types"] == "EN10MB"
    assert (row["packets"], row["matched"], row["flows"], row["http_requests"]) == (76, 76, 11, 6)
    connections = ("unanswered_connections", "refused_connections", "reset_connections")
    assert tuple(row[c] for c in connections) == (1, 1, 1)
    # Two SYN retries of the unanswered connection and one retransmitted request.
    assert (row["retransmitted_packets"], row["connections_with_retransmissions"]) == (3, 2)
    assert row["zero_window_packets"] == 1
    assert row["duration"] == pytest.approx(3.3, abs=0.001)


def test_summary_with_a_filter_counts_what_matched(mixed_pcap):
    row = analyze([mixed_pcap], filter='tcp contains "lbtest"')["summary"].iloc[0]
    assert (row["packets"], row["matched"], row["flows"], row["reset_connections"]) == (76, 1, 1, 1)


def test_sidecar_named_without_pcap_suffix_and_nested_target(tmp_path):
    cap = Capture()
    cap.session("10.5.0.1", "10.5.0.2", 45000, 80).handshake().close()
    path = cap.write(tmp_path / "web.pcap")
    sidecar = {"target": {"namespace": "shop", "pod": "web-1"}, "node": {"name": "node-b"}}
    (tmp_path / "web.json").write_text(json.dumps(sidecar))
    row = analyze([path])["summary"].iloc[0]
    assert (row["target"], row["node"]) == ("shop/web-1", "node-b")


def test_several_files_have_a_file_column_and_a_broken_one_is_reported(mixed_pcap, tmp_path):
    broken = tmp_path / "broken.pcap"
    broken.write_text("this is not a capture\n")
    result = analyze([mixed_pcap, broken], reports=["summary", "flows"])
    assert list(result["summary"]["file"]) == [str(mixed_pcap)]
    assert set(result["flows"]["file"]) == {str(mixed_pcap)}
    (error,) = result.errors
    assert isinstance(error, DecodeError) and str(broken) in str(error)


def test_two_good_files_keep_their_flows_apart(mixed_pcap, tmp_path):
    copy = tmp_path / "copy.pcap"
    copy.write_bytes(mixed_pcap.read_bytes())
    result = analyze([mixed_pcap, copy], reports=["summary", "flows", "http"])
    assert len(result["summary"]) == 2
    assert len(result["flows"]) == 22
    assert result["flows"]["flow_id"].is_unique
    assert list(result["http"].groupby("file", observed=True).size()) == [6, 6]


def test_a_single_unreadable_file_raises(tmp_path):
    with pytest.raises(DecodeError, match="no such file"):
        analyze([tmp_path / "missing.pcap"])


def test_unknown_report_is_a_usage_error(mixed_pcap):
    with pytest.raises(UsageError, match="unknown report 'nope'"):
        analyze([mixed_pcap], reports=["nope"])


def test_new_reports_register_with_the_decorator(mixed_pcap):
    @report("test-talkers", "bytes per source")
    def talkers(analysis):
        return analysis.packets.groupby("src", observed=True)["length"].sum().reset_index()

    try:
        table = analyze([mixed_pcap], reports=["test-talkers"])["test-talkers"]
        assert set(table["src"]) >= {"10.0.0.1", "10.0.0.2", "fd00::1"}
    finally:
        del REPORTS["test-talkers"]


def test_one_path_may_be_given_without_a_list(mixed_pcap):
    assert analyze(str(mixed_pcap))["summary"].iloc[0]["packets"] == 76
