"""The tcp problems report: one row per problem, each with a hint in the guide's words."""

import pytest

from podcap.analysis.run import analyze


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
