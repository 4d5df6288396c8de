"""A path MTU black hole made for real in the namespace lab: node-b's NIC carries 1000 bytes
and node-b drops the ICMP "fragmentation needed" it would send back, so a Pod on node-b
answers a curl of a large response with full-size segments that never arrive. The tcp report
must name it from the server Pod's capture."""

from __future__ import annotations

import pytest

from podcap.analysis.run import analyze

NO_FRAG_NEEDED = ["OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"]


@pytest.fixture(scope="module")
def hole(tmp_path_factory):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    pcap = tmp_path_factory.mktemp("mtu") / "server-pod.pcap"
    with Lab(nodes=2, pods_per_node=1, overlay="routed") as lab:
        client, server = lab.pods
        node_b = lab.nodes[1]
        lab.run(node_b, ["ip", "link", "set", node_b.nic, "mtu", "1000"], check=True)
        lab.run(node_b, ["iptables", "-I", *NO_FRAG_NEEDED], check=True)
        with lab.capture(server, str(pcap), f"tcp port {server.http_port}"):
            small = lab.curl(client, f"http://{server.ip}/small")
            large = lab.curl(client, f"http://{server.ip}/large?size=30000", timeout=3)
    return {"pcap": pcap, "small": small, "large": large, "server": server.ip}


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
