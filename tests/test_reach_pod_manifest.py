"""podcap.reach.pod.manifest: helper manifests valid for Kubernetes 1.30; one helper per node."""

from __future__ import annotations

import getpass
import re
import socket
from datetime import UTC, datetime, timedelta

import kubernetes_validate
import pytest

from podcap import locate
from podcap.capture import plan as kubecapture
from podcap.reach import pod as helper

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_the_default_image_is_pinned_by_digest():
    """A tag can be moved under a running fleet; a digest cannot (and a mirror keeps it)."""
    name, _, digest = helper.DEFAULT_IMAGE.partition("@")
    assert name == "docker.io/nicolaka/netshoot:v0.13"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    container = helper.helper_manifest(helper.HelperSpec(), "node-a", [])["spec"]["containers"][0]
    assert container["image"] == helper.DEFAULT_IMAGE


def test_the_helper_names_who_asked_for_it():
    assert helper.HelperSpec().requested_by == f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.mark.parametrize(
    "spec",
    [
        helper.HelperSpec(),
        helper.HelperSpec(
            namespace="ops",
            image="registry.example/podcap-helper:1.0",
            image_pull_secret="regcred",
            capabilities_only=True,
            deadline_seconds=helper.deadline_for(30),
        ),
    ],
)
def test_helper_manifest_is_valid_for_1_30_and_says_what_the_issue_asks(spec):
    manifest = helper.helper_manifest(
        spec, "ip-10-0-1-7.ec2.internal", ["containerd://abc"], ["shop/web-0"], now=NOW
    )
    assert kubernetes_validate.validate(manifest, "1.30", strict=True) == "1.30"
    pod_spec = manifest["spec"]
    (container,) = pod_spec["containers"]
    assert pod_spec["nodeName"] == "ip-10-0-1-7.ec2.internal"
    assert pod_spec["hostPID"] is True and "hostNetwork" not in pod_spec
    assert pod_spec["tolerations"] == [{"operator": "Exists"}]
    assert pod_spec["activeDeadlineSeconds"] == spec.deadline_seconds
    assert container["command"] == ["sleep", str(spec.deadline_seconds)]
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "podcap",
        "podcap.io/session": spec.session,
    }
    annotations = manifest["metadata"]["annotations"]
    assert annotations["podcap.io/container-ids"] == "containerd://abc"
    assert annotations["podcap.io/targets"] == "shop/web-0"
    assert annotations["podcap.io/requested-by"] == spec.requested_by
    assert annotations["podcap.io/expires"] == (
        (NOW + timedelta(seconds=spec.deadline_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert manifest["metadata"]["namespace"] == spec.namespace
    if spec.capabilities_only:
        assert container["securityContext"]["capabilities"]["add"] == helper.CAPABILITIES
        assert container["securityContext"]["privileged"] is False
        assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert container["image"] == "registry.example/podcap-helper:1.0"
    else:
        assert container["securityContext"] == {"privileged": True}
        assert pod_spec["activeDeadlineSeconds"] == 3600 + helper.DEADLINE_MARGIN


def test_dry_run_plans_one_helper_per_node_and_sends_no_write(shop_server):
    cluster, kube, _ = shop_server
    query = locate.TargetQuery(selector="app=web", namespace="shop")
    plan = kubecapture.plan(kube, query, helper.HelperSpec())
    text = kubecapture.dry_run_yaml(plan)
    documents = [d for d in __import__("yaml").safe_load_all(text)]
    assert sorted(d["spec"]["nodeName"] for d in documents) == ["node-a", "node-b"]
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
    assert "# helper for node node-a: captures shop/web-0" in text
    assert cluster.requests and cluster.writes() == []
