"""The Kubernetes commands end to end through the ``podcap`` executable."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from podcap import locate
from podcap.reach import pod as helper
from testbed.helpers import podcap, start_podcap, wait_for
from tests.diagnose_helpers import drop_watchers_alive
from tests.kube_fixtures import (
    capture_while_fetching,
    capture_with_node_rules,
    pcap_packets,
    shop_cluster,
    wait_listening,
)

pytestmark = pytest.mark.timeout(120)


def test_cleanup_deletes_leftover_helpers_by_label(make_kube_api):
    cluster = shop_cluster()
    server = make_kube_api(cluster)
    kube = locate.connect(str(server.kubeconfig_path))
    spec = helper.HelperSpec()
    for node in ("node-a", "node-b"):
        helper.HelperPod(kube, helper.helper_manifest(spec, node, [])).create()
    cluster.age_helpers(600)
    done = podcap("cleanup", "--kubeconfig", str(server.kubeconfig_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all(
        line.startswith("deleted pod podcap-system/podcap-node-") for line in lines
    )
    assert cluster.helper_pods() == []
    again = podcap("cleanup", "-A", "--kubeconfig", str(server.kubeconfig_path))
    assert again.stdout == "no podcap helper pods in any namespace\n"


def test_cleanup_denied_is_one_error_line(make_kube_api):
    cluster = shop_cluster()
    cluster.denied.add(("list", "pods", "podcap-system"))
    server = make_kube_api(cluster)
    done = podcap("cleanup", "--kubeconfig", str(server.kubeconfig_path))
    assert done.returncode == 2
    assert done.stderr.startswith("podcap: error: RBAC denied: cannot list helper pods")
    assert len(done.stderr.splitlines()) == 1


# --- podcap capture with Pod targets, against the lab --------------------------------------


def test_capture_by_name_with_node_view_rules_and_facts(kube_lab, tmp_path):
    cluster, _, lab = kube_lab
    target, client = lab.pods[0], lab.pods[1]
    out = tmp_path / "out"
    url = f"http://{target.ip}/mytest"
    stderr = capture_with_node_rules(
        kube_lab, target, out, "--also-node", tcpdumps=2, url=url, client=client
    )
    pod_pcap = out / f"{target.namespace}_{target.name}.pcap"
    assert any(b"GET /mytest" in p for p in pcap_packets(pod_pcap))
    node_pcap = out / f"{target.namespace}_{target.name}.node.pcap"
    assert any(b"GET /mytest" in p for p in pcap_packets(node_pcap))
    # The node's view stops as a Pod's does: what tcpdump queued is all written, and said so.
    node_sidecar = json.loads((out / f"{node_pcap.name}.json").read_text())
    node_counts = node_sidecar["counts"]
    assert node_counts["complete"] is True and node_counts["tcpdump"]["dropped"] == 0
    assert node_sidecar["point"]["interface"] == "eth0"
    assert "host 10." in node_sidecar["how"]["filter"]
    assert "IP-MASQ-AGENT" in (out / f"{target.node.name}.iptables-save.txt").read_text()
    sidecar = json.loads((out / f"{target.namespace}_{target.name}.pcap.json").read_text())
    facts = sidecar["cluster"]
    assert (facts["pod_ip"], facts["node_ip"]) == (target.ip, target.node.ip)
    assert "IP-MASQ-AGENT" in facts["node_rules"]["iptables-save"]
    assert facts["node_capture"]["file"] == node_pcap.name
    assert sidecar["counts"]["complete"] is True and sidecar["counts"]["ended_by"] == "duration"
    assert f"podcap: {target.namespace}/{target.name}:" in stderr
    assert cluster.helper_pods() == []


def test_a_node_view_that_fails_is_reported_beside_the_pods_capture(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    target = lab.pods[0]
    stand_in = lab.popen(target.node, ["sleep", "120"])  # the lab node's "PID 1"
    out = tmp_path / "out"
    podcap_run = start_podcap(
        "capture", target.name, "-n", target.namespace, "--kubeconfig", str(server.kubeconfig_path),
        "-d", "2", "-o", str(out), "--also-node", "--node-interface", "nosuch0",
        "--node-pid", str(stand_in.pid), text=True,
    )  # fmt: skip
    try:
        _, stderr = podcap_run.communicate(timeout=40)
    finally:
        podcap_run.kill()
    assert podcap_run.returncode == 2, stderr
    assert "the node's view (--also-node)" in stderr and "nosuch0" in stderr, stderr
    assert (out / f"{target.namespace}_{target.name}.pcap").exists()  # the Pod's view is kept
    assert cluster.helper_pods() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_ends_the_capture_cleanly_and_deletes_the_helper(
    kube_lab, tmp_path, signum
):
    """Started from a script with &, podcap inherits SIGINT ignored: its own handlers count."""
    cluster, server, lab = kube_lab
    target, client = lab.pods[0], lab.pods[1]
    out = tmp_path / "out"
    podcap_run = start_podcap(
        "capture", f"pod/{target.name}", "-n", target.namespace,
        "--kubeconfig", str(server.kubeconfig_path), "-f", "tcp port 80", "-o", str(out),
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        wait_listening(cluster, 1)
        assert len(cluster.helper_pods()) == 1
        assert lab.curl(client, f"http://{target.ip}/mytest").returncode == 0
        time.sleep(0.5)
        podcap_run.send_signal(signum)
        _, stderr = podcap_run.communicate(timeout=40)
    finally:
        podcap_run.kill()
    assert podcap_run.returncode == 0, stderr
    assert f"ended by {'interrupted' if signum == signal.SIGINT else 'terminated'}" in stderr
    assert any(
        b"GET /mytest" in p for p in pcap_packets(out / f"{target.namespace}_{target.name}.pcap")
    )
    assert cluster.helper_pods() == [] and len(cluster.deleted) == 1
    assert all(e.process.poll() is not None for e in cluster.execs)


def test_rbac_denied_is_caught_before_any_helper_exists(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    cluster.denied.add(("create", "pods", "podcap-system"))
    cluster.denied.add(("create", "pods/exec", "podcap-system"))
    done = podcap(
        "capture", lab.pods[0].name, "-n", lab.pods[0].namespace,
        "--kubeconfig", str(server.kubeconfig_path), "-o", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "podcap: error: RBAC denied: you may not create pods in namespace podcap-system; "
        "create pods/exec in namespace podcap-system (deploy/rbac.yaml grants them; or use "
        "--via ssh/local)"
    ]
    assert not [w for w in cluster.writes() if not w[1].endswith("selfsubjectaccessreviews")]


def test_not_found_dry_run_and_hostile_filter(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    kubeconfig = ("--kubeconfig", str(server.kubeconfig_path))
    missing = podcap("capture", "web-zz", "-n", lab.pods[0].namespace, *kubeconfig)
    assert missing.returncode == 2
    assert (
        missing.stderr
        == f"podcap: error: pods web-zz not found in namespace {lab.pods[0].namespace}\n"
    )

    before = len(cluster.requests)
    hostile = podcap("capture", lab.pods[0].name, "-f", "tcp -z /tmp/x", *kubeconfig)
    assert hostile.returncode == 2 and "refusing filter" in hostile.stderr
    assert len(cluster.requests) == before  # refused before any API call

    dry = podcap("capture", "-l", "app=web", "-n", lab.pods[0].namespace, "--dry-run", *kubeconfig)
    assert dry.returncode == 0, dry.stderr
    manifests = list(yaml.safe_load_all(dry.stdout))
    assert sorted(m["spec"]["nodeName"] for m in manifests) == sorted(n.name for n in lab.nodes)
    for manifest in manifests:
        assert kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert cluster.writes() == []


def test_one_pod_to_stdout_and_to_a_named_file(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    target, client = lab.pods[0], lab.pods[1]
    kubeconfig = ("--kubeconfig", str(server.kubeconfig_path))
    status, stdout, stderr = capture_while_fetching(
        kube_lab, target, client, "/mytest", "-f", "tcp port 80", "-d", "4", "-o", "-", "-q",
        text=False,
    )  # fmt: skip
    assert status == 0, stderr
    (tmp_path / "piped.pcap").write_bytes(stdout)
    assert any(b"GET /mytest" in p for p in pcap_packets(tmp_path / "piped.pcap"))
    many = podcap("capture", "-l", "app=web", "-n", target.namespace, *kubeconfig, "-o", "x.pcap")
    assert many.returncode == 2 and "-o x.pcap takes one Pod, and 2 match" in many.stderr
    assert cluster.helper_pods() == []


ONE_POD_ERROR = (
    "podcap: error: -o {} takes one Pod, and 2 match "
    "(give -o a directory: each Pod gets NAMESPACE_POD.pcap in it)\n"
)


@pytest.mark.parametrize("output", ["x.pcap", "-"])
def test_one_pod_outputs_refuse_several_pods_in_one_line_before_preflight(
    make_kube_api, tmp_path, output
):
    cluster = shop_cluster()
    # Preflight would fail (no create in the helper namespace): the -o check comes first.
    cluster.denied.add(("create", "pods", "podcap-system"))
    server = make_kube_api(cluster)
    kubeconfig = ("--kubeconfig", str(server.kubeconfig_path))
    workdir = tmp_path / "work"
    workdir.mkdir()
    many = podcap("capture", "-l", "app=web", "-n", "shop", *kubeconfig, "-o", output, cwd=workdir)
    assert (many.returncode, many.stderr) == (2, ONE_POD_ERROR.format(output))
    assert many.stdout == "" and list(workdir.iterdir()) == []
    assert cluster.writes() == []


def test_dash_c_names_the_container_and_count_is_long_only(make_kube_api, tmp_path):
    server = make_kube_api(shop_cluster())
    kubeconfig = ("--kubeconfig", str(server.kubeconfig_path))
    dry = podcap("capture", "with-sidecar", "-n", "shop", "-c", "app", "--dry-run", *kubeconfig)
    assert dry.returncode == 0, dry.stderr
    (manifest,) = yaml.safe_load_all(dry.stdout)
    assert manifest["spec"]["nodeName"] == "node-a"
    waiting = podcap("capture", "with-sidecar", "-n", "shop", "-c", "proxy", *kubeconfig)
    assert waiting.returncode == 2
    assert "container proxy of pod shop/with-sidecar has not started" in waiting.stderr
    for command in ("netns", "inspect"):
        done = podcap(command, "with-sidecar", "-n", "shop", "-c", "proxy", *kubeconfig)
        assert done.returncode == 2 and "container proxy of pod" in done.stderr, command
    counted = podcap("capture", "web-0", "-n", "shop", "--count", "x", *kubeconfig)
    assert counted.returncode == 2 and "--count" in counted.stderr


def test_node_rules_in_the_sidecar_name_the_masquerading_rule(kube_lab, tmp_path):
    """``capture --node-rules`` keeps the node's rules in the sidecar; ``analyze -r snat``
    reads them from there (no --iptables) and names the rule that rewrote the Pod's source."""
    cluster, _, lab = kube_lab
    pod = lab.pods[0]
    out = tmp_path / "out"
    # The IDC is outside NonMasqueradeCIDRs: the node masquerades the Pod's connection.
    url = f"http://{lab.idc.ip}/to-idc"
    capture_with_node_rules(kube_lab, pod, out, tcpdumps=1, url=url, client=pod)
    pcap = out / f"{pod.namespace}_{pod.name}.pcap"
    rules = json.loads((out / f"{pod.namespace}_{pod.name}.pcap.json").read_text())["cluster"]
    assert "IP-MASQ-AGENT" in rules["node_rules"]["iptables-save"]
    done = podcap("analyze", str(pcap), "-r", "snat", "--format", "json")
    assert done.returncode == 0, done.stderr
    (to_idc,) = [r for r in json.loads(done.stdout)["snat"] if r["server_ip"] == lab.idc.ip]
    assert to_idc["verdict"] == "snat" and to_idc["original_src"] == pod.ip
    assert to_idc["rewritten_by"].startswith("ip-masq-agent: chain IP-MASQ-AGENT")
    assert cluster.helper_pods() == []


