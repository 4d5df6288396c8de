"""podcap.locate.access against the in-test API server: RBAC pre-flight, the helper namespace."""

from __future__ import annotations

import pytest

from podcap import locate
from podcap.errors import LocateError


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
