"""The path report on the bundled samples (the SNAT scenario captured in the client Pod, on its
node's NIC and at the IDC peer) and on captures that share nothing."""

from __future__ import annotations

from pathlib import Path

from podcap.analysis.run import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
SNAT = [SAMPLES / f"10-snat-{p}.pcap" for p in ("peer", "node", "pod")]  # given backwards


def test_the_snat_samples_are_delivered_and_the_rewrite_is_placed_at_the_node():
    result = analyze([str(p) for p in SNAT], reports=["path", "hops"])
    path, hops = result["path"], result["hops"]
    assert path["outcome"].tolist() == ["delivered"] * 3
    assert path["seen_at"].unique().tolist() == ["pod default/web-a0 > node-a eth0 > peer idc"]
    assert path["lost_between"].isna().all()
    first = path.iloc[0]
    assert first["client_ip"] == "10.244.0.10" and first["server_ip"] == "198.51.100.10"
    assert first["rewrites"].startswith("source 10.244.0.10:38076 -> 172.20.0.11:16650 between "
                                        "pod default/web-a0 and node-a eth0")  # fmt: skip
    assert "ip-masq-agent" in first["explanation"]
    assert "SYN ISN" in first["evidence"]
    assert path.attrs["note"] == (
        "capture points, client's end first: pod default/web-a0 > node-a eth0 > peer idc "
        "(ordered by the connections they share: the TTL falls hop by hop, then time)"
    )
    one = hops[hops["connection"] == 1]
    assert one["client_ttl"].tolist() == [64, 63, 62]
    assert one["client"].tolist() == ["10.244.0.10:38076", "172.20.0.11:16650",
                                      "172.20.0.11:16650"]  # fmt: skip


def test_captures_that_share_no_connection_keep_the_order_given():
    files = [str(SAMPLES / "07-conn-refused.pcap"), str(SAMPLES / "01-http-mytest.pcap")]
    path = analyze(files, reports=["path"])["path"]
    assert path.attrs["note"].endswith(
        ": pod default/web-a0 > pod default/web-b0 (ordered as given: no connection was seen at "
        "two points)"
    )
    refused = path[path["server_port"] == 81].iloc[0]
    assert refused["outcome"] == "refused"
    assert path[path["server_port"] == 80]["outcome"].eq("delivered").all()


def test_an_unanswered_syn_with_no_point_beyond_says_where_it_was_last_seen():
    path = analyze([str(SAMPLES / "06-syn-dropped.pcap")], reports=["path"])["path"]
    row = path.iloc[0]
    assert row["outcome"] == "unanswered"
    assert row["lost_between"] is None or row["lost_between"] != row["lost_between"]  # NA
    assert "no capture point after" in row["explanation"]


def test_a_filter_keeps_the_connections_it_touches():
    path = analyze([str(p) for p in SNAT], reports=["path"], filter="tcp.port == 9000")["path"]
    assert path["server_port"].tolist() == [9000]
    assert path["connection"].tolist() == [3]


def test_a_connection_seen_only_from_its_servers_side_is_no_journey(tmp_path):
    """The server's packets alone at every point (the client's came before the captures, as
    a retransmitted SYN-ACK of an earlier connection does): nothing to follow, no error."""
    import subprocess

    files = []
    for point in ("pod", "node", "peer"):
        out = tmp_path / f"{point}.pcap"
        subprocess.run(["tshark", "-r", str(SAMPLES / f"10-snat-{point}.pcap"), "-Y",
                        "tcp.srcport == 80 || tcp.srcport == 9000", "-w", str(out)],
                       check=True, capture_output=True)  # fmt: skip
        files.append(str(out))
    whole = analyze([str(SAMPLES / f"10-snat-{p}.pcap") for p in ("pod", "node", "peer")],
                    reports=["path"])  # fmt: skip
    assert len(whole["path"]), "the samples' connections are journeys: the test would prove little"
    assert len(analyze(files, reports=["path", "flows"])["path"]) == 0
