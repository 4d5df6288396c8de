"""UDP conversations and pings in the path report, on real captures from the namespace lab: a
Pod on node-a sends datagrams and pings to a Pod on node-b and to the IDC host (masqueraded on
the way) while tcpdump captures at the client Pod, both nodes' NICs, the server Pod and the IDC
host. Between exchanges the lab breaks the path in one place at a time (a security group in
front of node-b for UDP, a FORWARD rule on node-b for ICMP, a closed UDP port). The report must
follow each exchange across the points by its payload alone (NAT rewrites the rest) and say
how it ended and where it stopped."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pandas as pd
import pytest

from podcap.sidecar import sidecar_document, sidecar_path, write_sidecar
from testbed.helpers import podcap

POINTS = ("pod-a", "node-a", "node-b", "pod-b", "idc")


def _sidecar(path: Path, point: dict, cluster: dict) -> None:
    write_sidecar(sidecar_path(str(path)), sidecar_document(cluster, point=point))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("datagrams")
    with Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True) as lab:
        client, server = lab.pods
        node_a, node_b = lab.nodes
        files = {name: out / f"{name}.pcap" for name in POINTS}
        targets = dict(zip(POINTS, (client, node_a, node_b, server, lab.idc), strict=True))
        captures = [lab.capture(targets[n], str(files[n]), "udp or icmp") for n in POINTS]
        outcomes = {}
        for capture in captures:
            capture.start()
        try:
            port = server.marker_port
            outcomes["udp"] = lab.send_udp(client, server.ip, port, b"podcap-udp-healthy")
            outcomes["closed"] = lab.send_udp(client, server.ip, server.closed_port, b"closed!!")
            outcomes["ping"] = lab.ping(client, server.ip)
            with lab.vpc_drop(node_b, dst=server.ip, dport=port, proto="udp"):
                outcomes["sg"] = lab.send_udp(client, server.ip, port, b"podcap-udp-sg", timeout=1)
            rule = ["FORWARD", "-d", server.ip, "-p", "icmp", "-j", "DROP"]
            lab.run(node_b, ["iptables", "-I", *rule], check=True)
            try:
                node_b_rules = lab.iptables_save(node_b)
                outcomes["ping_dropped"] = lab.ping(client, server.ip, count=1, timeout=1)
            finally:
                lab.run(node_b, ["iptables", "-D", *rule], check=True)
            outcomes["idc"] = lab.send_udp(client, lab.idc.ip, port, b"podcap-udp-to-idc")
            outcomes["idc_ping"] = lab.ping(client, lab.idc.ip, count=1)
        finally:
            for capture in captures:
                capture.stop()
        pod = {"kind": "pod", "node": "node-a", "namespace": "default", "pod": "web-a0"}
        _sidecar(files["pod-a"], pod, {"pod_ip": client.ip})
        _sidecar(files["pod-b"], pod | {"node": "node-b", "pod": "web-b0"}, {"pod_ip": server.ip})
        for name, node in (("node-a", node_a), ("node-b", node_b)):
            rules = {"node_rules": {"iptables-save": node_b_rules}} if node is node_b else {}
            _sidecar(files[name], {"kind": "node", "node": name, "interface": "eth0"},
                     {"node_ip": node.ip, "pod_cidrs": [node.pod_cidr], **rules})  # fmt: skip
        _sidecar(files["idc"], {"kind": "peer", "target": "idc"}, {})
        yield {"files": files, "outcomes": outcomes, "client": client, "server": server,
               "idc": lab.idc, "node_a": node_a}  # fmt: skip


def report(files: dict[str, Path], name: str) -> pd.DataFrame:
    given = list(files.values())
    random.Random(7).shuffle(given)  # the order comes from the packets, not the command line
    run = podcap("analyze", *given, "-r", name, "-F", "csv")
    assert run.returncode == 0, run.stderr
    return pd.read_csv(io.StringIO(run.stdout), keep_default_na=False)


def row(table: pd.DataFrame, protocol: str, server_ip: str, port=None, n: int = 0) -> pd.Series:
    chosen = table[(table["protocol"] == protocol) & (table["server_ip"] == server_ip)]
    if port is not None:
        chosen = chosen[chosen["server_port"].astype(str) == str(port)]  # "" for a ping
    return chosen.iloc[n]


def test_the_lab_broke_the_path_as_planned(scenario):
    outcomes = scenario["outcomes"]
    assert outcomes["udp"].stdout.startswith(b"ack 18 ")
    assert b"ConnectionRefused" in outcomes["closed"].stderr
    assert outcomes["ping"].returncode == 0 and outcomes["idc_ping"].returncode == 0
    assert b"timed out" in outcomes["sg"].stderr
    assert outcomes["ping_dropped"].returncode != 0
    assert outcomes["idc"].stdout.startswith(b"ack 17 ")


def test_each_exchange_says_how_it_ended_and_where_it_stopped(scenario):
    table = report(scenario["files"], "path")
    server = scenario["server"]
    healthy = row(table, "udp", server.ip, server.marker_port)
    assert (healthy["outcome"], healthy["lost_between"]) == ("delivered", "")
    assert (
        healthy["seen_at"] == "pod default/web-a0 > node-a eth0 > node-b eth0 > pod default/web-b0"
    )
    assert "datagram" in healthy["evidence"]

    closed = row(table, "udp", server.ip, server.closed_port)
    assert closed["outcome"] == "refused"
    assert "ICMP port unreachable at pod default/web-b0" in closed["explanation"]
    assert f"nothing listens on UDP port {server.closed_port}" in closed["explanation"]

    blocked = row(table, "udp", server.ip, server.marker_port, n=1)
    assert (blocked["outcome"], blocked["lost_between"]) == (
        "unanswered",
        "node-a eth0 -> node-b eth0",
    )
    assert "node-b's security group" in blocked["explanation"]

    ping = row(table, "icmp", server.ip)
    assert (ping["outcome"], ping["client_port"], ping["server_port"]) == ("delivered", "", "")
    dropped = row(table, "icmp", server.ip, n=1)
    assert dropped["outcome"] == "unanswered"
    assert dropped["lost_between"] == "node-b eth0 -> pod default/web-b0"
    assert f"-A FORWARD -d {server.ip}/32 -p icmp -j DROP" in dropped["explanation"]


def test_masqueraded_datagrams_and_pings_are_followed_by_their_payload(scenario):
    table = report(scenario["files"], "path")
    client, idc, node_a = scenario["client"], scenario["idc"], scenario["node_a"]
    for protocol in ("udp", "icmp"):
        found = row(table, protocol, idc.ip)
        assert found["client_ip"] == client.ip  # as the client sent it
        assert found["outcome"] == "delivered"
        assert found["seen_at"] == "pod default/web-a0 > node-a eth0 > peer idc"
        assert f"source {client.ip}" in found["rewrites"]
        assert f"-> {node_a.ip}" in found["rewrites"]
        assert "ip-masq-agent" in found["explanation"]


def test_the_ladder_shows_the_icmp_error_and_where_datagrams_stopped(scenario):
    ladder = report(scenario["files"], "ladder")
    path = report(scenario["files"], "path")
    server = scenario["server"]
    closed = row(path, "udp", server.ip, server.closed_port)["connection"]
    rows = ladder[ladder["connection"] == closed]
    assert rows["packet"].tolist() == ["client datagram 8 B", "server ICMP unreachable 36 B"]
    assert rows.iloc[1]["pod default/web-a0"].startswith("←")
    blocked = row(path, "udp", server.ip, server.marker_port, n=1)["connection"]
    sent = ladder[ladder["connection"] == blocked].iloc[0]
    assert sent["node-a eth0"].startswith("→") and sent["node-b eth0"] == "✗"
    assert sent["peer idc"] == ""  # not on its way: the IDC's capture is another host's
    ping = row(path, "icmp", server.ip)["connection"]
    assert ladder[ladder["connection"] == ping]["packet"].tolist() == [
        "client echo request 56 B", "server echo reply 56 B",
        "client echo request 56 B", "server echo reply 56 B",
    ]  # fmt: skip
