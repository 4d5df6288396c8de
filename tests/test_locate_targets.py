"""podcap.locate.targets against the in-test API server, through the real kubernetes client."""

from __future__ import annotations

import pytest

from podcap import locate
from podcap.errors import LocateError
from tests.kube_fixtures import CID, names


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
