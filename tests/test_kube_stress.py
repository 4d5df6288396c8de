"""The Kubernetes capture path under stress (issue 22): signals at every phase, outputs that
cannot be written, cleanup beside a live capture. Through the ``podcap`` executable against the
in-test API server (and the lab, where a node must really capture)."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import dpkt
import pytest

from podcap.capture.session import STOP_GRACE
from testbed.helpers import descendants, podcap, start_podcap, wait_for
from tests.kube_fixtures import (
    capture_while_fetching,
    capture_with_node_rules,
    pcap_packets,
    shop_cluster,
    wait_listening,
)

pytestmark = pytest.mark.timeout(120)


def ignoring_sigint() -> None:
    """What a child of a script started with & inherits: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def named(pids: list[int], name: str) -> list[int]:
    def comm(pid: int) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return ""

    return [pid for pid in pids if comm(pid) == name]


# --- item 4: every signal, at every phase ---------------------------------------------------


@pytest.mark.parametrize(("signum", "said"), [(signal.SIGINT, "interrupted"),
                                              (signal.SIGTERM, "terminated")])  # fmt: skip
def test_a_signal_while_the_helper_is_pending_deletes_it_and_leaves_no_file(
    make_kube_api, tmp_path, signum, said
):
    cluster = shop_cluster()
    cluster.start_delay = 60  # the image is still being pulled
    server = make_kube_api(cluster)
    out = tmp_path / "out"
    run = start_podcap(
        "capture", "web-0", "-n", "shop", "--kubeconfig", server.kubeconfig_path, "-o", out,
        text=True, preexec_fn=ignoring_sigint,
    )  # fmt: skip
    try:
        assert wait_for(lambda: len(cluster.helper_pods()) == 1, 30)
        time.sleep(0.3)  # waiting for it to run
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=20)
    finally:
        run.kill()
    assert run.returncode == 128 + signum, stderr
    assert stderr.splitlines()[-1] == f"podcap: error: {said}"
    assert cluster.helper_pods() == [] and len(cluster.deleted) == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_a_second_signal_stops_at_once_and_keeps_every_whole_packet(kube_lab, tmp_path):
    """The node's relay frozen (tee, between tcpdump and the exec's stdout), the stream cannot
    end: the first Ctrl-C would wait STOP_GRACE for it; the second ends the capture at once,
    the file and its sidecar written all the same. (Not tcpdump frozen: timeout(1) sends it
    SIGCONT with the stop.)"""
    cluster, server, lab = kube_lab
    target, client = lab.pods[0], lab.pods[1]
    out = tmp_path / "out"
    run = start_podcap(
        "capture", target.name, "-n", target.namespace, "--kubeconfig", server.kubeconfig_path,
        "-f", "udp port 5931", "-o", out, text=True, preexec_fn=ignoring_sigint,
    )  # fmt: skip
    frozen: list[int] = []
    try:
        wait_listening(cluster, 1)
        for _ in range(3):
            lab.send_udp(client, target.ip, 5931, b"before-the-stop", timeout=0.5)
        time.sleep(1)  # tcpdump writes them out (-U) before it is frozen
        frozen = named(descendants(cluster.execs[0].process.pid), "tee")
        assert len(frozen) == 1
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        run.send_signal(signal.SIGINT)
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=40)
        took = time.monotonic() - started
    finally:
        for pid in frozen:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        run.kill()
    assert run.returncode == 130, stderr
    assert took < STOP_GRACE, took
    assert stderr.splitlines()[-1] == (
        "podcap: error: interrupted again: stopped at once; each file ends at its last whole "
        "packet, without tcpdump's statistics"
    )
    pcap = out / f"{target.namespace}_{target.name}.pcap"
    assert sum(b"before-the-stop" in p for p in pcap_packets(pcap)) == 3
    sidecar = json.loads(Path(f"{pcap}.json").read_text())
    assert (sidecar["counts"]["ended_by"], sidecar["counts"]["complete"]) == ("interrupted", False)
    assert cluster.helper_pods() == []


def test_dash_a_alone_says_it_goes_with_a_selector():
    done = podcap("capture", "-A")
    assert (done.returncode, done.stderr) == (2, "podcap: error: -A goes with -l SELECTOR\n")


# --- item 6: outputs checked before anything is asked of the API ----------------------------