def test_capture_with_drops_records_a_drop_inside_the_pod(kube_lab, tmp_path):
    """--drops: the kernel's drops of the Pod's packets on its node, with the namespace they
    died in; here an INPUT DROP in the Pod's own netns (the SYN retransmissions come after the
    watcher attached)."""
    from podcap.dropsfile import read_drops  # noqa: PLC0415

    _, _, lab = kube_lab
    target, client = lab.pods[0], lab.pods[1]
    out = tmp_path / "out"
    rule = ["INPUT", "-p", "tcp", "--dport", "8081", "-j", "DROP"]
    lab.run(target, ["iptables", "-I", *rule], check=True)
    try:
        stderr = capture_with_node_rules(
            kube_lab, target, out, "--drops", "--merge", "-f", "tcp", tcpdumps=1,
            url=f"http://{target.ip}/", client=client,
            during=lambda: lab.curl(client, f"http://{target.ip}:8081/", timeout=4),
        )  # fmt: skip
    finally:
        lab.run(target, ["iptables", "-D", *rule], check=True)
    node = target.node.name
    assert f"podcap: drops on {node}: " in stderr and "(bpftrace)" in stderr
    sidecar = json.loads((out / f"{target.namespace}_{target.name}.pcap.json").read_text())
    assert sidecar["cluster"]["drops"]["file"] == f"{node}.drops.jsonl"
    header, drops = read_drops(out / f"{node}.drops.jsonl")
    assert header["node"] == node and header["tier"] == "bpftrace"
    inside = [d for d in drops if d["dport"] == 8081]
    assert inside and {d["reason"] for d in inside} == {"NETFILTER_DROP"}
    assert {d["netns"] for d in inside} == {sidecar["point"]["netns"]}  # the Pod's own
    assert all((d["src"], d["dst"]) == (client.ip, target.ip) for d in inside)
    # --merge: the merged pcapng's copy of each dropped SYN carries the kernel's word.
    marked = subprocess.run(
        ["tshark", "-r", str(out / "capture.pcapng"), "-Y", "frame.comment", "-T", "fields",
         "-e", "tcp.dstport", "-e", "frame.comment"], capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(marked) == len(inside) and all(
        line.startswith("8081\tpodcap: then dropped by the kernel: NETFILTER_DROP in nft_do_chain "
                        f"(pod {target.namespace}/{target.name})") for line in marked
    ), marked  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_drop_watcher_outlives_podcap(kube_lab, tmp_path, signum):
    """Ctrl-C, SIGTERM: the watcher on the node ends with the capture. kill -9: podcap cannot
    stop it, and a kubelet keeps an exec running when its client goes (as the in-test API
    server does), so the node side ends itself at the capture's time bound (-d 8 here). A
    tracefs mount it made goes with it."""
    cluster, server, lab = kube_lab
    target = lab.pods[0]
    stand_in = lab.popen(target.node, ["sleep", "120"])
    mounts = Path("/proc/self/mounts").read_text().count(" tracefs ")
    podcap_run = start_podcap(
        "capture", target.name, "--kubeconfig", str(server.kubeconfig_path), "-o",
        str(tmp_path / "out"), "--drops", "--node-pid", str(stand_in.pid), "-d", "8", text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: drop_watchers_alive(cluster) != [], 30)
        time.sleep(1.5)  # bpftrace attaches
        podcap_run.send_signal(signum)
        podcap_run.communicate(timeout=40)
    finally:
        podcap_run.kill()
    if signum != signal.SIGKILL:
        assert drop_watchers_alive(cluster) == []
    assert wait_for(lambda: drop_watchers_alive(cluster) == [], 20), drop_watchers_alive(cluster)
    assert Path("/proc/self/mounts").read_text().count(" tracefs ") == mounts
