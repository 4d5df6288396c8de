"""podcap.locate.kube against the in-test API server: loading the configuration, API failures
as one line.
"""

from __future__ import annotations

import pytest
import yaml

from podcap import locate
from podcap.errors import LocateError
from testbed import kube_api as K
from tests.kube_fixtures import names, shop_cluster


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


def test_rbac_denied_names_verb_and_resource(shop):
    cluster, kube = shop
    cluster.denied.add(("get", "pods", "shop"))
    with pytest.raises(LocateError, match=r"RBAC denied: cannot get pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop"))
    cluster.denied = {("list", "pods", "*")}
    with pytest.raises(LocateError, match=r"cannot list pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(selector="app=web", namespace="shop"))


def test_no_configuration_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LocateError, match="no Kubernetes configuration"):
        locate.connect()
    with pytest.raises(LocateError, match="cannot load kubeconfig"):
        locate.connect(str(tmp_path / "missing"))
