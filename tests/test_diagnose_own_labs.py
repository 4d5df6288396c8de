"""``podcap diagnose`` in labs built for one case each (the shared lab has one Pod per node and
ip-masq-agent's defaults): a Service with an endpoint on the source's own node beside one on
another node (each node's NIC captured once, the connection beside the source not expected at
the NIC it never crosses), and a host outside the cluster in the NonMasqueradeCIDRs (the Pod's
address preserved, said so)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from testbed.helpers import podcap
from tests.diagnose_helpers import assert_offline_agrees, node_stand_ins

pytestmark = pytest.mark.timeout(180)


def test_an_endpoint_beside_the_source_shares_its_nodes_nic_capture(
    make_lab, make_kube_api, tmp_path
):
    from testbed.kube_api import cluster_from_lab, service_object

    lab = make_lab(nodes=2, pods_per_node=2, overlay="routed")
    source = lab.pod("web-a0")
    beside, elsewhere = lab.pod("web-a1"), lab.pod("web-b0")
    service = lab.add_service("web", [beside, elsewhere], port=8080, target_port=80)
    cluster = cluster_from_lab(lab)
    cluster.add_service(service_object(
        "default", "web", service.cluster_ip, [(8080, 80)], {"podcap-lab/endpoint": "yes"},
    ))  # fmt: skip
    for pod in (beside, elsewhere):  # the Service's selector picks these two
        cluster.pods[("default", pod.name)]["metadata"]["labels"]["podcap-lab/endpoint"] = "yes"
    server = make_kube_api(cluster)
    out = tmp_path / "svc"
    with node_stand_ins(lab) as pids:
        runs = [podcap("diagnose", source.name, "svc/web", "--kubeconfig",
                       str(server.kubeconfig_path), "--node-pid", pids, "-o", str(out / str(n)),
                       timeout=150) for n in range(2)]  # fmt: skip
    assert cluster.helper_pods() == []
    for n, run in enumerate(runs):
        assert run.returncode == 0, run.stderr
        assert "REACHABLE (delivered)" in run.stdout
        points = run.stderr.split("capturing at ", 1)[1].splitlines()[0]
        assert points.startswith("5 points: ") and points.count("node-a eth0") == 1, points
        bundle = out / str(n)
        assert len(list(bundle.glob("*.node.pcap"))) == 2  # node-a's NIC once, node-b's once
        assert_offline_agrees(bundle)
    # kube-proxy picks an endpoint at random; either way the probe is followed to it, and
    # the way to the endpoint beside the source does not go through the NIC.
    ways = {
        beside.ip: f"pod default/{source.name} > pod default/{beside.name}",
        elsewhere.ip: f"pod default/{source.name} > node-a eth0 > node-b eth0 > "
        f"pod default/{elsewhere.name}",
    }
    for n in range(2):
        hops = pd.read_csv(out / str(n) / "hops.csv")
        probe = hops[hops["connection"] == 1]
        endpoint = probe["server"].dropna().iloc[-1].rsplit(":", 1)[0]
        path = pd.DataFrame(json.loads((out / str(n) / "path.json").read_text())["path"])
        assert path.iloc[0]["seen_at"] == ways[endpoint]


def test_a_host_in_the_non_masquerade_cidrs_sees_the_pod_address(make_lab, make_kube_api, tmp_path):
    from testbed.kube_api import cluster_from_lab
    from testbed.lab.core import CLUSTER_CIDR, IDC_CIDR, VPC_CIDR

    lab = make_lab(nodes=2, pods_per_node=1, overlay="routed", idc=True,
                   masq_non_masquerade=[VPC_CIDR, CLUSTER_CIDR, IDC_CIDR])  # fmt: skip
    cluster = cluster_from_lab(lab)
    server = make_kube_api(cluster)
    client, idc = lab.pods[0], lab.idc
    out = tmp_path / "kept"
    with node_stand_ins(lab) as pids:
        run = podcap("diagnose", client.name, f"{idc.ip}:{idc.marker_port}", "--kubeconfig",
                     str(server.kubeconfig_path), "--node-pid", pids, "-o", str(out),
                     timeout=150)  # fmt: skip
    assert cluster.helper_pods() == []
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"default/web-a0 -> {idc.ip}:{idc.marker_port}: REACHABLE")
    assert "Rewritten" not in run.stdout  # the source left the node as the Pod's own
    assert "source seen outside: preserved:" in run.stdout
    assert IDC_CIDR in run.stdout  # the NonMasqueradeCIDR that keeps it
    assert idc.received("marker")[-1]["peer_ip"] == client.ip
    assert_offline_agrees(out)
