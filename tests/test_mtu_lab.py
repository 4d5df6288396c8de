"""A path MTU black hole made for real in the namespace lab: node-b's NIC carries 1000 bytes
and node-b drops the ICMP "fragmentation needed" it would send back, so a Pod on node-b
answers a curl of a large response with full-size segments that never arrive. The tcp report
must name it from the server Pod's capture."""

from __future__ import annotations

import pytest

from podcap.analysis.run import analyze
from tests.analyze_fixtures import tshark_fields

NO_FRAG_NEEDED = ["OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"]


@pytest.fixture(scope="module")
def hole(tmp_path_factory):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("mtu")
    pcap, told = out / "server-pod.pcap", out / "server-pod-told.pcap"
    with Lab(nodes=2, pods_per_node=1, overlay="routed") as lab:
        client, server = lab.pods
        node_b = lab.nodes[1]
        lab.run(node_b, ["ip", "link", "set", node_b.nic, "mtu", "1000"], check=True)
        bpf = f"tcp port {server.http_port} or icmp"
        lab.run(node_b, ["iptables", "-I", *NO_FRAG_NEEDED], check=True)
        with lab.capture(server, str(pcap), bpf):
            small = lab.curl(client, f"http://{server.ip}/small")
            large = lab.curl(client, f"http://{server.ip}/large?size=30000", timeout=3)
        # The same with the ICMP let through: the server learns the path MTU and gets there.
        lab.run(node_b, ["iptables", "-D", *NO_FRAG_NEEDED], check=True)
        lab.run(server, ["ip", "route", "flush", "cache"])
        with lab.capture(server, str(told), bpf):
            answered = lab.curl(client, f"http://{server.ip}/large?size=30001", timeout=5)
    return {"pcap": pcap, "told": told, "small": small, "large": large, "answered": answered,
            "server": server.ip, "node_b": node_b.ip}  # fmt: skip


def test_small_answers_pass_and_the_large_one_hangs(hole):
    assert hole["small"].returncode == 0
    assert hole["large"].returncode != 0  # curl gave up: the body never came


def test_the_tcp_report_names_the_black_hole(hole):
    problems = analyze([hole["pcap"]], reports=["tcp"])["tcp"]
    found = problems[problems["problem"] == "mtu_blackhole"]
    assert len(found) == 1
    row = found.iloc[0]
    assert row["count"] >= 2
    assert f"from the server {hole['server']}" in row["hint"]
    assert "no ICMP 'fragmentation needed'" in row["hint"]  # the node dropped them
    # The headers, as tshark reads them: each side's MSS, and DF on the lost segments.
    mss = tshark_fields(hole["pcap"], "ip.src", "tcp.options.mss_val",
                        display_filter="tcp.flags.syn == 1")  # fmt: skip
    announced = {"client" if ip != hole["server"] else "server": int(v) for ip, v in mss}
    assert f"MSS announced: client {announced['client']}, server {announced['server']}" in (
        row["hint"])  # fmt: skip
    lost = tshark_fields(hole["pcap"], "ip.flags.df", "ip.len",
                         display_filter="tcp.analysis.retransmission && tcp.len > 900")  # fmt: skip
    assert {df for df, _ in lost} == {"1"} or {df for df, _ in lost} == {"True"}
    assert f"the lost segments are {lost[0][1]}-byte IP packets with DF set" in row["hint"]


def test_with_the_icmp_let_through_the_icmp_report_says_the_mtu(hole):
    assert hole["answered"].returncode == 0
    assert len(hole["answered"].stdout) == 30001
    errors = analyze([hole["told"]], reports=["icmp"])["icmp"]
    needed = errors[errors["error"] == "unreachable"]
    assert set(needed["code"]) == {4} and set(needed["next_hop_mtu"]) == {1000}
    assert set(needed["quoted_src"]) == {hole["server"]} and needed["flow_id"].notna().all()
    assert "must fit in 1000 bytes" in needed["explanation"].iloc[0]
    oracle = tshark_fields(hole["told"], "icmp.mtu", display_filter="icmp.type == 3")
    assert [int(r[0]) for r in oracle] == needed["next_hop_mtu"].tolist()
    problems = analyze([hole["told"]], reports=["tcp"])["tcp"]
    assert "mtu_blackhole" not in set(problems["problem"])
