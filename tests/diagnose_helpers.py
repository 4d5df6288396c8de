"""What the ``podcap diagnose`` lab tests share: a stand-in process per lab node (the node
for its helper), one diagnosis run and the check that its captures, analyzed offline, say the
same. Registered in conftest.py (the fixture)."""

from __future__ import annotations

import contextlib
import json

import pytest

from testbed.helpers import podcap


@contextlib.contextmanager
def node_stand_ins(lab):
    """A process in each lab node's network namespace ("the node" for its helper), as
    ``--node-pid``'s value; they end with the block."""
    stand_ins = [lab.popen(node, ["sleep", "300"]) for node in lab.nodes]
    try:
        yield ",".join(f"{n.name}={p.pid}" for n, p in zip(lab.nodes, stand_ins, strict=True))
    finally:
        for proc in stand_ins:
            proc.kill()
            proc.wait()


@pytest.fixture
def node_pids(kube_lab):
    """``node_stand_ins`` of the module's lab, for a test."""
    with node_stand_ins(kube_lab[2]) as pids:
        yield pids


def diagnose(kube_lab, node_pids, out, *args):
    cluster, server, lab = kube_lab
    client = lab.pods[0]
    run = podcap("diagnose", client.name, *args, "--kubeconfig", str(server.kubeconfig_path),
                 "--node-pid", node_pids, "-o", str(out), timeout=150)  # fmt: skip
    assert cluster.helper_pods() == []
    if run.returncode in (0, 1):
        assert_offline_agrees(out)
    return run


def assert_offline_agrees(out):
    """The bundle's captures, given to ``podcap analyze -r path`` in any order, say what the
    diagnosis said: the same connections, outcomes and hops."""
    offline = podcap("analyze", *sorted(out.glob("*.pcap"), reverse=True), "-r", "path",
                     "-F", "json")  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    columns = ["client_port", "server_ip", "outcome", "lost_between", "reply_lost_between"]
    again = [{c: row[c] for c in columns} for row in json.loads(offline.stdout)["path"]]
    bundled = json.loads((out / "path.json").read_text())["path"]
    assert again == [{c: row[c] for c in columns} for row in bundled]


def drop_watchers_alive(cluster) -> list[int]:
    """The process groups of this API server's drop-watcher execs that still have a process
    (each exec runs in a session of its own: bpftrace and the script's children are in it)."""
    import os  # noqa: PLC0415

    alive = []
    for record in cluster.execs:
        if "podcap-drops" in " ".join(record.command):
            try:
                os.killpg(record.process.pid, 0)
            except ProcessLookupError:
                continue
            alive.append(record.process.pid)
    return alive
