"""``podcap diagnose`` end to end: the real kubernetes client against the in-test API server
(testbed.kube_api: Pods and nodes shaped like a cluster's, helper Pods whose exec runs here),
the namespace lab as the nodes and Pods, real tcpdump, nsenter and curl. The lab breaks the
path; diagnose must find where, from its own captures, and leave no helper behind."""

from __future__ import annotations

import json
import re
import signal
import time

import pandas as pd
import pytest

from testbed.helpers import podcap, start_podcap, wait_for
from tests.diagnose_helpers import diagnose, node_stand_ins

pytestmark = pytest.mark.timeout(180)


def test_a_healthy_path_is_reachable_with_the_evidence(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    out = tmp_path / "bundle"
    run = diagnose(kube_lab, node_pids, out, f"{server.name}:{server.marker_port}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(
        f"default/web-a0 -> default/web-b0:{server.marker_port}: REACHABLE (delivered)"
    )
    assert "podcap: capturing at 4 points: pod default/web-a0, node-a eth0, node-b eth0, pod " \
           "default/web-b0" in run.stderr  # fmt: skip
    assert "probe: answered" in run.stderr
    path = pd.DataFrame(json.loads((out / "path.json").read_text())["path"])
    probe = path[path["outcome"] == "delivered"].iloc[0]
    assert probe["seen_at"] == "pod default/web-a0 > node-a eth0 > node-b eth0 > pod default/web-b0"
    assert (out / "diagnose.pcapng").stat().st_size > 0
    assert (out / "summary.txt").read_text() == run.stdout
    assert "<h2>Path (1)</h2>" in (out / "index.html").read_text()
    assert "IP-MASQ-AGENT" in (out / "node-a.iptables-save.txt").read_text()
    assert "nodes: node-b (172.20.0.12) answers node-a (ping: answered, tcp 10250: refused)" \
        in run.stdout  # fmt: skip
    assert len(list(out.glob("*.pcap"))) == 4 and len(list(out.glob("*.pcap.json"))) == 4


def test_a_closed_port_is_refused_by_the_pod(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:{server.closed_port}")
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (refused)" in run.stdout
    # What the Pod listens on, from ss in its namespace during the diagnosis.
    assert f"nothing listens on port {server.closed_port} there (it listens on 80, 9000)" \
        in run.stdout  # fmt: skip


def test_a_security_group_drop_is_placed_between_the_nodes(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    with lab.vpc_drop(node_b, dst=server.ip, dport=server.http_port):
        run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:{server.http_port}",
                       "--timeout", "2s")  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (unanswered)" in run.stdout
    assert "lost between: node-a eth0 -> node-b eth0" in run.stdout
    assert "security group" in run.stdout and lab.nodes[0].pod_cidr in run.stdout


def test_a_forward_drop_on_the_source_node_is_named_with_its_rule(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    client, server, node_a = lab.pods[0], lab.pods[1], lab.nodes[0]
    rule = ["FORWARD", "-s", client.ip, "-p", "tcp", "--dport", "80", "-j", "DROP"]
    lab.run(node_a, ["iptables", "-I", *rule], check=True)
    try:
        run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:80", "--timeout", "2s")
    finally:
        lab.run(node_a, ["iptables", "-D", *rule], check=True)
    assert run.returncode == 1, run.stderr
    assert "lost between: pod default/web-a0 -> node-a eth0" in run.stdout
    assert f"-A FORWARD -s {client.ip}/32 -p tcp -m tcp --dport 80 -j DROP" in run.stdout
    assert "On node-a: remove or narrow that rule" in run.stdout


def test_a_service_is_followed_through_its_dnat_to_the_endpoint(kube_lab, node_pids, tmp_path):
    from testbed.kube_api import service_object

    cluster, _, lab = kube_lab
    server = lab.pods[1]
    service = lab.add_service("web", [server], port=8080, target_port=server.http_port)
    cluster.add_service(service_object(
        "default", "web", service.cluster_ip, [(8080, server.http_port)],
        {"app": "web", "podcap-lab/node": server.node.name},
    ))  # fmt: skip
    out = tmp_path / "svc"
    run = diagnose(kube_lab, node_pids, out, "svc/web")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(
        f"default/web-a0 -> svc default/web ({service.cluster_ip}:8080): REACHABLE (delivered)"
    )
    assert f"destination {service.cluster_ip}:8080 -> {server.ip}:80 between pod " \
        "default/web-a0 and node-a eth0" in run.stdout  # fmt: skip
    assert "kube-proxy DNAT" in run.stdout
    hops = pd.read_csv(out / "hops.csv")
    probe = hops[hops["connection"] == hops["connection"].min()]
    assert probe["server"].tolist() == [f"{service.cluster_ip}:8080", f"{server.ip}:80",
                                        f"{server.ip}:80", f"{server.ip}:80"]  # fmt: skip


def test_an_mtu_black_hole_is_named_with_the_sizes(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    # node-b's NIC takes 1400 bytes while everything before it sends 1500: larger frames are
    # dropped as they arrive, and no ICMP says why.
    lab.run(node_b, ["ip", "link", "set", "eth0", "mtu", "1400"], check=True)
    try:
        run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:{server.marker_port}",
                       "--probe-size", "1400", "--timeout", "3s")  # fmt: skip
    finally:
        lab.run(node_b, ["ip", "link", "set", "eth0", "mtu", "1500"], check=True)
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (partial)" in run.stdout
    assert "lost between: node-a eth0 -> node-b eth0" in run.stdout
    assert "segments of up to 16 bytes of data got through" in run.stdout
    # The padding's last bytes ride in its segment or in one of their own, as curl reads them.
    lost = re.search(r"1 segment of (\d+) bytes or more left node-a eth0 and never reached "
                     "node-b eth0", run.stdout)  # fmt: skip
    assert lost and 1400 <= int(lost.group(1)) <= 1402, run.stdout
    assert "MTU black hole" in run.stdout and "clamp-mss-to-pmtu" in run.stdout


def test_the_port_comes_from_the_pod_and_dry_run_creates_nothing(kube_lab, node_pids, tmp_path):
    cluster, server, lab = kube_lab
    run = podcap("diagnose", "web-a0", "web-b0", "--dry-run", "--kubeconfig",
                 str(server.kubeconfig_path))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (
        "# destination: default/web-b0 10.244.1.10 on node-b (172.20.0.12), port 80" in run.stdout
    )
    assert "# capture points: pod default/web-a0, node-a eth0, node-b eth0, pod default/web-b0" \
        in run.stdout  # fmt: skip
    assert run.stdout.count("kind: Pod") == 2
    assert not [r for r in cluster.requests if r[0] not in ("GET",)]


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch", "web-b0"], "nosuch"),
        (["web-a0", "web-a0"], "the same Pod"),
        (["web-a0", "web-b0:99999"], "must be a number from 1 to 65535"),
    ],
)
def test_what_cannot_be_diagnosed_is_one_line_exit_2(kube_lab, args, message):
    cluster, server, _ = kube_lab
    run = podcap("diagnose", *args, "--kubeconfig", str(server.kubeconfig_path))
    assert run.returncode == 2
    assert run.stderr.startswith("podcap: ") and message in run.stderr
    assert "Traceback" not in run.stderr
    assert cluster.helper_pods() == []


def test_the_python_api_gives_the_path_and_the_evidence(kube_lab, node_pids, tmp_path):
    import podcap

    cluster, server, lab = kube_lab
    steps: list[str] = []
    found = podcap.diagnose(
        "web-a0", "web-b0:81", kubeconfig=str(server.kubeconfig_path), output_dir=tmp_path,
        node_pid=node_pids, on_step=steps.append,
    )  # fmt: skip
    assert found.reachable is False and found.exit_status == 1
    assert found.probe_row["outcome"] == "refused"
    assert list(found.path.columns[:7]) == ["connection", "protocol", "client_ip", "client_port",
                                            "server_ip", "server_port", "outcome"]  # fmt: skip
    assert [f.name for f in found.files] == ["default_web-a0.pcap", "default_web-a0.node.pcap",
                                             "default_web-b0.node.pcap", "default_web-b0.pcap"]  # fmt: skip
    assert any(step.startswith("probe: tcp from port") for step in steps)
    assert cluster.helper_pods() == []


def test_a_reply_dropped_on_its_way_back_is_placed(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_a = lab.pods[1], lab.nodes[0]
    back = ["FORWARD", "-i", node_a.nic, "-s", server.ip, "-p", "tcp", "--sport", "80",
            "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP"]  # fmt: skip
    lab.run(node_a, ["iptables", "-I", *back], check=True)
    try:
        run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:80", "--timeout", "2s")
    finally:
        lab.run(node_a, ["iptables", "-D", *back], check=True)
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (reply_lost)" in run.stdout
    assert "answer lost between: node-a eth0 -> pod default/web-a0" in run.stdout
    assert "rp_filter" in run.stdout


def test_a_filter_on_the_destination_node_is_named_with_its_rule(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    rule = lab.add_security_group_drop(node_b, dport=server.http_port)
    try:
        run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{server.name}:80", "--timeout", "2s")
    finally:
        lab.remove_security_group_drop(rule)
    assert run.returncode == 1, run.stderr
    assert "lost between: node-b eth0 -> pod default/web-b0" in run.stdout
    assert "-A FORWARD -i eth0 -p tcp -m tcp --dport 80" in run.stdout


def test_a_pod_on_a_windows_node_is_refused_before_any_helper(make_kube_api):
    from testbed.kube_api import Cluster, pod_object

    cluster = Cluster()
    cluster.add_namespace("podcap-system")
    cluster.add_node("node-a", "172.20.0.11", "10.244.0.0/24")
    cluster.add_node("win-1", "172.20.0.21", "10.244.5.0/24", os_name="windows")
    cluster.add_pod(pod_object("default", "web-a0", "node-a", "172.20.0.11", "10.244.0.10",
                               "containerd://" + "a" * 64))  # fmt: skip
    cluster.add_pod(pod_object("default", "iis-0", "win-1", "172.20.0.21", "10.244.5.10",
                               "containerd://" + "b" * 64))  # fmt: skip
    server = make_kube_api(cluster)
    run = podcap("diagnose", "web-a0", "iis-0:80", "--kubeconfig", str(server.kubeconfig_path))
    assert run.returncode == 2
    assert "runs on Windows node win-1: podcap captures on Linux nodes only" in run.stderr
    assert len([line for line in run.stderr.splitlines() if "error" in line]) == 1
    assert cluster.helper_pods() == [] and not [r for r in cluster.requests if r[0] != "GET"]


def test_a_host_outside_the_cluster_shows_the_masquerade(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    idc, node_a, client = lab.idc, lab.nodes[0], lab.pods[0]
    run = diagnose(kube_lab, node_pids, tmp_path / "b", f"{idc.ip}:{idc.marker_port}")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"default/web-a0 -> {idc.ip}:{idc.marker_port}: REACHABLE")
    assert "capturing at 2 points: pod default/web-a0, node-a eth0" in run.stderr
    assert f"source {client.ip}:" in run.stdout and f"-> {node_a.ip}:" in run.stdout
    # The guide's question, answered in the same run: the IDC saw the node's address.
    assert "source seen outside: snat:" in run.stdout and "NonMasqueradeCIDRs" in run.stdout
    assert "snat fix:" in run.stdout


def test_an_address_needs_its_port(kube_lab):
    _, server, _ = kube_lab
    run = podcap("diagnose", "web-a0", "198.51.100.10", "--kubeconfig",
                 str(server.kubeconfig_path))  # fmt: skip
    assert run.returncode == 2
    assert "give the port: 198.51.100.10:PORT" in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_captures_and_the_answer_comes_from_them(
    kube_lab, node_pids, tmp_path, signum
):
    """--probe none: your own traffic for --duration; Ctrl-C (or SIGTERM) ends the captures
    early and cleanly, and the diagnosis is made from what they hold."""
    cluster, server, lab = kube_lab
    client, target = lab.pods
    out = tmp_path / "own"
    run = start_podcap(
        "diagnose", client.name, f"{target.name}:{target.marker_port}", "--probe", "none",
        "-d", "60s", "--kubeconfig", str(server.kubeconfig_path), "--node-pid", node_pids,
        "-o", str(out), text=True,
    )  # fmt: skip
    try:
        listening = lambda: sum(b"listening on" in e.stderr for e in list(cluster.execs))  # noqa: E731
        assert wait_for(lambda: listening() >= 4, 30)
        assert lab.send_marker(client, target.ip, target.marker_port).returncode == 0
        time.sleep(0.5)
        started = time.monotonic()
        run.send_signal(signum)
        stdout, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    assert time.monotonic() - started < 30  # not the 60 s asked for
    assert "REACHABLE (delivered)" in stdout
    assert cluster.helper_pods() == []


def test_a_healthy_path_across_vxlan_is_followed_inside_the_tunnel(
    make_lab, make_kube_api, tmp_path
):
    from testbed.kube_api import cluster_from_lab

    lab = make_lab(nodes=2, pods_per_node=1, overlay="vxlan")
    cluster = cluster_from_lab(lab)
    server = make_kube_api(cluster)
    out = tmp_path / "vxlan"
    with node_stand_ins(lab) as pids:
        run = podcap("diagnose", "web-a0", "web-b0:9000", "--kubeconfig",
                     str(server.kubeconfig_path), "--node-pid", pids, "-o", str(out),
                     timeout=150)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "REACHABLE (delivered)" in run.stdout
    assert cluster.helper_pods() == []
    hops = pd.read_csv(out / "hops.csv")
    probe = hops[hops["connection"] == hops["connection"].min()]
    assert probe["seen"].tolist() == [True] * 4
    flows = podcap("analyze", out / "default_web-a0.node.pcap", "-r", "flows", "-F", "csv")
    assert "vxlan" in flows.stdout  # the NIC saw it inside the tunnel, between the nodes
