"""The tcp problems report: one row per problem, each with a hint in the guide's words."""

import os

import pytest

from podcap.analysis.run import analyze
from podcap.decode.schema import ACK, RST, SYN
from podcap.reports.tcp import grouped_problems
from testbed.helpers import podcap
from tests.analyze_fixtures import Capture


@pytest.fixture(scope="module")
def problems(mixed_pcap):
    return analyze([mixed_pcap], reports=["tcp"])["tcp"]


def test_one_row_per_problem(problems):
    found = sorted(
        zip(problems["client_port"], problems["problem"], problems["count"], strict=True)
    )
    assert found == [
        (40002, "unanswered_syn", 3),  # the SYN and its two retries
        (40003, "refused", 1),
        (40004, "retransmissions", 1),
        (40006, "reset_by_server", 1),
        (40007, "zero_window", 1),
    ]


def test_hints_speak_the_guides_language(problems):
    hints = dict(zip(problems["problem"], problems["hint"], strict=True))
    assert "no SYN-ACK" in hints["unanswered_syn"]
    assert "security group allows the Pod CIDR" in hints["unanswered_syn"]
    assert "nothing listens on 10.0.0.2:81" in hints["refused"]
    assert "netstat -tunlp" in hints["refused"]
    assert "the server 10.0.0.2:80 is not reading" in hints["zero_window"]
    assert all("\n" not in hint and hint for hint in hints.values())


def test_a_filter_keeps_the_problems_of_matching_connections(mixed_pcap):
    table = analyze([mixed_pcap], filter="tcp.port == 81", reports=["tcp"])["tcp"]
    assert list(table["problem"]) == ["refused"]


def test_a_clean_capture_has_no_problem_rows(tmp_path):
    from tests.analyze_fixtures import Capture

    cap = Capture()
    cap.session("10.4.0.1", "10.4.0.2", 44000, 80).handshake().http().close()
    path = cap.write(tmp_path / "clean.pcap")
    table = analyze([path], reports=["tcp"])["tcp"]
    assert table.empty
    assert "hint" in table.columns


def test_a_terminal_folds_repeated_problems_and_all_rows_unfolds_them(tmp_path):
    capture = Capture()
    for port in range(40100, 40130):  # 30 connections refused by one server port
        capture.session("10.0.0.1", "10.0.0.2", port, 9090).c(SYN).s(RST | ACK)
    for port in range(40200, 40205):  # 5 unanswered at another server
        capture.session("10.0.0.1", "10.0.0.3", port, 80).c(SYN)
    path = capture.write(tmp_path / "many.pcap")
    problems = analyze([path], reports=["tcp"])["tcp"]
    folded = grouped_problems(problems)
    assert len(problems) == 35 and len(folded) == 2
    first = folded.iloc[0]  # the widest first
    assert (first["problem"], first["server_port"], first["connections"]) == ("refused", 9090, 30)
    assert folded["count"].sum() == problems["count"].sum()

    env = {**os.environ, "COLUMNS": "120"}
    table = podcap("analyze", path, "-r", "tcp", env=env).stdout
    assert "tcp (2 rows)" in table and "repeated problems folded from 35 (--all-rows)" in table
    every = podcap("analyze", path, "-r", "tcp", "--all-rows", "--max-rows", "0", env=env).stdout
    assert "tcp (35 rows)" in every
    csv = podcap("analyze", path, "-r", "tcp", "-F", "csv").stdout
    assert len(csv.splitlines()) == 36  # files always carry every row
