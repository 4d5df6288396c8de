"""podcap.locate against the in-test API server, through the real kubernetes client."""

from __future__ import annotations

import pytest
import yaml

from podcap import locate
from podcap.errors import LocateError
from testbed import kube_api as K

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


def names(resolution) -> list[str]:
    return sorted(f"{t.namespace}/{t.name}" for t in resolution.targets)


def test_pod_by_name_gives_node_ips_cidrs_and_container(shop):
    _, kube = shop
    (target,) = locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop")).targets
    assert (target.node.name, target.node.internal_ip) == ("node-a", "172.20.0.11")
    assert target.node.pod_cidrs == ("10.244.0.0/24",)
    assert target.node.runtime_version == "containerd://1.7.13"
    assert target.node.os == "linux"
    assert target.pod_ips == ("10.244.0.10",) and target.host_ip == "172.20.0.11"
    assert (target.container, target.container_id, target.runtime) == ("app", CID, "containerd")
    assert target.key == "shop_web-0"


def test_pod_prefix_deployment_selector_and_all_namespaces(shop):
    _, kube = shop
    q = locate.TargetQuery
    assert names(locate.resolve(kube, q(["pod/web-1"], namespace="shop"))) == ["shop/web-1"]
    assert names(locate.resolve(kube, q(["deploy/web"], namespace="shop"))) == [
        "shop/web-0",
        "shop/web-1",
    ]
    assert names(locate.resolve(kube, q(selector="tier=front", namespace="shop"))) == [
        "shop/web-0",
        "shop/web-1",
    ]
    everywhere = locate.resolve(kube, q(selector="app in (web)", all_namespaces=True))
    assert names(everywhere) == ["kube-system/agent", "shop/web-0", "shop/web-1"]
    assert any("hostNetwork" in w and "kube-system/agent" in w for w in everywhere.warnings)


def test_default_namespace_comes_from_the_kubeconfig_context(make_kube_api, tmp_path, monkeypatch):
    server = make_kube_api(shop_cluster())
    config = yaml.safe_load(server.kubeconfig_path.read_text())
    config["contexts"].append(
        {"name": "shop", "context": {"cluster": "lab", "user": K.USER, "namespace": "shop"}}
    )
    path = tmp_path / "merged"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    kube = locate.connect(context="shop")
    assert kube.default_namespace == "shop"
    assert names(locate.resolve(kube, locate.TargetQuery(["web-0"]))) == ["shop/web-0"]
    assert locate.connect().default_namespace == "default"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (locate.TargetQuery(["web-9"], namespace="shop"), "pods web-9 not found in namespace shop"),
        (locate.TargetQuery(["deploy/nope"], namespace="shop"), "deployments.apps nope not found"),
        (locate.TargetQuery(["starting"], namespace="shop"), "shop/starting is not running"),
        (
            locate.TargetQuery(["with-sidecar"], namespace="shop", container="proxy"),
            "container proxy of pod shop/with-sidecar has not started (waiting: ContainerCreating)",
        ),
        (
            locate.TargetQuery(["web-0"], namespace="shop", container="nginx"),
            "has no container nginx (it has: app)",
        ),
        (locate.TargetQuery(["iis"], namespace="shop"), "runs on Windows node win-1"),
        (locate.TargetQuery(selector="app=db", namespace="shop"), "no running Pod matches"),
        (locate.TargetQuery(["sts/db"], namespace="shop"), "no running Pod matches"),
    ],
)
def test_clear_errors(shop, query, message):
    _, kube = shop
    with pytest.raises(LocateError) as info:
        locate.resolve(kube, query)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_first_running_container_is_the_default(shop):
    _, kube = shop
    (t,) = locate.resolve(kube, locate.TargetQuery(["with-sidecar"], namespace="shop")).targets
    assert t.container == "app"


def test_rbac_denied_names_verb_and_resource(shop):
    cluster, kube = shop
    cluster.denied.add(("get", "pods", "shop"))
    with pytest.raises(LocateError, match=r"RBAC denied: cannot get pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop"))
    cluster.denied = {("list", "pods", "*")}
    with pytest.raises(LocateError, match=r"cannot list pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(selector="app=web", namespace="shop"))


def test_preflight_lists_every_missing_permission(shop):
    cluster, kube = shop
    (target,) = locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop")).targets
    needed = locate.helper_permissions("podcap-system", [target])
    locate.check_access(kube, needed)  # everything allowed: no error
    cluster.denied |= {
        ("create", "pods/exec", "podcap-system"),
        ("delete", "pods", "podcap-system"),
    }
    with pytest.raises(LocateError) as info:
        locate.check_access(kube, needed)
    message = str(info.value)
    assert "create pods/exec in namespace podcap-system" in message
    assert "delete pods in namespace podcap-system" in message
    assert "create pods in namespace podcap-system;" not in message


def test_ip_masq_agent_and_service_cidr_facts(shop):
    cluster, kube = shop
    assert locate.cluster_facts(kube) == {"ip_masq_agent": None, "service_cidr": None}
    cluster.add_configmap(
        "kube-system",
        "ip-masq-agent-config",
        {"config": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: false\n"},
    )
    cluster.add_configmap(
        "kube-system",
        "kubeadm-config",
        {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.96.0.0/12\n"},
    )
    facts = locate.cluster_facts(kube)
    assert facts["ip_masq_agent"]["configmap"] == "kube-system/ip-masq-agent-config"
    assert facts["ip_masq_agent"]["config"]["nonMasqueradeCIDRs"] == ["10.0.0.0/8"]
    assert facts["service_cidr"] == "10.96.0.0/12"
    cluster.denied.add(("get", "configmaps", "kube-system"))  # unreadable is not an error
    assert locate.cluster_facts(kube)["ip_masq_agent"] is None


def test_no_configuration_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LocateError, match="no Kubernetes configuration"):
        locate.connect()
    with pytest.raises(LocateError, match="cannot load kubeconfig"):
        locate.connect(str(tmp_path / "missing"))


def test_helper_namespace_must_exist_and_admit_privileged_pods(shop):
    cluster, kube = shop
    locate.check_helper_namespace(kube, "podcap-system", capabilities_only=False)
    with pytest.raises(LocateError, match="helper namespace nowhere does not exist") as info:
        locate.check_helper_namespace(kube, "nowhere", capabilities_only=False)
    assert "kubectl create namespace nowhere" in str(info.value)
    labels = cluster.namespaces["podcap-system"]["metadata"]["labels"]
    labels["pod-security.kubernetes.io/enforce"] = "baseline"
    with pytest.raises(LocateError, match="enforces Pod Security 'baseline'"):
        locate.check_helper_namespace(kube, "podcap-system", capabilities_only=True)
    cluster.denied.add(("get", "namespaces", "*"))  # unreadable: the create call will judge
    locate.check_helper_namespace(kube, "podcap-system", capabilities_only=False)
