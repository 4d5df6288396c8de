"""`tcpdump -i any` on a node sees each forwarded packet once per interface it crosses.

08-any-sll2.pcap (a real lab capture, Linux cooked v2) holds one HTTP exchange seen on the
client Pod's veth, the bridge and the node NIC: 12 packets, 36 records. The copies must not
count as retransmissions, must stay in the packets report with the frame they copy, and the
summary must say how many there were.
"""

from pathlib import Path

import pandas as pd
import pytest

from podcap.analysis.run import analyze

SAMPLE = Path(__file__).resolve().parent.parent / "sample_pcaps" / "08-any-sll2.pcap"


@pytest.fixture(scope="module")
def result():
    return analyze([SAMPLE], reports=["summary", "packets", "flows", "tcp", "http"])


def test_copies_are_not_retransmissions(result):
    assert result["flows"]["retransmissions"].sum() == 0
    assert "T" not in result["flows"]["history"].iloc[0].upper()
    assert result["tcp"].empty
    assert result["summary"]["retransmitted_packets"].iloc[0] == 0


def test_summary_counts_the_copies(result):
    assert result["summary"]["interface_copies"].iloc[0] == 24
    assert result["summary"]["packets"].iloc[0] == 36


def test_packets_report_names_the_interface_and_the_original(result):
    packets = result["packets"].set_index("frame")
    # The client's SYN: first on ifindex 4 (the Pod's veth), then 3 and 2, copies of frame 1.
    assert packets.loc[[1, 2, 3], "if_index"].tolist() == [4, 3, 2]
    # An original copies nothing: NA in the report (the packet table's -1 stays inside podcap).
    assert packets.loc[[1, 2, 3], "dup_of_frame"].tolist() == [pd.NA, 1, 1]
    originals = packets[packets["dup_of_frame"].isna()]
    assert len(originals) == 12
    # Each copy repeats its original's addresses and flags on another interface.
    copies = packets[packets["dup_of_frame"].notna()]
    origin = packets.loc[copies["dup_of_frame"]]
    for column in ("src", "dst", "sport", "dport", "tcp_flags", "payload_len"):
        assert (copies[column].to_numpy() == origin[column].to_numpy()).all(), column
    assert (copies["if_index"].to_numpy() != origin["if_index"].to_numpy()).all()


def test_the_request_counts_once(result):
    assert len(result["http"]) == 1
    assert result["http"]["status"].iloc[0] == 200


def test_a_real_retransmission_on_one_interface_still_counts(result):
    # Drop the copies' interface difference: the same packets on one interface, 1 s apart,
    # are retransmissions again.
    from podcap.flows import assign_flows

    packets = result.analysis.all_packets.drop(
        columns=["flow_id", "c2s", "retransmission", "dup_of_frame"]
    )
    late = packets.assign(if_index=4, ts=packets["ts"] + pd.Series(range(len(packets))) * 1.0)
    again = assign_flows(late)
    assert (again["dup_of_frame"] < 0).all()
    # Two late copies each of the SYN, SYN-ACK, request, two response segments and two FINs.
    assert again["retransmission"].sum() == 14
