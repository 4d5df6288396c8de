"""Flows: stream splitting, orientation, Zeek states and history, compared with tshark."""

import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.decode import read_capture
from podcap.flows import assign_flows, flow_table
from tests.analyze_fixtures import ACK, FIN, PSH, RST, SYN, Capture, tshark_fields


@pytest.fixture(scope="module")
def mixed(mixed_pcap):
    result = analyze([mixed_pcap], reports=["flows", "packets"])
    return result["flows"].set_index("client_port"), result.analysis.all_packets


def streams_partition(frames_and_ids):
    groups = {}
    for frame, stream in frames_and_ids:
        groups.setdefault(stream, []).append(frame)
    return sorted(groups.values())


def test_tcp_flows_split_exactly_like_tcp_stream(mixed_pcap, mixed):
    _, packets = mixed
    oracle = [(int(f), s) for f, s in tshark_fields(mixed_pcap, "frame.number", "tcp.stream") if s]
    tcp = packets[packets["ip_proto"] == 6]
    ours = zip(tcp["frame"].astype(int), tcp["flow_id"], strict=True)
    assert streams_partition(ours) == streams_partition(oracle)
    assert len({s for _, s in oracle}) == 10  # including the reused 4-tuple, split in two


def test_port_reuse_gives_two_flows_with_their_own_requests(mixed):
    flows, _ = mixed
    reused = flows.loc[[40005]]
    assert len(reused) == 2
    assert list(reused["state"]) == ["SF", "SF"]
    assert reused["flow_id"].is_unique


@pytest.mark.parametrize(
    ("client_port", "state", "history"),
    [
        (40001, "SF", "ShADdFf"),  # handshake, request, response, both FINs
        (40002, "S0", "S"),  # SYN (sent three times), never answered
        (40003, "REJ", "Sr"),  # SYN answered by RST: connection refused
        (40004, "SF", "ShADTdFf"),  # a retransmitted request (T)
        (40006, "RSTR", "ShADar"),  # the server reset the established connection
        (40007, "SF", "ShADawFf"),  # the server advertised a zero window (w)
        (5353, "S0", "D"),  # UDP DNS query without an answer
    ],
)
def test_zeek_state_and_history(mixed, client_port, state, history):
    flows, _ = mixed
    row = flows.loc[client_port]
    assert (row["state"], row["history"]) == (state, history)


def test_orientation_comes_from_the_syn_or_the_service_port(mixed):
    flows, _ = mixed
    assert flows.loc[40001, "server_port"] == 80
    assert flows.loc[5353, "server_ip"] == "fd00::2"  # 53 < 5353: the service port
    assert flows.loc[5353, "server_port"] == 53


def test_retransmissions_and_zero_windows_agree_with_tshark(mixed_pcap, mixed):
    _, packets = mixed
    oracle_retrans = tshark_fields(
        mixed_pcap, "frame.number", display_filter="tcp.analysis.retransmission"
    )
    assert sorted(packets.loc[packets["retransmission"], "frame"]) == [
        int(r[0]) for r in oracle_retrans
    ]
    flows, _ = mixed
    assert flows.loc[40002, "retransmissions"] == 2  # the two repeated SYNs
    assert flows.loc[40004, "retransmissions"] == 1
    oracle_zero = tshark_fields(mixed_pcap, "tcp.stream", display_filter="tcp.analysis.zero_window")
    assert len(oracle_zero) == flows["zero_windows"].sum() == 1


def test_handshake_rtt_is_wiresharks_initial_rtt(mixed_pcap, mixed):
    flows, _ = mixed
    syns = tshark_fields(
        mixed_pcap,
        "tcp.stream",
        "tcp.srcport",
        display_filter="tcp.flags.syn == 1 && tcp.flags.ack == 0",
    )
    client_port = {stream: int(port) for stream, port in syns}
    rows = tshark_fields(
        mixed_pcap,
        "tcp.stream",
        "tcp.analysis.initial_rtt",
        display_filter="tcp.analysis.initial_rtt",
    )
    oracle = {client_port[stream]: float(rtt) * 1000 for stream, rtt in rows}
    # Wireshark also times SYN -> RST/ACK of the refused connection (port 40003); podcap's
    # handshake_rtt_ms is for completed handshakes only, so a refusal shows no RTT.
    assert oracle.pop(40003) == pytest.approx(0.999)
    assert pd.isna(flows.loc[40003, "handshake_rtt_ms"])
    assert len(oracle) == 7  # every completed handshake (the reused 4-tuple counted once here)
    for port, rtt_ms in oracle.items():
        assert flows.loc[[port], "handshake_rtt_ms"].iloc[-1] == pytest.approx(rtt_ms, abs=0.01)
    assert pd.isna(flows.loc[40002, "handshake_rtt_ms"])


def test_volumes_each_way_and_encap(mixed):
    flows, _ = mixed
    row = flows.loc[40001]
    assert (row["packets_c2s"], row["packets_s2c"]) == (6, 3)
    assert row["payload_c2s"] == len(b"GET /mytest HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\n\r\n")
    inner = flows.loc[40008]
    assert (inner["client_ip"], inner["server_ip"]) == ("10.244.1.5", "10.244.2.7")
    assert (inner["encap"], inner["outer_src"], inner["outer_dst"]) == (
        "vxlan", "192.168.0.1", "192.168.0.2",
    )  # fmt: skip


def test_reused_ports_without_a_close_split_on_a_new_isn(tmp_path):
    # The first connection never closes (the client crashed); a SYN with another ISN on
    # the same 4-tuple is still a new stream for Wireshark, and for podcap.
    cap = Capture()
    cap.session("10.1.0.1", "10.1.0.2", 41000, 80).handshake().c(PSH | ACK, b"x")
    cap.session("10.1.0.1", "10.1.0.2", 41000, 80, isn=777777).handshake().close()
    mid = cap.session("10.1.0.1", "10.1.0.2", 41001, 80)  # starts mid-connection
    mid.c(ACK).s(ACK).c(PSH | ACK, b"y").s(RST)
    path = cap.write(tmp_path / "reuse.pcap")
    table = flow_table(assign_flows(read_capture(path).packets))
    oracle = {s for (s,) in tshark_fields(path, "tcp.stream")}
    assert len(table) == len(oracle) == 3
    assert list(table["state"]) == ["S1", "SF", "OTH"]


def test_flow_table_is_usable_without_the_cli(mixed_pcap):
    packets = read_capture(mixed_pcap).packets
    table = flow_table(packets)
    assert len(table) == 11
    assert set(table.columns) >= {"flow_id", "state", "history", "retransmissions", "encap"}


def test_syn_fin_without_answer_is_sh_and_syn_rst_is_rstos0(tmp_path):
    cap = Capture()
    cap.session("10.2.0.1", "10.2.0.2", 42000, 80).c(SYN).c(FIN | ACK)
    cap.session("10.2.0.1", "10.2.0.2", 42001, 80).c(SYN).c(RST)
    path = cap.write(tmp_path / "half.pcap")
    table = flow_table(read_capture(path).packets)
    assert list(table["state"]) == ["SH", "RSTOS0"]
