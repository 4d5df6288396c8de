"""``podcap netns``/``inspect`` through a helper Pod: the real kubernetes client against the
in-test API server (testbed/kube_api.py), whose pods/exec runs the helper's commands on this
machine, where they enter the lab Pod's network namespace for real. No real cluster is used."""

from __future__ import annotations

import json

import pytest

from podcap import locate, netns
from podcap.reach import pod as helper
from testbed import kube_api as K
from testbed.helpers import podcap
from tests.test_netns_lab import addresses

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kube(lab, make_kube_api):
    cluster = K.cluster_from_lab(lab)
    server = make_kube_api(cluster)
    return cluster, locate.connect(str(server.kubeconfig_path))


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_inspect_through_the_helper_pod_and_the_helper_is_deleted(lab, kube, protocol):
    cluster, client = kube
    cluster.exec_protocols = (protocol,)
    pod = lab.pods[1]
    query = locate.TargetQuery([pod.name], namespace=pod.namespace)
    with netns.helper_session(client, query, helper.HelperSpec()) as (transport, target, _):
        assert target.name == f"{pod.namespace}/{pod.name}"
        snapshot = netns.inspect(transport, target)
        assert cluster.helper_pods(), "the helper runs while we inspect"
    reports = snapshot.reports()
    (summary,) = reports["summary"].to_dict("records")
    assert summary["addresses"] == pod.ip and summary["via"] == "pod"
    assert summary["node"] == pod.node.name
    ports = set(reports["sockets"]["local_port"])
    assert {pod.http_port, pod.marker_port} <= ports
    assert cluster.helper_pods() == []


@pytest.fixture
def kubeconfig(lab, make_kube_api):
    cluster = K.cluster_from_lab(lab)
    server = make_kube_api(cluster)
    return cluster, ["--kubeconfig", str(server.kubeconfig_path)]


def test_command_through_the_helper_pod_returns_output_and_status(lab, kubeconfig):
    cluster, flags = kubeconfig
    pod = lab.pods[0]
    script = "ip -o -4 addr; echo to-stderr >&2; exit 4"
    done = podcap("netns", pod.name, "-n", pod.namespace, *flags, "--", "sh", "-c", script)
    assert done.returncode == 4, done.stderr
    assert addresses(done.stdout) == {"127.0.0.1", pod.ip}
    assert "to-stderr" in done.stderr
    assert cluster.helper_pods() == []


def test_shell_through_the_helper_pod_reads_stdin(lab, kubeconfig):
    cluster, flags = kubeconfig
    pod = lab.pods[1]
    done = podcap("netns", pod.name, "-n", pod.namespace, *flags, input="ip -o -4 addr\nexit 3\n")
    assert done.returncode == 3, done.stderr
    assert addresses(done.stdout) == {"127.0.0.1", pod.ip}
    assert cluster.helper_pods() == []


def test_shell_through_the_helper_pod_on_a_terminal(lab, kubeconfig, terminal):
    cluster, flags = kubeconfig
    pod = lab.pods[0]
    session = terminal("netns", pod.name, "-n", pod.namespace, *flags)
    session.read_until(f"[podcap netns {pod.namespace}/{pod.name} @ {pod.node.name}] # ".encode())
    # Our terminal is raw now: what we type goes to the node as is, "\n" included.
    # The node side is a terminal too (it echoes what we type, so the markers are computed):
    # stdout and stderr are that one terminal, and the shell's output arrives in order.
    session.send(
        "echo BEGIN-$((1+1)); ip -o -4 addr; [ -t 0 ] && echo TTY-$((3*3)); echo DONE-$((6*7))\n"
    )
    seen = session.read_until(b"DONE-42").decode(errors="replace")
    after = seen.split("BEGIN-2", 1)[1]
    assert addresses(after) == {"127.0.0.1", pod.ip}, seen
    assert "TTY-9" in after
    session.send("exit 6\n")
    assert session.wait() == 6
    # The shell ran as is (no PID wrapper: a tty exec), interactive because we have a terminal.
    (shell,) = [e.command for e in cluster.execs if "PS1=" in " ".join(e.command)]
    assert shell[:2] == ["nsenter", "-n"] and shell[-1] == "-i"
    assert cluster.helper_pods() == []


def test_inspect_through_the_helper_pod_on_the_command_line(lab, kubeconfig, tmp_path):
    cluster, flags = kubeconfig
    pod = lab.pods[1]
    # On a real node the helper reads PID 1's rules (hostPID); here a process living in the
    # lab node's namespace stands in for it.
    stand_in = lab.popen(pod.node, ["sleep", "120"])
    rules = ["--node-rules", "--node-pid", str(stand_in.pid), "--rules-dir", str(tmp_path)]
    done = podcap("inspect", pod.name, "-n", pod.namespace, *flags, *rules, "-F", "json")
    assert done.returncode == 0, done.stderr
    (summary,) = json.loads(done.stdout)["summary"]
    assert summary["target"] == f"{pod.namespace}/{pod.name}"
    assert summary["addresses"] == pod.ip and summary["node"] == pod.node.name
    saved = tmp_path / f"{pod.node.name}.iptables-save.txt"
    assert summary["rules_iptables-save"] == str(saved)
    assert "IP-MASQ-AGENT" in saved.read_text()
    assert cluster.helper_pods() == []


def test_a_pod_that_does_not_exist_is_one_error_line(lab, kubeconfig):
    cluster, flags = kubeconfig
    done = podcap("netns", "no-such-pod", "-n", "default", *flags, "--", "true")
    assert done.returncode == 2
    assert done.stderr.startswith("podcap: error: pods no-such-pod not found in namespace default")
    assert cluster.writes() == []  # nothing was created
