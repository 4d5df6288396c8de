"""podcap.reach.pod.helper: helpers deleted whatever happens (error, Ctrl-C, SIGTERM); cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from podcap.errors import ReachError
from podcap.reach import pod as helper
from testbed.helpers import wait_for


def test_helpers_are_deleted_when_the_block_fails(shop_server):
    cluster, kube, _ = shop_server
    with (
        pytest.raises(RuntimeError),
        helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [], "node-b": []}) as t,
    ):
        assert set(t) == {"node-a", "node-b"}
        assert len(cluster.helper_pods()) == 2
        raise RuntimeError("capture failed")
    assert cluster.helper_pods() == []
    assert len(cluster.deleted) == 2


def test_helper_create_denied_is_a_clear_error(shop_server):
    cluster, kube, _ = shop_server
    cluster.denied.add(("create", "pods", "podcap-system"))
    with (
        pytest.raises(ReachError, match="RBAC denied: cannot create helper pod"),
        helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}),
    ):
        pass


SESSION_SCRIPT = """
import sys, time
from podcap import locate, signals
signals.install()  # as the CLI does: SIGTERM raises too
from podcap.reach import pod as helper
kube = locate.connect(sys.argv[1])
with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [], "node-b": []}) as t:
    process = t["node-a"].start(["sleep", "60"])
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_delete_the_helpers(shop_server, signum):
    cluster, _, server = shop_server
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
    assert proc.returncode != 0 and b"podcap.signals.Interrupted" in stderr
    assert cluster.helper_pods() == []
    assert len(cluster.deleted) == 2
    # Deleting the helper ended the exec'd command too, as a kubelet would.
    assert all(e.process.wait(5) is not None for e in cluster.execs)


def test_cleanup_deletes_only_podcap_helpers(shop_server):
    cluster, kube, _ = shop_server
    for node in ("node-a", "node-b"):
        helper.HelperPod(kube, helper.helper_manifest(helper.HelperSpec(), node, [])).create()
    other = helper.helper_manifest(helper.HelperSpec(session="x"), "node-a", [])
    other["metadata"]["labels"] = {"app": "not-podcap"}
    helper.HelperPod(kube, other).create()
    cluster.age_helpers(600)
    deleted = helper.cleanup(kube, "podcap-system").deleted
    assert len(deleted) == 2 and all(d.startswith("podcap-system/podcap-node-") for d in deleted)
    assert cluster.helper_pods() == []
    assert len([p for p in cluster.pods if p[0] == "podcap-system"]) == 1
    assert helper.cleanup(kube, None) == helper.Cleaned()
