"""The shop cluster the Kubernetes tests start from, served by the in-test API server.

Nodes (one Windows), Pods (one Pending, one with a sidecar, one hostNetwork) and workloads;
``shop`` gives ``(cluster, kube)``, ``shop_server`` also the server (its kubeconfig). Also what
tests of captures through helpers share: waiting for the helpers' tcpdumps, reading a pcap.
"""

from __future__ import annotations

import dpkt
import pytest

from podcap import locate
from testbed import kube_api as K
from testbed.helpers import start_podcap, wait_for

CID = "containerd://" + "0123456789abcdef" * 4


def shop_cluster() -> K.Cluster:
    c = K.Cluster()
    c.add_namespace("podcap-system")
    c.add_node("node-a", "172.20.0.11", "10.244.0.0/24")
    c.add_node("node-b", "172.20.0.12", "10.244.1.0/24")
    c.add_node("win-1", "172.20.0.13", "10.244.2.0/24", os_name="windows")
    web = {"app": "web", "tier": "front"}
    c.add_pod(K.pod_object("shop", "web-0", "node-a", "172.20.0.11", "10.244.0.10", CID, web))
    c.add_pod(
        K.pod_object("shop", "web-1", "node-b", "172.20.0.12", "10.244.1.10", CID[:-1] + "1", web)
    )
    c.add_pod(
        K.pod_object("shop", "starting", "node-a", "172.20.0.11", None, None, phase="Pending")
    )
    c.add_pod(
        K.pod_object(
            "shop",
            "with-sidecar",
            "node-a",
            "172.20.0.11",
            "10.244.0.11",
            CID[:-1] + "2",
            containers=("app", "proxy"),
        )
    )
    c.add_pod(K.pod_object("shop", "iis", "win-1", "172.20.0.13", "10.244.2.5", CID[:-1] + "3"))
    c.add_pod(
        K.pod_object(
            "kube-system",
            "agent",
            "node-b",
            "172.20.0.12",
            "172.20.0.12",
            CID[:-1] + "4",
            {"app": "web"},
            host_network=True,
        )
    )
    c.add_workload("Deployment", "shop", "web", {"app": "web"})
    c.add_workload("StatefulSet", "shop", "db", {"app": "db"})
    return c


@pytest.fixture
def shop(make_kube_api):
    cluster = shop_cluster()
    server = make_kube_api(cluster)
    return cluster, locate.connect(str(server.kubeconfig_path))


@pytest.fixture
def shop_server(make_kube_api):
    cluster = shop_cluster()
    server = make_kube_api(cluster)
    return cluster, locate.connect(str(server.kubeconfig_path)), server


def names(resolution) -> list[str]:
    return sorted(f"{t.namespace}/{t.name}" for t in resolution.targets)


def pcap_packets(path) -> list[bytes]:
    with open(path, "rb") as f:
        return [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]


def wait_listening(cluster, n: int) -> None:
    """Until ``n`` tcpdumps started through exec listen (the server keeps each exec's stderr)."""

    def listening() -> int:
        return sum(b"listening on" in e.stderr for e in list(cluster.execs))

    assert wait_for(lambda: listening() >= n, 30), [bytes(e.stderr) for e in cluster.execs]


def capture_with_node_rules(
    kube_lab, target, out, *flags, tcpdumps: int, url: str, client, during=None
):
    """``podcap capture TARGET --node-rules ... -d 5`` while ``client`` fetches ``url`` once
    every tcpdump listens (then calls ``during``, if given); returns podcap's stderr."""
    cluster, server, lab = kube_lab
    stand_in = lab.popen(target.node, ["sleep", "120"])  # the lab node's "PID 1"
    podcap_run = start_podcap(
        "capture", target.name, "-n", target.namespace, "--kubeconfig", str(server.kubeconfig_path),
        "-f", "tcp port 80", "-d", "5", "-o", str(out), "--node-rules",
        "--node-pid", str(stand_in.pid), *flags, text=True,
    )  # fmt: skip
    try:
        wait_listening(cluster, tcpdumps)
        assert lab.curl(client, url).returncode == 0
        if during is not None:
            during()
        _, stderr = podcap_run.communicate(timeout=40)
    finally:
        podcap_run.kill()
    assert podcap_run.returncode == 0, stderr
    return stderr


def capture_while_fetching(kube_lab, target, client, uri: str, *flags, text: bool = True):
    """``podcap capture TARGET FLAGS`` through its helper while ``client`` fetches ``uri`` from
    it once tcpdump listens; ``(exit status, stdout, stderr)`` once podcap ends by itself."""
    cluster, server, lab = kube_lab
    run = start_podcap("capture", target.name, "-n", target.namespace, "--kubeconfig",
                       str(server.kubeconfig_path), *flags, text=text)  # fmt: skip
    try:
        wait_listening(cluster, 1)
        assert lab.curl(client, f"http://{target.ip}{uri}").returncode == 0
        stdout, stderr = run.communicate(timeout=40)
    finally:
        run.kill()
    return run.returncode, stdout, stderr
