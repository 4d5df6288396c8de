"""Path MTU black holes in the tcp report (``podcap.flows.mtu``), on captures written here:
a response whose full-size segments are sent again and again and never acknowledged, beside
connections that lose and recover segments in ordinary ways."""

import pytest

from podcap.analysis.run import analyze
from tests.analyze_fixtures import ACK, PSH, RST, Capture, tshark_fields, vxlan_frame

REQUEST = b"GET /big HTTP/1.1\r\nHost: web\r\n\r\n"


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    cap = Capture()
    # The black hole: 300-byte segments pass, every 1448-byte one is lost, sent 4 times.
    hole = cap.session("10.244.1.5", "10.244.2.7", 41000, 80).handshake()
    hole.c(PSH | ACK, REQUEST).s(PSH | ACK, b"h" * 300).c(ACK)
    lost_at = hole.sseq
    for gap in (0.001, 0.2, 0.4, 0.8):
        hole.s(ACK, b"x" * 1448, seq=lost_at, gap=gap)
    hole.c(RST)
    # An ordinary loss: a 1448-byte segment sent twice, then acknowledged.
    fine = cap.session("10.244.1.5", "10.244.2.7", 41001, 80).handshake()
    fine.c(PSH | ACK, REQUEST).s(PSH | ACK, b"h" * 300).c(ACK)
    again = fine.sseq
    fine.s(ACK, b"y" * 1448, seq=again).s(ACK, b"y" * 1448, seq=again, gap=0.2)
    fine.sseq = again + 1448
    fine.c(ACK).close()
    # Lost small segments are no MTU problem: a 100-byte one never acknowledged.
    small = cap.session("10.244.1.5", "10.244.2.7", 41002, 80).handshake()
    small.c(PSH | ACK, REQUEST).s(PSH | ACK, b"h" * 300).c(ACK)
    stuck = small.sseq
    small.s(PSH | ACK, b"z" * 100, seq=stuck).s(PSH | ACK, b"z" * 100, seq=stuck, gap=0.2)
    return cap.write(tmp_path_factory.mktemp("mtu") / "black-hole.pcap")


@pytest.fixture(scope="module")
def problems(capture):
    return analyze([capture], reports=["tcp"])["tcp"]


def test_the_black_hole_is_named_with_its_sizes_and_the_fix(problems):
    hole = problems[problems["problem"] == "mtu_blackhole"]
    assert hole["client_port"].tolist() == [41000]
    row = hole.iloc[0]
    assert row["count"] == 4
    assert "1448 bytes from the server 10.244.2.7" in row["hint"]
    assert "at most 300 bytes" in row["hint"] and "MTU" in row["hint"]


def test_ordinary_losses_are_not_black_holes(problems):
    assert set(problems.loc[problems["client_port"] != 41000, "problem"]) <= {
        "retransmissions", "reset_by_client", "unanswered_syn"}  # fmt: skip


def test_the_lost_segments_are_tsharks_retransmissions(capture):
    # What the verdict counts is what tshark flags: the three sendings after the first.
    rows = tshark_fields(capture, "tcp.srcport", "tcp.dstport", "tcp.len",
                         display_filter="tcp.analysis.retransmission && tcp.dstport == 41000")  # fmt: skip
    assert [int(r[2]) for r in rows] == [1448, 1448, 1448]


def _black_hole(cap: Capture) -> None:
    hole = cap.session("10.244.1.5", "10.244.2.7", 41000, 80, isn=7000).handshake()
    hole.c(PSH | ACK, REQUEST).s(PSH | ACK, b"h" * 300).c(ACK)
    lost_at = hole.sseq
    for gap in (0.001, 0.2, 0.4):
        hole.s(ACK, b"x" * 1448, seq=lost_at, gap=gap)


def test_the_overlay_another_point_saw_is_named(tmp_path):
    # The server Pod's capture sees bare packets; its node's NIC, the same ones in VXLAN.
    pod, node = Capture(), Capture()
    _black_hole(pod)
    _black_hole(node)
    node.frames[:] = [(ts, vxlan_frame("172.20.0.12", "172.20.0.11", f)) for ts, f in node.frames]
    pod_file, node_file = pod.write(tmp_path / "pod.pcap"), node.write(tmp_path / "node.pcap")
    for files in ([node_file], [pod_file, node_file]):
        problems = analyze(files, reports=["tcp"])["tcp"]
        hints = problems.loc[problems["problem"] == "mtu_blackhole", "hint"].tolist()
        assert len(hints) == len(files)
        for hint in hints:
            assert "1488-byte IP packets" in hint and "without DF" in hint
            assert "travel in vxlan, 50 bytes more per packet" in hint and "1450" in hint
    alone = analyze([pod_file], reports=["tcp"])["tcp"]
    assert "travel in" not in alone.loc[alone["problem"] == "mtu_blackhole", "hint"].iloc[0]
