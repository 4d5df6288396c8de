"""SNAT and DNAT found in real captures from the namespace lab.

A Pod on node-a talks to the IDC host (not in NonMasqueradeCIDRs: ip-masq-agent masquerades it
with --random-fully) and to the Pod on node-b (in the list: kept), through a ClusterIP Service,
and the IDC host reaches a NodePort on node-a (the lab's kube-proxy-shaped rules). tcpdump
captures in the client Pod, on node-a's NIC and at both peers at once; the report must find every
rewrite from the captures alone, and name the rule and the fix when given the node's rules.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from podcap.decode import read_capture
from podcap.snat.facts import facts_from_flags
from podcap.snat.inputs import SnatInputs, snat_inputs
from podcap.snat.masq_config import parse_masq_config
from podcap.snat.report import snat_table
from testbed.helpers import podcap, start_podcap

CLUSTER_IP, SERVICE_PORT, NODE_PORT = "10.96.0.10", 80, 30080
MASQ_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: ip-masq-agent-config, namespace: kube-system}
data:
  config: |
    NonMasqueradeCIDRs: [10.244.0.0/16, 172.20.0.0/24]
    MasqLinkLocal: false
"""


# ---------------------------------------------------------------- reading the captures


def read_packets(paths: list[Path]) -> pd.DataFrame:
    """The packet table of several captures, with a ``file`` column (podcap's decoder)."""
    tables = [read_capture(path).packets.assign(file=path.name) for path in paths]
    return pd.concat(tables, ignore_index=True)


