"""podcap.render.plots: the tables behind the plots against ground truth (the samples' truth
files, tshark), and each plot drawn for real by Agg with what it must show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podcap.analysis.run import analyze
from podcap.render import plots
from tests.analyze_fixtures import tshark_fields

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"
SNAT_SET = [SAMPLES / f"10-snat-{point}.pcap" for point in ("peer", "pod", "node")]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sample(name: str) -> Path:
    return SAMPLES / name


def sample_truth(name: str) -> dict:
    """The sample's ground truth (sample_pcaps/NAME.truth.json)."""
    return json.loads((SAMPLES / name).with_suffix(".truth.json").read_text())["ground_truth"]


def tick_texts(axis) -> list[str]:
    return [tick.get_text() for tick in axis.get_ticklabels()]


@pytest.mark.parametrize(
    "name",
    ["01-http-mytest.pcap", "02-lbtest-marker.pcap", "05-vxlan-node-nic.pcap", "10-snat-peer.pcap"],
)
def test_rtt_samples_equal_tsharks_ack_rtt(name):
    result = analyze([sample(name)])
    ours = sorted(plots.rtt_samples(plots.packets_of(result))["rtt_ms"].round(3))
    rows = tshark_fields(
        sample(name), "tcp.analysis.ack_rtt", display_filter="tcp.analysis.ack_rtt"
    )
    theirs = sorted(round(float(row[0]) * 1000, 3) for row in rows)
    assert len(ours) > 5
    assert ours == theirs


def test_retransmitted_syns_give_no_rtt_and_are_coloured_as_retransmissions():
    result = analyze([sample("06-syn-dropped.pcap")], reports=["flows"])
    packets = plots.packets_of(result)
    assert list(plots.packet_events(packets)) == ["SYN", "retransmission", "retransmission",
                                                  "retransmission"]  # fmt: skip
    assert plots.rtt_samples(packets).empty


def test_unanswered_syns_lists_the_dropped_connection_with_its_syn_count():
    result = analyze(
        [sample("06-syn-dropped.pcap"), sample("01-http-mytest.pcap")], reports=["flows"]
    )
    table = plots.unanswered_syns(result["flows"])
    truth = sample_truth("06-syn-dropped.pcap")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.client_ip, row.server_ip) == (truth["client_ip"], truth["server_ip"])
    assert row.syns_sent == 4  # the SYN and three retries: 1 s, 2 s, 4 s


def test_top_talkers_counts_every_byte_of_both_ends():
    result = analyze([sample("01-http-mytest.pcap")], reports=["flows"])
    talkers = plots.top_talkers(result["flows"]).set_index("address")
    total = int(plots.packets_of(result)["length"].sum())
    truth = sample_truth("01-http-mytest.pcap")
    # Every flow in this capture is between the same two Pods: each saw every byte.
    assert set(talkers.index) == {truth["client_ip"], truth["server_ip"]}
    assert (talkers["bytes_total"] == total).all()
    client = talkers.loc[truth["client_ip"]]
    server = talkers.loc[truth["server_ip"]]
    assert client.bytes_sent == server.bytes_received > 0
    assert talkers["flows"].tolist() == [3, 3]


def test_tcp_health_counts_zero_windows_resets_and_retransmissions_as_tshark(mixed_pcap):
    result = analyze([mixed_pcap])
    health = plots.tcp_health(plots.packets_of(result), bin_seconds=0.5)
    zero = tshark_fields(mixed_pcap, "frame.number", display_filter="tcp.analysis.zero_window")
    resets = tshark_fields(mixed_pcap, "frame.number", display_filter="tcp.flags.reset == 1")
    assert health["zero_windows"].sum() == len(zero) == 1
    assert health["resets"].sum() == len(resets)
    assert health["retransmissions"].sum() == plots.packets_of(result)["retransmission"].sum() > 0


