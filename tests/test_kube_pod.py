"""The helper-Pod transport: manifests, exec over v4/v5 WebSockets, stopping, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import kubernetes_validate
import pytest

from podcap import locate
from podcap.capture import fleet as kubecapture
from podcap.errors import ReachError
from podcap.reach import pod as helper
from testbed import kube_api as K
from testbed.helpers import wait_for
from tests.test_kube_locate import shop_cluster


@pytest.fixture
def shop(make_kube_api):
    cluster = shop_cluster()
    server = make_kube_api(cluster)
    return cluster, locate.connect(str(server.kubeconfig_path)), server


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
    manifest = helper.helper_manifest(spec, "ip-10-0-1-7.ec2.internal", ["containerd://abc"])
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
    assert manifest["metadata"]["annotations"]["podcap.io/container-ids"] == "containerd://abc"
    assert manifest["metadata"]["namespace"] == spec.namespace
    if spec.capabilities_only:
        assert container["securityContext"]["capabilities"]["add"] == helper.CAPABILITIES
        assert container["securityContext"]["privileged"] is False
        assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert container["image"] == "registry.example/podcap-helper:1.0"
    else:
        assert container["securityContext"] == {"privileged": True}
        assert pod_spec["activeDeadlineSeconds"] == 3600 + helper.DEADLINE_MARGIN


def test_dry_run_plans_one_helper_per_node_and_sends_no_write(shop):
    cluster, kube, _ = shop
    query = locate.TargetQuery(selector="app=web", namespace="shop")
    plan = kubecapture.plan(kube, query, helper.HelperSpec())
    text = kubecapture.dry_run_yaml(plan)
    documents = [d for d in __import__("yaml").safe_load_all(text)]
    assert sorted(d["spec"]["nodeName"] for d in documents) == ["node-a", "node-b"]
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
    assert "# helper for node node-a: captures shop/web-0" in text
    assert cluster.requests and cluster.writes() == []


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_exec_stream_is_binary_safe_with_exit_code_and_stderr(shop, protocol, tmp_path):
    cluster, kube, _ = shop
    cluster.exec_protocols = (protocol,)
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3_000_000) + bytes(range(256)) * 8)
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [K.USER]}) as transports:
        transport = transports["node-a"]
        script = 'cat "$1"; echo to-stderr >&2; exit 7'
        done = transport.run(["sh", "-c", script, "sh", str(payload)])
        assert done.stdout == payload.read_bytes()
        assert done.returncode == 7
        assert done.stderr == b"to-stderr\n"
        assert transport.run(["true"]).returncode == 0
    assert {e.protocol for e in cluster.execs} == {protocol}
    assert cluster.helper_pods() == []


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_stop_ends_a_command_that_waits_on_stdin(shop, protocol):
    cluster, kube, _ = shop
    cluster.exec_protocols = (protocol,)
    # Ends on stdin EOF (v5) or on SIGINT (v4: the "stop" line is ignored here on purpose, so
    # the fallback, kill -INT through a second exec, has to work).
    script = "trap 'echo sigint >&2; exit 0' INT; while read -r l; do :; done; echo eof >&2"
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}) as transports:
        process = transports["node-a"].start(["sh", "-c", script])
        time.sleep(0.5)
        # Still running: it waits for us. The transport contract's timeout is a ReachError
        # (a PodcapError the capture session and the CLI report), never the builtin one.
        with pytest.raises(ReachError, match=r"exec in .* still running after 0.1 s"):
            process.wait(0.1)
        process.stop()
        assert process.wait(20) == 0
        assert ("eof" if protocol == K.V5 else "sigint") in process.stderr_text()
        assert "podcap-exec pid=" not in process.stderr_text()
    (session,) = [e for e in cluster.execs if e.command[-1] == script]
    assert session.stdin_closed == (protocol == K.V5)


def test_lost_stream_tail_is_detected(shop):
    cluster, kube, _ = shop
    cluster.stdout_limit = 1000
    script = (
        "head -c 5000 /dev/zero; echo 'podcap-node: stats captured=1 written=5000 status=0' >&2"
    )
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}) as transports:
        process = transports["node-a"].start(["sh", "-c", script])
        received = process.stdout.read()
        while chunk := process.stdout.read():
            received += chunk
        assert process.wait(10) == 0
        assert len(received) == process.bytes_received == 1000
        assert process.bytes_written() == 5000
        with pytest.raises(ReachError, match="lost 4000 of 5000 bytes"):
            process.check_complete()


def test_helpers_are_deleted_when_the_block_fails(shop):
    cluster, kube, _ = shop
    with (
        pytest.raises(RuntimeError),
        helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [], "node-b": []}) as t,
    ):
        assert set(t) == {"node-a", "node-b"}
        assert len(cluster.helper_pods()) == 2
        raise RuntimeError("capture failed")
    assert cluster.helper_pods() == []
    assert len(cluster.deleted) == 2


def test_helper_create_denied_is_a_clear_error(shop):
    cluster, kube, _ = shop
    cluster.denied.add(("create", "pods", "podcap-system"))
    with (
        pytest.raises(ReachError, match="RBAC denied: cannot create helper pod"),
        helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}),
    ):
        pass


SESSION_SCRIPT = """
import sys, time
from podcap import locate
from podcap.reach import pod as helper
kube = locate.connect(sys.argv[1])
with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [], "node-b": []}) as t:
    process = t["node-a"].start(["sleep", "60"])
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_delete_the_helpers(shop, signum):
    cluster, _, server = shop
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SESSION_SCRIPT), str(server.kubeconfig_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        assert proc.stdout.readline() == b"ready\n"
        assert len(cluster.helper_pods()) == 2
        # start() returns once the exec is upgraded; the command starts just after that.
        assert wait_for(lambda: len(cluster.execs) == 1, 10)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in stderr
    assert cluster.helper_pods() == []
    assert len(cluster.deleted) == 2
    # Deleting the helper ended the exec'd command too, as a kubelet would.
    assert all(e.process.wait(5) is not None for e in cluster.execs)


def test_cleanup_deletes_only_podcap_helpers(shop):
    cluster, kube, _ = shop
    for node in ("node-a", "node-b"):
        helper.HelperPod(kube, helper.helper_manifest(helper.HelperSpec(), node, [])).create()
    other = helper.helper_manifest(helper.HelperSpec(session="x"), "node-a", [])
    other["metadata"]["labels"] = {"app": "not-podcap"}
    helper.HelperPod(kube, other).create()
    deleted = helper.cleanup(kube, "podcap-system")
    assert len(deleted) == 2 and all(d.startswith("podcap-system/podcap-node-") for d in deleted)
    assert cluster.helper_pods() == []
    assert len([p for p in cluster.pods if p[0] == "podcap-system"]) == 1
    assert helper.cleanup(kube, None) == []
