"""``podcap diagnose --probe udp`` and ``--probe icmp`` end to end, as tests/test_diagnose_lab.py
runs the tcp and http probes: the real kubernetes client against the in-test API server, the
namespace lab as the nodes and Pods. A datagram or a ping is found in every capture by its
payload, and the verdict says where it stopped."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from testbed.helpers import podcap
from tests.diagnose_helpers import diagnose

pytestmark = pytest.mark.timeout(180)


def probe_row(out) -> pd.Series:
    path = pd.DataFrame(json.loads((out / "path.json").read_text())["path"])
    return path.iloc[0]


def test_a_datagram_that_is_answered_is_reachable(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    out = tmp_path / "udp"
    run = diagnose(
        kube_lab, node_pids, out, f"{server.name}:{server.marker_port}", "--probe", "udp"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(
        f"default/web-a0 -> default/web-b0:{server.marker_port}: REACHABLE (delivered)"
    )
    assert f"probe: udp to {server.ip}:{server.marker_port}, 'podcap-" in run.stderr
    assert "probe: answered" in run.stderr
    row = probe_row(out)
    assert row["protocol"] == "udp"
    assert row["seen_at"] == "pod default/web-a0 > node-a eth0 > node-b eth0 > pod default/web-b0"
    # The server got the datagram: the marker the probe sent, from the source Pod.
    marker = "podcap-" + run.stderr.split("'podcap-", 1)[1].split("'", 1)[0]
    got = [e for e in server.received("udp") if e["data"].startswith(marker)]
    assert len(got) == 1 and got[0]["peer_ip"] == lab.pods[0].ip


def test_a_closed_udp_port_is_refused_with_the_icmp_error(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    out = tmp_path / "closed"
    run = diagnose(kube_lab, node_pids, out, f"{server.name}:{server.closed_port}",
                   "--probe", "udp")  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (refused)" in run.stdout
    assert f"nothing listens on UDP port {server.closed_port} there" in run.stdout
    assert "probe: refused (ICMP unreachable" in run.stderr
    # The kernel's own word on it, from the drop watcher (on by default).
    said = run.stdout.split("The kernel says: ", 1)[1]
    assert said.startswith("NO_SOCKET in ") and "(pod default/web-b0): nothing listened" in said


def test_a_datagram_nobody_answers_still_arrived(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    silent = (
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.bind(('0.0.0.0',5353))\nprint('ready',flush=True)\nwhile True: s.recv(9999)\n"
    )
    listener = lab.popen(server, [sys.executable, "-c", silent], stdout=subprocess.PIPE)
    try:
        assert listener.stdout.readline().strip() == b"ready"
        run = diagnose(kube_lab, node_pids, tmp_path / "silent", f"{server.name}:5353",
                       "--probe", "udp", "--timeout", "1s")  # fmt: skip
    finally:
        listener.kill()
        listener.wait()
    assert run.returncode == 0, run.stderr
    assert "REACHABLE (arrived, not answered)" in run.stdout
    assert "reached pod default/web-b0, its destination, and nothing answered" in run.stdout


def test_pings_are_followed_and_need_no_port(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    out = tmp_path / "ping"
    run = diagnose(kube_lab, node_pids, out, server.name, "--probe", "icmp")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("default/web-a0 -> default/web-b0: REACHABLE (delivered)")
    assert f"probe: icmp: 3 pings to {server.ip}, payload " in run.stderr
    row = probe_row(out)
    assert (row["protocol"], row["client_port"], row["server_port"]) == ("icmp", None, None)
    assert "3 echo payloads" in row["evidence"]


def test_pings_dropped_between_the_nodes_are_placed(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    with lab.vpc_drop(node_b, dst=server.ip, proto="icmp"):
        run = diagnose(kube_lab, node_pids, tmp_path / "sg", server.name, "--probe", "icmp",
                       "--timeout", "1s")  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (unanswered)" in run.stdout
    assert "lost between: node-a eth0 -> node-b eth0" in run.stdout
    assert "The ping (ICMP echo request)" in run.stdout and "security group" in run.stdout
    # The nodes themselves still answer each other: the drop is for the Pod's address only.
    assert "nodes: node-b (172.20.0.12) answers node-a (ping: answered" in run.stdout


def test_probe_size_is_for_the_tcp_probe_only(kube_lab):
    _, server, _ = kube_lab
    run = podcap("diagnose", "web-a0", "web-b0", "--probe", "icmp", "--probe-size", "1400",
                 "--kubeconfig", str(server.kubeconfig_path))  # fmt: skip
    assert run.returncode == 2
    assert run.stderr == "podcap: error: --probe-size is for --probe tcp, not --probe icmp\n"


def test_a_workload_is_diagnosed_through_one_of_its_pods(kube_lab, node_pids, tmp_path):
    """deploy/web picks all the lab's Pods (app=web): as DST, one other than the source, on
    another node; as SRC, its first."""
    cluster, _, lab = kube_lab
    cluster.add_workload("Deployment", "default", "web", {"app": "web"})
    server = lab.pods[1]
    run = diagnose(kube_lab, node_pids, tmp_path / "deploy", f"deploy/web:{server.marker_port}")
    assert run.returncode == 0, run.stderr
    assert "deploy/web: 2 Pod(s), diagnosing web-b0 on node-b" in run.stderr
    assert run.stdout.startswith(
        f"default/web-a0 -> default/web-b0:{server.marker_port}: REACHABLE"
    )
    both = podcap("diagnose", "deploy/web", "deploy/web", "--dry-run", "--kubeconfig",
                  str(kube_lab[1].kubeconfig_path))  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert "# source: default/web-a0" in both.stdout and "web-b0" in both.stdout