@pytest.mark.parametrize(
    ("output", "said"),
    [
        ("afile/x", "afile is a file, not a directory"),
        ("afile/x.pcap", "afile is a file, not a directory"),
        ("/proc/nope/out", "cannot create files in /proc/nope/out (No such file or directory)"),
        ("/proc/nope.pcap", "cannot create files in /proc (No such file or directory)"),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line_before_any_api_call(
    make_kube_api, tmp_path, output, said
):
    cluster = shop_cluster()
    server = make_kube_api(cluster)
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("a regular file")
    done = podcap("capture", "web-0", "-n", "shop", "--kubeconfig", server.kubeconfig_path,
                  "-o", output, cwd=work)  # fmt: skip
    assert (done.returncode, done.stderr) == (2, f"podcap: error: cannot write {output}: {said}\n")
    assert cluster.requests == [] and cluster.helper_pods() == []
    assert sorted(p.name for p in work.iterdir()) == ["afile"]


def test_a_new_output_directory_is_made_only_once_the_capture_runs(make_kube_api, tmp_path):
    """The check makes the directory to try it, and removes it: a capture refused later (no
    such Pod) leaves nothing behind."""
    server = make_kube_api(shop_cluster())
    done = podcap("capture", "web-zz", "-n", "shop", "--kubeconfig", server.kubeconfig_path,
                  "-o", tmp_path / "new" / "deeper")  # fmt: skip
    assert done.returncode == 2 and "web-zz not found" in done.stderr
    assert not (tmp_path / "new").exists()


# --- item 3: cleanup beside a live capture; a capture whose helper went is an error ---------


def test_cleanup_keeps_a_live_captures_helper_and_force_breaks_it_loudly(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    target = lab.pods[0]
    kubeconfig = ("--kubeconfig", server.kubeconfig_path)
    run = start_podcap("capture", target.name, "-n", target.namespace, *kubeconfig,
                       "-f", "udp port 5932", "-o", tmp_path / "out", text=True)  # fmt: skip
    try:
        wait_listening(cluster, 1)
        [helper_pod] = cluster.helper_pods()
        name = f"podcap-system/{helper_pod['metadata']['name']}"
        # item 8: what an admin who finds it wants to know
        annotations = helper_pod["metadata"]["annotations"]
        assert annotations["podcap.io/targets"] == f"{target.namespace}/{target.name}"
        assert annotations["podcap.io/requested-by"].endswith(f"@{socket.gethostname()}")
        assert annotations["podcap.io/expires"] > helper_pod["metadata"]["creationTimestamp"]
        assert wait_for(lambda: cluster.patches, 10)  # the first beat
        cluster.age_helpers(600)  # as old as any leftover, but the capture beats on
        assert wait_for(lambda: "podcap.io/heartbeat" in helper_pod["metadata"]["annotations"]
                        and cluster.patches[-1][2] != cluster.patches[0][2], 10)  # fmt: skip
        kept = podcap("cleanup", *kubeconfig)
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.startswith(f"kept pod {name}: a capture is using it (heartbeat ")
        assert kept.stdout.endswith(" s ago; --force deletes it)\n")
        assert len(cluster.helper_pods()) == 1 and run.poll() is None
        forced = podcap("cleanup", "--force", *kubeconfig)
        assert forced.stdout == f"deleted pod {name}\n"
        _, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 2, stderr
    assert stderr.splitlines()[-1].startswith(
        f"podcap: error: {target.namespace}/{target.name}: the connection to {target.node.name} "
        f"was lost (its helper pod {name} was deleted meanwhile: podcap cleanup --force?); "
    )
    assert f"podcap: helper {name}: already gone" in stderr


# --- item 1: the API server's own reason, caught by a server-side dry run --------------------

PSA_SAID = (
    'violates PodSecurity "baseline:latest": host namespaces (hostPID=true), privileged '
    '(container "capture" must not set securityContext.privileged=true)'
)
QUOTA_SAID = (
    'pods "{name}" is forbidden: exceeded quota: helpers, requested: limits.cpu=1, '
    "used: limits.cpu=2, limited: limits.cpu=2"
)
WEBHOOK_SAID = 'admission webhook "policy.example.com" denied the request: hostPID is not allowed'


def refusing(cluster, how: str) -> str:
    """Make admission refuse helpers ``how``; what the error must then quote."""
    if how == "podsecurity":  # the cluster-wide default, the namespace unlabelled
        cluster.pod_security_default = "baseline"
        return PSA_SAID
    if how == "quota":
        cluster.admission_refusals["podcap-system"] = (403, QUOTA_SAID)
        return "exceeded quota: helpers, requested: limits.cpu=1"
    cluster.admission_refusals["podcap-system"] = (400, WEBHOOK_SAID)
    return WEBHOOK_SAID


@pytest.mark.parametrize("how", ["podsecurity", "quota", "webhook"])
def test_admission_refusing_the_helper_is_said_in_its_words_before_anything_exists(
    make_kube_api, tmp_path, how
):
    cluster = shop_cluster()
    said = refusing(cluster, how)
    server = make_kube_api(cluster)
    done = podcap("capture", "web-0", "-n", "shop", "--kubeconfig", server.kubeconfig_path,
                  "-o", tmp_path / "out")  # fmt: skip
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("podcap: error: cannot create helper pod in namespace podcap-system: ")
    assert said in line and "RBAC" not in line
    if how == "podsecurity":
        assert line.endswith("(label the namespace pod-security.kubernetes.io/enforce=privileged, "
                             "or pass --helper-namespace with one that is)")  # fmt: skip
    assert [r for r in cluster.requests if r[1].endswith("?dryRun=All")] == [
        ("POST", "/api/v1/namespaces/podcap-system/pods?dryRun=All")
    ]
    assert cluster.helper_pods() == []
    assert [w for w in cluster.writes() if not w[1].endswith("selfsubjectaccessreviews")] == []


def test_dry_run_and_check_ask_the_api_server_to_admit_the_helper(make_kube_api):
    cluster = shop_cluster()
    said = refusing(cluster, "quota")
    server = make_kube_api(cluster)
    kubeconfig = ("--kubeconfig", server.kubeconfig_path)
    dry = podcap("capture", "web-0", "-n", "shop", "--dry-run", *kubeconfig)
    assert dry.returncode == 2 and "kind: Pod" in dry.stdout
    assert said in dry.stderr and len(dry.stderr.splitlines()) == 1
    checked = podcap("capture", "web-0", "-n", "shop", "--check", *kubeconfig)
    assert checked.returncode == 2
    assert any(line.startswith("NO  the API server admits the helpers (server-side dry run): "
                               "cannot create helper pod") and said in line
               for line in checked.stdout.splitlines()), checked.stdout  # fmt: skip
    cluster.admission_refusals.clear()
    admitted = podcap("capture", "web-0", "-n", "shop", "--dry-run", *kubeconfig)
    assert admitted.returncode == 0, admitted.stderr
    assert len(cluster.dry_runs) == 1 and cluster.helper_pods() == []
    assert [w for w in cluster.writes() if not w[1].endswith("selfsubjectaccessreviews")] == []


def test_an_rbac_refusal_at_create_still_reads_as_rbac(make_kube_api, tmp_path):
    """Access reviews allow it but the create is refused by the authorizer (a review cached
    before a role changed): the authorizer's words mean RBAC."""
    from podcap import locate
    from podcap.errors import ReachError
    from podcap.reach import pod as helper

    cluster = shop_cluster()
    server = make_kube_api(cluster)
    kube = locate.connect(str(server.kubeconfig_path))
    cluster.denied.add(("create", "pods", "podcap-system"))
    manifest = helper.helper_manifest(helper.HelperSpec(), "node-a", [])
    with pytest.raises(ReachError) as refused:
        helper.HelperPod(kube, manifest).create()
    assert str(refused.value) == (
        "RBAC denied: cannot create helper pod in namespace podcap-system "
        "(deploy/rbac.yaml grants it; or use --via ssh/local)"
    )


# --- item 5: each phase said, a helper's time to start given, a progress line that fits -----


def test_each_phase_is_said_in_order_from_created_to_deleted(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    cluster.start_delay = 1.0
    target = lab.pods[0]
    run = start_podcap("capture", target.name, "-n", target.namespace, "--kubeconfig",
                       server.kubeconfig_path, "-o", tmp_path / "out", text=True)  # fmt: skip
    try:
        wait_listening(cluster, 1)
        time.sleep(0.5)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 0, stderr
    helper_name = f"podcap-system/{cluster.deleted[0][1]}"
    pod = f"{target.namespace}/{target.name}"
    expected = [
        f"podcap: helper {helper_name} on {target.node.name}: created",
        f"podcap: helper {helper_name}: pending (ContainerCreating)",
        f"podcap: helper {helper_name}: running",
        f"podcap: capturing {pod} on {target.node.name} (session ",
        f"podcap: {pod}: listening on eth0",
        "podcap: interrupted: stopping (again stops at once)",
        f"podcap: helper {helper_name}: deleted",
        f"podcap: {pod}: 0 packets",
    ]
    lines = stderr.splitlines()
    assert len(lines) == len(expected), stderr
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_a_helper_slower_than_helper_timeout_is_named_and_deleted(make_kube_api, tmp_path):
    cluster = shop_cluster()
    cluster.start_delay = 60
    server = make_kube_api(cluster)
    started = time.monotonic()
    done = podcap("capture", "web-0", "-n", "shop", "--kubeconfig", server.kubeconfig_path,
                  "--helper-timeout", "1.5", "-o", tmp_path / "out", "-q")  # fmt: skip
    assert time.monotonic() - started < 20
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    name = f"podcap-system/{cluster.deleted[0][1]}"
    assert line == (
        f"podcap: error: helper pod {name} on node node-a not running after 1.5 s (pending "
        "(ContainerCreating)) (--helper-timeout gives it longer (a large image on a slow "
        "registry))"
    )
    assert cluster.helper_pods() == []


class Counters:
    """What the progress line reads of a capture's StreamProgress."""

    def __init__(self, packets: int, bytes_written: int, elapsed: float):
        self.packets, self.bytes_written, self.elapsed = packets, bytes_written, elapsed


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_the_progress_line_fits_the_terminal_and_names_pods_as_kubectl(width):
    from podcap.cli._capture_view import progress_line

    latest = {"default/web-a0": Counters(812, 96_400, 5.2),
              "default/web-b0": Counters(3, 180, 5.1)}  # fmt: skip
    line = progress_line(latest, width)
    assert len(line) <= width
    if width >= 120:
        assert line == ("podcap: default/web-a0: 812 packets  96.4 kB  default/web-b0: 3 packets"
                        "  180 B  5.2 s  18.6 kB/s  (Ctrl-C stops)")  # fmt: skip
    elif width >= 60:
        assert line.startswith("podcap: 2 pods: 815 packets  96.6 kB  5.2 s  18.6 kB/s")
    assert "_" not in line


# --- item 7: the node side ends itself when podcap dies ------------------------------------


def test_the_node_stops_capturing_soon_after_podcap_is_killed(kube_lab, tmp_path):
    """kill -9: nothing closes the exec (the in-test server, like a kubelet, keeps it), so only
    the lease ends the node's tcpdump: PODCAP_LEASE_SECONDS=10 here, 60 by default, where it
    used to run to its 4 h bound."""
    cluster, server, lab = kube_lab
    target = lab.pods[0]
    run = start_podcap(
        "capture", target.name, "-n", target.namespace, "--kubeconfig", server.kubeconfig_path,
        "-o", tmp_path / "out", env={**os.environ, "PODCAP_LEASE_SECONDS": "10"},
    )  # fmt: skip
    try:
        wait_listening(cluster, 1)
        node_script = cluster.execs[0].process
        [tcpdump] = wait_for(lambda: named(descendants(node_script.pid), "tcpdump"), 10)
        time.sleep(12)  # beats keep it going past the lease
        assert Path(f"/proc/{tcpdump}").exists()
        run.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert wait_for(lambda: not Path(f"/proc/{tcpdump}").exists(), 30)
        took = time.monotonic() - killed
    finally:
        run.kill()
        run.communicate()
    assert took < 25, took
    assert b"no word from podcap for 10 s: stopping" in cluster.execs[0].stderr
    assert node_script.wait(10) == 0  # and the node script ends as after a stop


def test_each_sidecar_says_when_its_window_began(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    out = tmp_path / "out"
    done = podcap("capture", "-l", "app=web", "-n", lab.pods[0].namespace, "--kubeconfig",
                  server.kubeconfig_path, "-d", "2", "-o", out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for pod in lab.pods:
        when = json.loads((out / f"{pod.namespace}_{pod.name}.pcap.json").read_text())["when"]
        assert when["started"] < when["listening"] < when["ended"], when


def test_captures_that_began_apart_say_so(capsys):
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from podcap.cli._capture_view import report

    def member(label: str, began: float):
        start = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
        result = SimpleNamespace(
            node_stats=None, output=f"{label}.pcap", packets=0, bytes_written=24, duration=2.0,
            ended_by="duration", node="node-a", bytes_received=24,
            listening=start + timedelta(seconds=began),
        )  # fmt: skip
        return SimpleNamespace(result=result, label=label, drops_result=None)

    report([member("default/web-a0", 0.02), member("default/web-b0", 0.5)], quiet=True)
    assert capsys.readouterr().err == (
        "podcap: warning: the captures began up to 0.48 s apart (each sidecar's when.listening): "
        "a packet seen at one point may predate another's window\n"
    )
    report([member("default/web-a0", 0.02), member("default/web-b0", 0.05)], quiet=True)
    assert capsys.readouterr().err == ""


# --- item 2: the node's view keeps a masqueraded connection, and has a closing line ---------


@pytest.mark.parametrize("node_filter", [None, "idc"])
def test_the_node_view_keeps_the_masqueraded_connection_and_says_how_it_ended(
    kube_lab, tmp_path, node_filter
):
    """The guide's IDC case: the node masquerades the Pod's connection, so on the NIC it
    carries the node's address, not the Pod's. By default the node view keeps -f's packets to
    and from the node's address; --node-filter says what to keep instead."""
    cluster, _, lab = kube_lab
    pod = lab.pods[0]
    out = tmp_path / "out"
    flags = ["--also-node"] + (["--node-filter", f"host {lab.idc.ip}"] if node_filter else [])
    stderr = capture_with_node_rules(kube_lab, pod, out, *flags, tcpdumps=2, client=pod,
                                     url=f"http://{lab.idc.ip}/to-idc")  # fmt: skip
    node_pcap = out / f"{pod.namespace}_{pod.name}.node.pcap"
    masqueraded = [p for p in pcap_packets(node_pcap) if b"GET /to-idc" in p]
    assert len(masqueraded) == 1
    ip = dpkt.ethernet.Ethernet(masqueraded[0]).data
    assert (socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)) == (pod.node.ip, lab.idc.ip)
    assert f"podcap: {pod.node.name} eth0 (--also-node): " in stderr
    assert f"to {node_pcap} (ended by duration)" in stderr


# --- item 8: an ephemeral container where no privileged helper is admitted ------------------


def test_ephemeral_captures_where_pod_security_refuses_the_helper(kube_lab, tmp_path):
    """Pod Security baseline everywhere: the hostPID, privileged helper is refused; an
    ephemeral container in the Pod (nothing privileged) is admitted and captures the Pod."""
    cluster, server, lab = kube_lab
    cluster.pod_security_default = "baseline"
    target, client = lab.pods[0], lab.pods[1]
    kubeconfig = ("--kubeconfig", server.kubeconfig_path)
    refused = podcap("capture", target.name, *kubeconfig, "-o", tmp_path / "no")
    assert refused.returncode == 2 and 'violates PodSecurity "baseline:latest"' in refused.stderr
    status, _, stderr = capture_while_fetching(kube_lab, target, client, "/ephemeral",
                                               "--ephemeral", "-f", "tcp port 80", "-d", "4",
                                               "-o", tmp_path / "out")  # fmt: skip
    assert status == 0, stderr
    pcap = tmp_path / "out" / f"{target.namespace}_{target.name}.pcap"
    assert any(b"GET /ephemeral" in p for p in pcap_packets(pcap))
    assert cluster.helper_pods() == [] and cluster.deleted == []
    pod = cluster.pods[(target.namespace, target.name)]
    [added] = pod["spec"]["ephemeralContainers"]
    assert added["targetContainerName"] == "web" and "securityContext" not in added
    [status] = pod["status"]["ephemeralContainerStatuses"]
    assert wait_for(lambda: "terminated" in status["state"], 10), status  # ended, as it can be
    # tcpdump ran in the Pod's namespace itself: no nsenter anywhere in the node script's argv.
    capture_exec = next(e for e in cluster.execs if "podcap-node" in e.command)
    assert capture_exec.command[:3] == ["ip", "netns", "exec"] and "--here" in capture_exec.command
    where = f"{target.namespace}/{target.name} (container {added['name']})"
    assert f"podcap: ephemeral container {where}: added" in stderr
    assert f"podcap: ephemeral container {where}: ended" in stderr
    sidecar = json.loads(Path(f"{pcap}.json").read_text())
    assert sidecar["point"]["pod"] == target.name and sidecar["counts"]["complete"] is True


def test_ephemeral_refuses_the_node_side_flags_and_dry_runs_its_patch(kube_lab, tmp_path):
    cluster, server, lab = kube_lab
    kubeconfig = ("--kubeconfig", server.kubeconfig_path)
    node_side = podcap("capture", lab.pods[0].name, *kubeconfig, "--ephemeral", "--also-node",
                       "--drops")  # fmt: skip
    assert (node_side.returncode, node_side.stderr) == (2, (
        "podcap: error: --also-node, --drops: the node's side needs a helper Pod on the node; "
        "--ephemeral captures from inside the Pod only\n"))  # fmt: skip
    dry = podcap("capture", lab.pods[0].name, *kubeconfig, "--ephemeral", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    import yaml

    [patch] = yaml.safe_load_all(dry.stdout)
    [container] = patch["spec"]["ephemeralContainers"]
    assert container["targetContainerName"] == "web"
    assert cluster.writes() == []


# --- seen beside the issue: credentials left on disk by a kill -9 ---------------------------


def test_a_killed_capture_leaves_no_credentials_in_tmpdir(kube_lab, tmp_path):
    """The kubeconfig carries its CA as data; the client would write it to $TMPDIR and remove
    it only at a normal exit. kill -9 must leave $TMPDIR as it found it."""
    cluster, server, lab = kube_lab
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    run = start_podcap("capture", lab.pods[0].name, "--kubeconfig", server.kubeconfig_path,
                       "-o", tmp_path / "out", env={**os.environ, "TMPDIR": str(tmpdir)})  # fmt: skip
    try:
        wait_listening(cluster, 1)
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=10)
    finally:
        run.kill()
    assert list(tmpdir.iterdir()) == []


def test_certificate_data_is_held_in_memory_not_in_tmpdir(tmp_path, monkeypatch):
    """A client certificate and key given as data are never left as files: each lives in a
    memfd for as long as podcap runs (a kill -9 takes it along)."""
    import base64
    import tempfile

    import yaml

    from podcap import locate

    data = {name: f"-----BEGIN {name}-----\n{name.lower()}\n-----END {name}-----\n"
            for name in ("CERTIFICATE AUTHORITY", "CERTIFICATE", "PRIVATE KEY")}  # fmt: skip
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1",
                      "certificate-authority-data": encoded["CERTIFICATE AUTHORITY"]}}],
        "users": [{"name": "u", "user": {"client-certificate-data": encoded["CERTIFICATE"],
                                         "client-key-data": encoded["PRIVATE KEY"],
                                         "token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    configuration = locate.connect(str(kubeconfig)).configuration
    held = {"CERTIFICATE AUTHORITY": configuration.ssl_ca_cert,
            "CERTIFICATE": configuration.cert_file, "PRIVATE KEY": configuration.key_file}  # fmt: skip
    for name, path in held.items():
        assert path.startswith("/proc/self/fd/"), (name, path)
        assert Path(path).read_text() == data[name]
    assert list(tmpdir.iterdir()) == []
    # Every request runs the token's refresh hook first; on the configuration all threads
    # share, the paths must never turn back into the removed files, not even for an instant
    # (another thread's request would read one): every value they are given is recorded.
    given: list[str] = []

    class Watched(type(configuration)):
        def __setattr__(self, name, value):
            if self is configuration and name in ("ssl_ca_cert", "cert_file", "key_file"):
                given.append(value)
            super().__setattr__(name, value)

    configuration.__class__ = Watched
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer t0ken"
    assert configuration.get_api_key_with_prefix("BearerToken") == "Bearer t0ken"
    assert all(value.startswith("/proc/self/fd/") for value in given), given
    assert (configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file) == tuple(
        held.values())  # fmt: skip
