"""The path report on real captures from the namespace lab: one Pod on node-a talks to one on
node-b while tcpdump captures at the four points the guide names (the client Pod, node-a's NIC,
node-b's NIC, the server Pod), each with a sidecar saying where it was. Between connections
the lab breaks the path in one place at a time (a security group on node-b, a FORWARD drop on
node-a, the answer dropped on its way back, a closed port); the report must say for each
connection how it ended and between which two points its packets stopped, from the captures
alone, whatever order the files are given in."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from podcap.sidecar import sidecar_document, sidecar_path, write_sidecar
from testbed.helpers import podcap

POINTS = ("pod-a", "node-a", "node-b", "pod-b")


def _sidecar(path: Path, kind: str, node: str, pod=None, pod_ip=None, node_ip=None, cidr=None):
    point = {"kind": kind, "node": node, "interface": "eth0"}
    if pod is not None:
        point |= {"namespace": "default", "pod": pod}
    cluster = {"pod_ip": pod_ip} if pod_ip else {}
    if node_ip:
        cluster |= {"node_ip": node_ip, "pod_cidrs": [cidr]}
    write_sidecar(sidecar_path(str(path)), sidecar_document(cluster, point=point))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("path")
    with Lab(nodes=2, pods_per_node=1, overlay="routed") as lab:
        client, server = lab.pods
        node_a, node_b = lab.nodes
        files = {name: out / f"{name}.pcap" for name in POINTS}
        targets = {"pod-a": client, "node-a": node_a, "node-b": node_b, "pod-b": server}
        captures = [lab.capture(targets[n], str(files[n]), "tcp") for n in POINTS]
        outcomes = {}
        for capture in captures:
            capture.start()
        try:
            outcomes["healthy"] = lab.send_marker(client, server.ip, server.marker_port)
            outcomes["closed"] = lab.send_marker(client, server.ip, server.closed_port)
            with lab.vpc_drop(node_b, dst=server.ip, dport=server.http_port):
                outcomes["security_group"] = lab.curl(client, f"http://{server.ip}/sg", timeout=2)
            rule = lab.add_security_group_drop(node_b, dport=server.http_port)
            outcomes["node_b_filter"] = lab.curl(client, f"http://{server.ip}/in", timeout=2)
            lab.remove_security_group_drop(rule)
            forward = ["FORWARD", "-s", client.ip, "-p", "tcp", "--dport", "80", "-j", "DROP"]
            lab.run(node_a, ["iptables", "-I", *forward], check=True)
            try:
                outcomes["forward"] = lab.curl(client, f"http://{server.ip}/fw", timeout=2)
            finally:
                lab.run(node_a, ["iptables", "-D", *forward], check=True)
            back = ["FORWARD", "-i", node_a.nic, "-s", server.ip, "-p", "tcp", "--sport", "80",
                    "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP"]  # fmt: skip
            lab.run(node_a, ["iptables", "-I", *back], check=True)
            try:
                outcomes["reply"] = lab.curl(client, f"http://{server.ip}/back", timeout=2)
            finally:
                lab.run(node_a, ["iptables", "-D", *back], check=True)
        finally:
            for capture in captures:
                capture.stop()
        _sidecar(files["pod-a"], "pod", "node-a", "web-a0", client.ip)
        _sidecar(files["node-a"], "node", "node-a", node_ip=node_a.ip, cidr=node_a.pod_cidr)
        _sidecar(files["node-b"], "node", "node-b", node_ip=node_b.ip, cidr=node_b.pod_cidr)
        _sidecar(files["pod-b"], "pod", "node-b", "web-b0", server.ip)
        yield {"files": files, "outcomes": outcomes, "client": client, "server": server,
               "node_a": node_a, "node_b": node_b}  # fmt: skip


def path_table(files: list[Path], report: str = "path") -> pd.DataFrame:
    run = podcap("analyze", *files, "-r", report, "-F", "csv")
    assert run.returncode == 0, run.stderr
    return pd.read_csv(io.StringIO(run.stdout), keep_default_na=False)


def test_the_lab_broke_the_path_as_planned(scenario):
    outcomes = scenario["outcomes"]
    assert outcomes["healthy"].returncode == 0
    failed = ("closed", "security_group", "node_b_filter", "forward", "reply")
    assert all(outcomes[k].returncode != 0 for k in failed)


def test_each_connection_says_how_it_ended_and_where_it_stopped(scenario):
    files = scenario["files"]
    shuffled = [files["pod-b"], files["node-a"], files["pod-a"], files["node-b"]]
    table = path_table(shuffled)
    server = scenario["server"]
    assert (table["server_ip"] == server.ip).all()
    rows = table[["server_port", "outcome", "lost_between", "reply_lost_between"]]
    assert rows.values.tolist() == [
        [9000, "delivered", "", ""],
        [81, "refused", "", ""],
        [80, "unanswered", "node-a eth0 -> node-b eth0", ""],
        [80, "unanswered", "node-b eth0 -> pod default/web-b0", ""],
        [80, "unanswered", "pod default/web-a0 -> node-a eth0", ""],
        [80, "reply_lost", "", "node-a eth0 -> pod default/web-a0"],
    ]
    sg, node_b_filter, forward = table.iloc[2], table.iloc[3], table.iloc[4]
    # The cause the guide would check at that hop, with the facts from the sidecars.
    assert "security group" in sg["explanation"]
    node_a = scenario["node_a"]
    assert node_a.ip in sg["fix"] and node_a.pod_cidr in sg["fix"] and "into node-b" in sg["fix"]
    assert "FORWARD" in forward["explanation"] and "node-a dropped it" in forward["explanation"]
    assert "node-b dropped it between its NIC and the Pod" in node_b_filter["explanation"]
    assert "nothing listens on port 81" in table.iloc[1]["explanation"]
    assert "rp_filter" in table.iloc[5]["fix"]


def test_the_order_of_the_points_comes_from_the_packets(scenario):
    files = scenario["files"]
    run = podcap("analyze", files["node-b"], files["pod-a"], files["pod-b"], files["node-a"],
                 "-r", "path", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert run.returncode == 0, run.stderr
    order = "pod default/web-a0 > node-a eth0 > node-b eth0 > pod default/web-b0"
    assert order in " ".join(run.stdout.split())


def test_hops_show_each_point_and_what_it_saw(scenario):
    files = scenario["files"]
    hops = path_table(list(files.values()), "hops")
    sg = hops[hops["connection"] == 3]
    assert sg["point"].tolist() == ["pod default/web-a0", "node-a eth0", "node-b eth0",
                                     "pod default/web-b0"]  # fmt: skip
    assert sg["seen"].tolist() == [True, True, False, False]  # the VPC dropped it
    assert sg["client_ttl"].iloc[:2].tolist() == ["64", "63"]
    # A filter on node-b itself: its tcpdump sees the SYN arrive before iptables drops it.
    inside = hops[hops["connection"] == 4]
    assert inside["seen"].tolist() == [True, True, True, False]
    assert inside["client_ttl"].iloc[:3].tolist() == ["64", "63", "63"]


def test_a_node_clock_ahead_is_measured_not_taken_for_delay(scenario, tmp_path):
    """node-b's captures rewritten 5 s later (editcap -t 5), as if its clock ran ahead: the
    answer crossing node-a and node-b the other way tells the offset from the delay."""
    import shutil
    import subprocess

    files = {}
    for name, path in scenario["files"].items():
        files[name] = tmp_path / path.name
        shutil.copy(sidecar_path(str(path)), sidecar_path(str(files[name])))
        if name in ("node-b", "pod-b"):
            subprocess.run(["editcap", "-t", "5", str(path), str(files[name])], check=True)
        else:
            shutil.copy(path, files[name])
    hops = path_table(list(files.values()), "hops")
    healthy = hops[hops["connection"] == 1].set_index("point")
    across = healthy.loc["node-b eth0"]
    assert 4990 < float(across["since_previous_ms"]) < 5010  # what the two clocks say
    assert 4990 < float(across["clock_offset_ms"]) < 5010
    assert 0 <= float(across["one_way_ms"]) < 10  # the lab's wire: well under a millisecond
    inside = healthy.loc["pod default/web-b0"]  # node-b's NIC to its Pod: one clock
    assert float(inside["clock_offset_ms"]) == 0 and 0 <= float(inside["one_way_ms"]) < 10
    # Without an answer seen at both nodes the clocks cannot be told from the wire.
    sg_across = hops[hops["connection"] == 4].set_index("point").loc["node-b eth0"]
    assert sg_across["one_way_ms"] == "" and float(sg_across["since_previous_ms"]) > 4990
    row = path_table(list(files.values())).iloc[0]
    # The offset is measured, so it may read 4999.999 as well as 5000.001: compare numbers.
    said = re.search(r"node-a eth0 -> node-b eth0 ([0-9.]+) ms \(clock \+([0-9.]+) ms\)",
                     row["delays"])  # fmt: skip
    assert said, row["delays"]
    assert float(said.group(1)) < 10 and 4990 < float(said.group(2)) < 5010


def test_the_ladder_marks_where_each_packet_stopped(scenario):
    files = scenario["files"]
    ladder = path_table(list(files.values()), "ladder")
    points = ["pod default/web-a0", "node-a eth0", "node-b eth0", "pod default/web-b0"]
    assert list(ladder.columns) == ["connection", "packet", *points]
    sg = ladder[ladder["connection"] == 3]
    assert sg["packet"].iloc[0] == "client SYN"
    marks = sg[points].map(lambda cell: cell[0]).values.tolist()
    assert marks == [["→", "→", "✗", "✗"]] * len(sg)  # every SYN, retransmissions too
    assert len(sg) >= 2 and sg["packet"].iloc[1] == "client SYN (again, #2)"
    healthy = ladder[ladder["connection"] == 1]
    assert healthy[points].map(lambda cell: cell[0] in "→←").all().all()
    assert "server SYN, ACK" in healthy["packet"].tolist()
    reply = ladder[ladder["connection"] == 6]
    synack = reply[reply["packet"] == "server SYN, ACK"].iloc[0]
    assert [synack[p][0] for p in points] == ["✗", "←", "←", "←"]


def test_a_blocked_nodeport_says_the_range_to_allow(tmp_path):
    """The IDC host calls a NodePort on node-a; the VPC in front of node-a drops it."""
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True) as lab:
        pod, node = lab.pods[0], lab.nodes[0]
        lab.add_service("web", [pod], port=80, node_port=30080)
        files = {"idc": tmp_path / "idc.pcap", "node-a": tmp_path / "node-a.pcap"}
        captures = [lab.capture(lab.idc, str(files["idc"]), "tcp"),
                    lab.capture(node, str(files["node-a"]), "tcp")]  # fmt: skip
        for capture in captures:
            capture.start()
        try:
            with lab.vpc_drop(node, dst=node.ip, dport=30080):
                blocked = lab.curl(lab.idc, f"http://{node.ip}:30080/np", timeout=2)
        finally:
            for capture in captures:
                capture.stop()
    assert blocked.returncode != 0
    write_sidecar(sidecar_path(str(files["idc"])),
                  sidecar_document({}, point={"kind": "peer", "target": "idc"}))  # fmt: skip
    _sidecar(files["node-a"], "node", "node-a", node_ip=node.ip, cidr=node.pod_cidr)
    table = path_table([files["idc"], files["node-a"]])
    row = table.iloc[0]
    assert (row["outcome"], row["lost_between"]) == ("unanswered", "peer idc -> node-a eth0")
    assert "port 30080 is a NodePort" in row["explanation"]
    assert f"Allow tcp 30000-32767 from {lab.idc.ip} into node-a" in row["fix"]
