"""One set of counts: on every sample capture the summary, the flows report, the tcp report, the
html page and tshark give the same numbers for the same things."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from podcap.analysis.run import analyze
from podcap.render import render
from testbed.helpers import tshark_fields

SAMPLES = sorted(
    p for p in (Path(__file__).resolve().parent.parent / "sample_pcaps").iterdir()
    if p.suffix in (".pcap", ".pcapng")
)  # fmt: skip
VXLAN = ["-d", "udp.port==8472,vxlan"]
RETRANSMITTED = (
    "tcp.analysis.retransmission || tcp.analysis.fast_retransmission"
    " || tcp.analysis.spurious_retransmission"
)
CARD = re.compile(r"data-key=['\"]([^'\"]+)['\"]><div class=['\"]number['\"]>(\d+)</div>")


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_summary_flows_tcp_html_and_tshark_agree(sample, tmp_path):
    result = analyze([sample], reports=["summary", "flows", "tcp"], page=True)
    summary = result["summary"].iloc[0]
    tcp_flows = result["flows"][result["flows"]["proto"] == "tcp"]
    problems = result["tcp"]["problem"].value_counts()

    # Connections, by state, as the flows report and the tcp report's rows give them.
    states = tcp_flows["state"].value_counts()
    assert (
        summary["unanswered_connections"]
        == states.get("S0", 0)
        == problems.get("unanswered_syn", 0)
    )
    assert summary["refused_connections"] == states.get("REJ", 0) == problems.get("refused", 0)
    resets = problems.get("reset_by_server", 0) + problems.get("reset_by_client", 0)
    assert summary["reset_connections"] == states.get("RSTR", 0) + states.get("RSTO", 0) == resets
    # Packets, as the flows report sums them and as tshark marks them.
    assert summary["retransmitted_packets"] == tcp_flows["retransmissions"].sum()
    assert summary["connections_with_retransmissions"] == (tcp_flows["retransmissions"] > 0).sum()
    assert summary["zero_window_packets"] == tcp_flows["zero_windows"].sum()
    zero = tshark_fields(
        sample, "frame.number", display_filter="tcp.analysis.zero_window", extra=VXLAN
    )
    assert summary["zero_window_packets"] == len(zero)
    retransmitted = tshark_fields(sample, "frame.number", display_filter=RETRANSMITTED, extra=VXLAN)
    packets = result.analysis.all_packets
    copies = set(packets.loc[packets["dup_of_frame"] >= 0, "frame"])
    # tcpdump -i any: tshark calls an interface's copy of a segment a retransmission, podcap
    # counts it once, as a copy (summary's interface_copies); every other mark is the same.
    assert summary["retransmitted_packets"] == len({int(f) for (f,) in retransmitted} - copies)
    assert summary["interface_copies"] == len(copies)

    # The html page's cards show the summary's numbers.
    (page,) = render(result, "html", str(tmp_path / "page.html"))
    cards = {key: int(value) for key, value in CARD.findall(page.read_text())}
    for key in ("unanswered_connections", "refused_connections", "reset_connections",
                "retransmitted_packets", "zero_window_packets"):  # fmt: skip
        assert cards[key] == summary[key], key


def test_sample_06s_retransmitted_syns_are_counted_everywhere():
    # The finding that made the counts one set: the summary said 0, flows and tshark 3.
    sample = next(p for p in SAMPLES if p.name.startswith("06-"))
    summary = analyze([sample])["summary"].iloc[0]
    assert (summary["retransmitted_packets"], summary["unanswered_connections"]) == (3, 1)