class PodcapCapture:
    """``podcap capture --via local --container-id ...`` in the background, started and stopped
    like the lab's tcpdump captures."""

    PROBE_PORT = 9  # UDP discard: probe datagrams show the capture is live; not in the report

    def __init__(self, lab, pod, path: Path):
        self.lab, self.pod, self.path = lab, pod, path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> None:
        argv = ["capture", "--via", "local", "-q", "--container-id", self.pod.container_id]
        argv += ["-i", "eth0", "-o", str(self.path), "-f", f"tcp or udp port {self.PROBE_PORT}"]
        self.proc = start_podcap(*argv, stdout=subprocess.DEVNULL, start_new_session=True)
        # podcap writes the pcap header before tcpdump listens; probe until a packet lands.
        probe = (
            "import socket,sys; socket.socket(2,2).sendto(b'probe',(sys.argv[1],int(sys.argv[2])))"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            self.lab.run(
                self.pod.node, [sys.executable, "-c", probe, self.pod.ip, str(self.PROBE_PORT)]
            )
            time.sleep(0.2)
            if self.path.exists() and self.path.stat().st_size > 24:
                return
        self.stop()
        raise AssertionError(f"podcap capture did not start: {self.proc.stderr.read().decode()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        time.sleep(0.3)  # let the last packets reach the file
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        assert self.proc.returncode == 0, self.proc.stderr.read().decode()


# ---------------------------------------------------------------- the lab scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Run the traffic once under four simultaneous captures; give the files and ground truth."""
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    config = parse_masq_config(MASQ_CONFIGMAP, "configmap.yaml")
    lab_config = {"nonMasqueradeCIDRs": [str(c) for c in config.non_masquerade_cidrs]}
    out = tmp_path_factory.mktemp("snat")
    with Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True, masq_config=lab_config) as lab:
        client, peer, node = lab.pods[0], lab.pods[1], lab.nodes[0]
        service = lab.add_service("web", [peer], port=SERVICE_PORT, node_port=NODE_PORT)
        assert service.cluster_ip == CLUSTER_IP
        files = {
            "pod": out / "pod-a.pcap",
            "node": out / "node-a-eth0.pcap",
            "peer": out / "pod-b.pcap",
            "idc": out / "idc.pcap",
        }
        targets = {"node": node, "peer": peer, "idc": lab.idc}
        captures = [lab.capture(targets[k], str(files[k]), "tcp") for k in targets]
        try:
            # The client Pod is captured the way a user would: podcap capture, found by its
            # container ID; the other points with tcpdump directly.
            captures.append(PodcapCapture(lab, client, files["pod"]))
            for capture in captures:
                capture.start()
            masq = lab.send_marker(client, lab.idc.ip, lab.idc.marker_port, b"lbtest-idc")
            kept = lab.send_marker(client, peer.ip, peer.marker_port, b"lbtest-pod")
            cluster_ip = lab.curl(client, f"http://{CLUSTER_IP}:{SERVICE_PORT}/via-clusterip")
            node_port = lab.curl(lab.idc, f"http://{node.ip}:{NODE_PORT}/via-nodeport")
        finally:
            for capture in captures:
                capture.stop()
        assert masq.returncode == 0 and kept.returncode == 0, (masq.stderr, kept.stderr)
        assert cluster_ip.returncode == 0 and node_port.returncode == 0
        yield {
            "files": files,
            "client": client.ip,
            "peer": peer.ip,
            "node_ip": node.ip,
            "idc": lab.idc.ip,
            "idc_seen": lab.idc.received("marker"),
            "peer_seen": peer.received(),
            "iptables": lab.iptables_save(node, "nat"),
            "lab": lab,
        }


def _rows(table: pd.DataFrame, **where) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for column, value in where.items():
        mask &= table[column] == value
    return table[mask]


def _one(table: pd.DataFrame, **where) -> pd.Series:
    rows = _rows(table, **where)
    assert len(rows) == 1, f"{where}: {len(rows)} rows in\n{table.to_string()}"
    return rows.iloc[0]


def test_captures_alone_find_snat_preserved_and_dnat(scenario):
    files = scenario["files"]
    table = snat_table(read_packets(list(files.values())))
    client, node_ip, idc, peer = (
        scenario["client"],
        scenario["node_ip"],
        scenario["idc"],
        scenario["peer"],
    )

    to_idc = _one(table, client_ip=client, server_ip=idc)
    assert to_idc.verdict == "snat"
    assert (to_idc.original_src, to_idc.observed_src) == (client, node_ip)
    # --random-fully: the port the IDC saw comes from the rewrite, as its server log confirms.
    assert to_idc.observed_sport == scenario["idc_seen"][0]["peer_port"]
    assert scenario["idc_seen"][0]["peer_ip"] == node_ip
    assert to_idc.captures == "pod-a.pcap -> node-a-eth0.pcap -> idc.pcap"
    assert "between pod-a.pcap and node-a-eth0.pcap" in to_idc.rewritten_by
    assert "SYN ISN" in to_idc.evidence and "TSval" in to_idc.evidence
    assert (
        "edit configmap ip-masq-agent-config" in to_idc.fix
    )  # the guide's fix, even without rules

    to_pod = _one(table, client_ip=client, server_ip=peer, server_port=9000)
    assert to_pod.verdict == "preserved" and to_pod.observed_src == client and to_pod.fix == ""
    assert to_pod.captures.endswith("pod-b.pcap") and to_pod.dnat == ""

    via_service = _one(table, client_ip=client, server_ip=CLUSTER_IP)
    assert via_service.verdict == "preserved"
    assert via_service.dnat == f"{CLUSTER_IP}:{SERVICE_PORT} -> {peer}:80"
    assert via_service.observed_dst == peer

    node_port = _one(table, client_ip=idc, server_port=NODE_PORT)
    assert node_port.verdict == "snat" and node_port.observed_src == node_ip
    assert node_port.dnat == f"{node_ip}:{NODE_PORT} -> {peer}:80"
    assert "NodePort" in node_port.explanation and "externalTrafficPolicy: Local" in node_port.fix
    # node-a's NIC saw the NodePort connection twice (in from the IDC, out to node-b): one row.
    assert node_port.captures == "idc.pcap -> node-a-eth0.pcap -> node-a-eth0.pcap -> pod-b.pcap"
    backend_seen = [e for e in scenario["peer_seen"] if e.get("path") == "/via-nodeport"]
    assert backend_seen[0]["peer_ip"] == node_ip == node_port.observed_src
    assert len(table) == 4


def test_rules_name_the_masquerading_rule_and_the_cidrs_checked(scenario, tmp_path):
    iptables_file = tmp_path / "node-a.iptables"
    iptables_file.write_text(scenario["iptables"])
    configmap_file = tmp_path / "configmap.yaml"
    configmap_file.write_text(MASQ_CONFIGMAP)
    inputs = snat_inputs(
        pod_cidrs=["10.244.0.0/16"],
        node_ips=[scenario["node_ip"]],
        service_cidrs=["10.96.0.0/16"],
        masq_config=str(configmap_file),
        iptables=str(iptables_file),
    )
    files = scenario["files"]
    table = snat_table(read_packets([files["pod"], files["idc"], files["peer"]]), inputs)
    idc = scenario["idc"]

    to_idc = _one(table, server_ip=idc)
    assert to_idc.verdict == "snat"
    assert to_idc.rewritten_by.startswith(
        f"ip-masq-agent: chain IP-MASQ-AGENT -j MASQUERADE at {iptables_file}:"
    )
    assert "-j MASQUERADE --random-fully" in to_idc.evidence  # the whole rule line
    assert f"node {scenario['node_ip']}" in to_idc.rewritten_by
    assert f"{idc} is not in NonMasqueradeCIDRs (169.254.0.0/16, 10.244.0.0/16, 172.20.0.0/24)" in (
        to_idc.explanation
    )
    assert to_idc.fix == (
        f"To let the peer see Pod IPs, add {idc}'s CIDR to NonMasqueradeCIDRs: "
        "kubectl -n kube-system edit configmap ip-masq-agent-config"
    )
    to_pod = _one(table, server_ip=scenario["peer"], server_port=9000)
    assert to_pod.verdict == "preserved"
    assert (
        f"{scenario['peer']} matches" in to_pod.explanation
        and "10.244.0.0/16" in to_pod.explanation
    )
    via_service = _one(table, server_ip=CLUSTER_IP)
    assert via_service.explanation.count("Service ClusterIP 10.96.0.10:80 was DNATed") == 1


def test_the_configmap_alone_explains_and_predicts_from_the_pod_capture(scenario):
    inputs = SnatInputs(
        facts=facts_from_flags(["10.244.0.0/16"], [scenario["node_ip"]]),
        masq=parse_masq_config(MASQ_CONFIGMAP, "configmap.yaml"),
        capture_pods={"pod-a.pcap": scenario["client"]},
    )
    table = snat_table(read_packets([scenario["files"]["pod"]]), inputs)
    to_idc = _one(table, server_ip=scenario["idc"])
    # Captured in the client Pod only: the verdict is a prediction from the ConfigMap, and says so.
    assert to_idc.verdict == "snat" and to_idc.explanation.startswith(
        "Predicted from the node's rules"
    )
    assert "NonMasqueradeCIDRs (10.244.0.0/16, 172.20.0.0/24)" in to_idc.explanation
    assert "ip-masq-agent-config" in to_idc.fix
    to_pod = _one(table, server_ip=scenario["peer"], server_port=9000)
    assert (
        to_pod.verdict == "preserved"
        and "is in NonMasqueradeCIDRs (10.244.0.0/16)" in to_pod.explanation
    )


def test_one_capture_without_facts_is_unknown_and_facts_decide_it(scenario):
    idc_only = read_packets([scenario["files"]["idc"]])
    bare = snat_table(idc_only)
    assert set(bare.verdict) == {"unknown"} and len(bare) == 2
    assert bare.iloc[0].evidence.startswith("single capture; no facts place")

    facts = facts_from_flags(["10.244.0.0/16"], [scenario["node_ip"]])
    decided = snat_table(idc_only, SnatInputs(facts=facts))
    to_idc = _one(decided, client_ip=scenario["node_ip"], server_ip=scenario["idc"])
    assert to_idc.verdict == "snat" and scenario["node_ip"] in to_idc.rewritten_by


def test_captures_of_unrelated_traffic_give_unknown(scenario):
    files = scenario["files"]
    packets = read_packets([files["pod"], files["idc"]])
    # Keep only the Pod-to-Pod connection from the Pod capture: nothing in idc.pcap matches it.
    unrelated = packets[
        (packets.file == "idc.pcap")
        | (packets.dst == scenario["peer"])
        | (packets.src == scenario["peer"])
    ]
    table = snat_table(unrelated)
    assert set(table.verdict) == {"unknown"}
    assert all("seen in one capture only" in e for e in table.evidence)
    assert (table.captures.str.count("->") == 0).all()


def test_the_cli_takes_the_flags_and_prints_the_report(scenario, tmp_path):
    iptables_file = tmp_path / "node-a.iptables"
    iptables_file.write_text(scenario["iptables"])
    files = scenario["files"]
    argv = ["analyze", files["pod"], files["idc"], "-r", "snat", "--format", "json"]
    argv += ["--node-ip", scenario["node_ip"]]
    argv += ["--pod-cidr", "10.244.0.0/16", "--iptables", str(iptables_file)]
    done = podcap(*argv)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["snat"]
    to_idc = next(r for r in rows if r["server_ip"] == scenario["idc"])
    assert to_idc["verdict"] == "snat" and to_idc["observed_src"] == scenario["node_ip"]
    assert to_idc["rewritten_by"].startswith("ip-masq-agent: chain IP-MASQ-AGENT")
    bad = podcap("analyze", files["pod"], files["idc"], "-r", "snat", "--node-ip", "node-a")
    assert bad.returncode == 2 and bad.stderr.startswith("podcap: error: --node-ip: 'node-a'")


def test_a_filter_on_one_side_still_matches_across_captures(scenario):
    from podcap.analysis.run import analyze  # noqa: PLC0415

    files = scenario["files"]
    result = analyze(
        [str(files["pod"]), str(files["idc"])],
        filter=f"ip.addr == {scenario['node_ip']} && tcp.port == 9000",
        reports=["snat", "dnat"],
    )
    table = result["snat"]
    # The filter selects packets in idc.pcap only (the node IP never shows in pod-a.pcap), yet
    # the connection is matched in pod-a.pcap by its keys and the Pod's address is known.
    assert list(table.server_ip) == [scenario["idc"]]
    assert table.iloc[0].verdict == "snat" and table.iloc[0].original_src == scenario["client"]
    assert result["dnat"].empty


def test_overlay_captures_use_the_inner_addresses(tmp_path):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    if lab_unavailable():
        pytest.skip(lab_unavailable())
    with Lab(nodes=2, pods_per_node=1, overlay="vxlan") as lab:
        client, peer, node = lab.pods[0], lab.pods[1], lab.nodes[0]
        paths = [tmp_path / "pod-a.pcap", tmp_path / "node-a-vxlan.pcap", tmp_path / "pod-b.pcap"]
        captures = [
            lab.capture(client, str(paths[0]), "tcp"),
            lab.capture(node, str(paths[1]), "udp port 8472"),
            lab.capture(peer, str(paths[2]), "tcp"),
        ]
        try:
            for capture in captures:
                capture.start()
            sent = lab.send_marker(client, peer.ip, peer.marker_port, b"lbtest-vxlan")
        finally:
            for capture in captures:
                capture.stop()
        assert sent.returncode == 0, sent.stderr
        packets = read_packets(paths)
        on_nic = packets[packets.file == "node-a-vxlan.pcap"]
        assert (on_nic.outer_src == node.ip).any()  # the NIC only shows node IPs outside
        table = snat_table(
            packets, SnatInputs(facts=facts_from_flags(["10.244.0.0/16"], [node.ip]))
        )
    row = _one(table, server_ip=peer.ip)
    assert row.verdict == "preserved" and row.observed_src == client.ip
    assert row.captures == "pod-a.pcap -> node-a-vxlan.pcap -> pod-b.pcap"
    assert len(table) == 1


def test_applying_the_fix_lets_the_idc_see_the_pod_ip(scenario, tmp_path):
    """Do what the fix says (add the IDC's CIDR), rewrite the agent's chain, capture again."""
    lab = scenario["lab"]
    client, node = lab.pods[0], lab.nodes[0]
    fixed_text = MASQ_CONFIGMAP.replace("172.20.0.0/24]", "172.20.0.0/24, 198.51.100.0/24]")
    fixed = parse_masq_config(fixed_text, "fixed.yaml")
    # Restoring the chain flushes and refills it, as the agent does on resync.
    lab.run(
        node, ["iptables-restore", "--noflush"], input=fixed.iptables_rules(jump=False), check=True
    )
    paths = [tmp_path / "pod-a-fixed.pcap", tmp_path / "idc-fixed.pcap"]
    captures = [
        lab.capture(client, str(paths[0]), "tcp"),
        lab.capture(lab.idc, str(paths[1]), "tcp"),
    ]
    try:
        for capture in captures:
            capture.start()
        sent = lab.send_marker(client, lab.idc.ip, lab.idc.marker_port, b"lbtest-fixed")
    finally:
        for capture in captures:
            capture.stop()
    assert sent.returncode == 0, sent.stderr
    iptables_file = tmp_path / "node-a.iptables"
    iptables_file.write_text(lab.iptables_save(node, "nat"))
    inputs = snat_inputs(iptables=str(iptables_file), node_ips=[node.ip])
    row = _one(snat_table(read_packets(paths), inputs), server_ip=lab.idc.ip)
    assert row.verdict == "preserved" and row.observed_src == client.ip
    assert "198.51.100.0/24" in row.explanation and row.fix == ""
    assert lab.idc.received("marker")[-1]["peer_ip"] == client.ip