def test_capture_points_orders_pod_node_peer_and_shows_where_the_marker_was():
    result = analyze(SNAT_SET, filter='tcp contains "lbtest"')
    points = plots.capture_points(result)
    assert points["point"].tolist() == ["pod", "node", "peer"]
    assert points["matched"].tolist() == [1, 1, 1]
    assert points["first_match_ts"].is_monotonic_increasing

    missing = analyze(
        [sample("01-http-mytest.pcap"), sample("06-syn-dropped.pcap")],
        filter='http.request.uri == "/mytest"',
    )
    seen = plots.capture_points(missing).set_index("file")["matched"]
    assert seen[str(sample("01-http-mytest.pcap"))] == 1
    assert seen[str(sample("06-syn-dropped.pcap"))] == 0


def test_snat_hops_show_the_rewrite_between_pod_and_node():
    hops = plots.snat_hops(analyze(SNAT_SET))
    truth = sample_truth("10-snat-pod.pcap")["snat"]
    expected = {
        f"{c['pod_ip']}:{c['pod_port']}": f"{c['wire_ip']}:{c['wire_port']}"
        for c in truth["connections"]
    }
    by_connection = {n: group.sort_values("hop") for n, group in hops.groupby("connection")}
    assert len(by_connection) == 3
    for group in by_connection.values():
        assert group["point"].tolist() == ["pod", "node", "peer"]
        assert group["source_rewritten"].tolist() == [False, True, False]
        pod_source, node_source, peer_source = group["source"]
        assert node_source == peer_source
        if pod_source in expected:  # the HTTP connections; the third carried the marker
            assert node_source == expected[pod_source]
        else:
            assert node_source == f"{truth['wire_ip']}:{truth['marker_wire_port']}"


def test_snat_hops_reuse_the_connections_the_snat_report_matched():
    result = analyze(SNAT_SET, reports=["snat"])
    matched = result.analysis.__dict__.get("tcp_connections")
    assert matched is not None and len(matched) == len(result["snat"]) == 3
    # Matching again would find all three; the plot table must show the report's matches, so
    # when only one is left in them, it shows one (and the same source the report saw).
    result.analysis.tcp_connections = matched[:1]
    hops = plots.snat_hops(result)
    assert hops["connection"].unique().tolist() == [0]
    sources = set(hops["source"])
    assert f"{matched[0].original.client_ip}:{matched[0].original.client_port}" in sources


def test_packet_timeline_draws_one_row_per_flow_and_marks_failed_ones():
    result = analyze(
        [
            sample("01-http-mytest.pcap"),
            sample("06-syn-dropped.pcap"),
            sample("07-conn-refused.pcap"),
        ],
        reports=["flows"],
    )
    figure = plots.packet_timeline(plots.packets_of(result), result["flows"])
    axes = figure.axes[0]
    labels = {tick.get_text(): tick.get_color() for tick in axes.get_yticklabels()}
    assert len(labels) == len(result["flows"]) == 5
    dropped = next(text for text in labels if text.startswith("06-syn-dropped"))
    refused = next(text for text in labels if text.startswith("07-conn-refused"))
    assert labels[dropped] == "#d62728" and labels[refused] == "#ff7f0e"
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert {"SYN", "retransmission", "RST", "data"} <= set(legend)
    dots = sum(len(collection.get_offsets()) for collection in axes.collections)
    assert dots == len(plots.packets_of(result))
    assert figure._repr_png_().startswith(PNG_MAGIC)


def test_every_plot_renders_to_png_with_its_labels():
    result = analyze(SNAT_SET, reports=["flows", "snat"])
    flows, snat = result["flows"], result["snat"]
    talkers = plots.plot_top_talkers(plots.top_talkers(flows))
    assert "172.20.0.11" in tick_texts(talkers.axes[0].yaxis)
    hops = plots.plot_snat_hops(plots.snat_hops(result))
    texts = [t.get_text() for t in hops.axes[0].texts]
    assert "172.20.0.11:16650" in texts and "10.244.0.10:38076" in texts
    clock = plots.plot_clock_offsets(snat.attrs["clock_offsets"])
    assert len(clock.axes[0].patches) == 2
    points = plots.plot_capture_points(plots.capture_points(result))
    health = plots.plot_tcp_health(plots.packets_of(result), bin_seconds=0.05)
    assert len(health.axes) == 3
    for figure in (talkers, hops, clock, points, health):
        assert plots.figure_png(figure).startswith(PNG_MAGIC)
