"""podcap.locate.access against the in-test API server: RBAC pre-flight, the helper namespace."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from podcap import locate
from podcap.errors import LocateError
from testbed.helpers import podcap

RBAC = Path(__file__).resolve().parent.parent / "deploy" / "rbac.yaml"


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


def test_capture_check_answers_permission_by_permission(shop_server):
    cluster, _, server = shop_server
    kubeconfig = ("--kubeconfig", str(server.kubeconfig_path))
    done = podcap("capture", "web-0", "-n", "shop", "--check", *kubeconfig)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ok  helper namespace podcap-system admits the helper"
    assert "ok  may create pods/exec in namespace podcap-system" in lines
    assert "ok  may get pods in namespace shop" in lines
    assert lines[-1] == "ok  the API server admits the helpers (server-side dry run)"

    cluster.denied.add(("create", "pods/exec", "podcap-system"))
    labels = cluster.namespaces["podcap-system"]["metadata"]["labels"]
    labels["pod-security.kubernetes.io/enforce"] = "baseline"
    done = podcap("capture", "web-0", "-n", "shop", "--check", *kubeconfig)
    assert done.returncode == 2
    assert "NO  may create pods/exec in namespace podcap-system: denied" in done.stdout
    assert "NO  helper namespace podcap-system admits the helper: helper namespace" in done.stdout
    assert "dry run): cannot create helper pod in namespace podcap-system: pods" in done.stdout
    assert done.stderr == (
        "podcap: error: 3 pre-flight checks failed (deploy/rbac.yaml holds what a cluster "
        "admin applies)\n"
    )
    # A check creates nothing: its only POSTs are questions to the API server and dry runs.
    assert {path for _, path in cluster.writes()} == {
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    }
    assert cluster.helper_pods() == []


def _grants(rules: list[dict], verb: str, resource: str, group: str = "") -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


def test_the_rbac_manifest_grants_what_podcap_asks_for(shop):
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(RBAC.read_text())}
    for document in documents.values():
        assert kubernetes_validate.validate(document, "1.30", strict=True)
    namespace = documents["podcap-system"]
    assert namespace["metadata"]["labels"][locate.PSA_ENFORCE] == "privileged"
    helpers, reader = documents["podcap-helpers"]["rules"], documents["podcap-reader"]["rules"]
    _, kube = shop
    (target,) = locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop")).targets
    for permission in locate.helper_permissions("podcap-system", [target]):
        resource = permission.resource + (
            f"/{permission.subresource}" if permission.subresource else ""
        )
        rules = helpers if permission.namespace == "podcap-system" else reader
        assert _grants(rules, permission.verb, resource), str(permission)
    # What the pre-flight, the targets, their nodes and the SNAT facts read.
    for verb, resource, group in [
        ("create", "selfsubjectaccessreviews", "authorization.k8s.io"),
        ("get", "namespaces", ""), ("get", "nodes", ""), ("list", "pods", ""),
        ("get", "deployments", "apps"), ("get", "statefulsets", "apps"),
        ("get", "daemonsets", "apps"), ("get", "configmaps", ""),
    ]:  # fmt: skip
        assert _grants(reader, verb, resource, group), (verb, resource)
    assert _grants(helpers, "list", "pods") and _grants(helpers, "delete", "pods")  # cleanup
