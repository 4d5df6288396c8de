"""podcap capture for real, in the lab: "Pods" are network namespaces whose main process sits in
a kubelet-named cgroup (cgroupfs style for one Pod, systemd style for the other), found by their
containerd:// IDs; the node is this machine (local) or sshd on 127.0.0.1 (ssh)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from podcap.capture import CaptureSession, CaptureSpec, read_sidecar, resolve_pid
from podcap.reach import open_transport
from testbed.helpers import podcap, start_podcap, wait_for
from testbed.lab import tshark

pytestmark = pytest.mark.timeout(120)

SENDER = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
    "while True:\n"
    "    s.sendto(b'podcap-test '*8,(sys.argv[1],int(sys.argv[2])))\n"
    "    time.sleep(float(sys.argv[3]))\n"
)


_started: list[subprocess.Popen] = []


def started_podcap(*args: str, **kwargs) -> subprocess.Popen:
    """``podcap ARGS`` in the background, killed after the test if it is still running."""
    proc = start_podcap(*args, **kwargs)
    _started.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_podcap_left_running():
    """A test that fails half-way must not leave its podcap (and its tcpdump) running."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def netns_inode(netns_name: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{netns_name}').st_ino}]"


def tcpdumps_in(netns_name: str) -> list[int]:
    """PIDs of tcpdump processes inside a namespace (found through /proc, as a node would)."""
    wanted, found = netns_inode(netns_name), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if f.read().strip() != "tcpdump":
                    continue
            if os.readlink(f"/proc/{entry}/ns/net") == wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def udp_traffic(lab):
    """Start UDP packets from the second Pod to the first (port 9999) at a given interval."""
    senders = []

    def start(interval: float = 0.02):
        target, source = lab.pods[0], lab.pods[1]
        proc = lab.popen(source, [sys.executable, "-c", SENDER, target.ip, "9999", str(interval)])
        senders.append(proc)
        return proc

    yield start
    for proc in senders:
        proc.kill()
        proc.wait()


@pytest.fixture
def ssh_args(sshd_server):
    return sshd_server.cli_flags()


def capture_http_and_marker(lab, transport, pod, client, out: str):
    spec = CaptureSpec(container_id=pod.container_id, interface=pod.iface)
    session = CaptureSession(transport, spec, out, cluster={"pod": pod.name})
    session.start()
    try:
        report = session.wait_ready(timeout=30)
        assert report.ready, report
        assert lab.curl(client, f"http://{pod.ip}:{pod.http_port}/mytest").returncode == 0
        assert lab.send_marker(client, pod.ip, pod.marker_port).returncode == 0
    finally:
        session.stop()
    return session.run()


@pytest.mark.parametrize("pod_index", [0, 1], ids=["pod0", "pod1"])
def test_local_capture_by_containerd_id_sees_the_traffic(lab, tmp_path, pod_index):
    pod, client = lab.pods[pod_index], lab.pods[1 - pod_index]
    out = str(tmp_path / "local.pcap")
    result = capture_http_and_marker(lab, open_transport("local"), pod, client, out)

    assert result.pid == pod.pid  # found through /proc/*/cgroup from containerd://<id>
    assert result.ended_by == "stopped" and result.complete
    assert tshark.count(out, 'http.request.uri == "/mytest"')
    assert tshark.count(out, 'tcp contains "lbtest"')
    assert result.packets == tshark.count(out, "frame") == result.node_stats.captured
    sidecar = read_sidecar(out)
    assert sidecar["point"]["container_id"] == pod.container_hex
    assert sidecar["point"]["pid"] == pod.pid
    assert sidecar["point"]["interface"] == "eth0" and sidecar["cluster"] == {"pod": pod.name}
    assert sidecar["counts"]["tcpdump"]["dropped"] == 0 and sidecar["how"]["transport"] == "local"

    # podcap analyze finds the same request and the marker (exit status 0 means matched).
    for flags in (["--uri", "/mytest"], ["--contains", "lbtest"]):
        analyzed = podcap("analyze", out, *flags)
        assert analyzed.returncode == 0, analyzed.stderr


def test_ssh_capture_by_containerd_id_sees_the_traffic(lab, sshd_server, tmp_path):
    pod, client = lab.pods[0], lab.pods[1]
    out = str(tmp_path / "ssh.pcap")
    result = capture_http_and_marker(lab, sshd_server.transport(), pod, client, out)
    assert result.transport == "ssh" and result.pid == pod.pid and result.complete
    assert tshark.count(out, 'http.request.uri == "/mytest"')
    assert tshark.count(out, 'tcp contains "lbtest"')
    analyzed = podcap("analyze", out, "--uri", "/mytest")
    assert analyzed.returncode == 0, analyzed.stderr


def test_ssh_sudo_capture_as_a_user_with_sudo_sees_the_traffic(
    lab, sshd_server, sudo_users, tmp_path
):
    """A node where root cannot log in: a user with sudo, and --ssh-sudo."""
    pod, client = lab.pods[1], lab.pods[0]
    out = str(tmp_path / "sudo.pcap")
    transport = sshd_server.transport(user=sudo_users.without_password, sudo=True)
    result = capture_http_and_marker(lab, transport, pod, client, out)
    assert result.transport == "ssh" and result.pid == pod.pid and result.complete
    assert tshark.count(out, 'http.request.uri == "/mytest"')
    assert tshark.count(out, 'tcp contains "lbtest"')
    assert result.packets == tshark.count(out, "frame")


def test_ssh_as_a_user_without_root_is_one_line_that_says_what_to_do(
    lab, sshd_server, sudo_users, tmp_path
):
    pod = lab.pods[0]
    out = tmp_path / "x.pcap"
    target = ["--container-id", pod.container_id, "-d", "5", "-o", str(out)]
    cases = [
        # No --ssh-sudo: the node script finds it is not root.
        (sudo_users.without_password, [], ["not root", "--ssh-sudo"]),
        # sudo wants a password: sudo -n refuses, and podcap says what sudo needs.
        (sudo_users.with_password, ["--ssh-sudo"], ["a password is required", "NOPASSWD"]),
    ]
    for user, extra, words in cases:
        done = podcap("capture", *sshd_server.cli_flags(user), *extra, *target)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("podcap: error:"), done.stderr
        assert all(word in lines[0] for word in words), lines[0]
        assert "Traceback" not in done.stderr and not out.exists()
    assert not tcpdumps_in(pod.netns)


def test_ctrl_c_over_ssh_leaves_a_valid_file(lab, ssh_args, udp_traffic, tmp_path):
    pod = lab.pods[0]
    out = str(tmp_path / "ctrlc.pcap")
    udp_traffic()
    proc = started_podcap(
        "capture", *ssh_args, "--container-id", pod.container_id, "-f", "udp port 9999", "-o", out
    )
    assert wait_for(lambda: tcpdumps_in(pod.netns)), "timed out waiting for tcpdump in the Pod"
    assert wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 200), (
        "timed out waiting for packets"
    )
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "ended by interrupted" in stderr.decode()
    assert tshark.count(out, "frame") == json.load(open(out + ".json"))["counts"]["packets"] > 0
    assert wait_for(lambda: not tcpdumps_in(pod.netns), timeout=10), (
        "timed out waiting for tcpdump to end"
    )


@pytest.mark.parametrize(
    "flags,ended_by",
    [(["--duration", "2"], "duration"), (["--count", "5"], "count"),
     (["--max-size", "3000"], "max-size")],
)  # fmt: skip
def test_stop_conditions_leave_a_valid_file(lab, udp_traffic, tmp_path, flags, ended_by):
    pod = lab.pods[0]
    out = str(tmp_path / "limited.pcap")
    udp_traffic(0.01)
    started = time.monotonic()
    proc = started_podcap(
        "capture", "--container-id", pod.container_id, "-f", "udp", "-o", out, *flags
    )
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    sidecar = read_sidecar(out)
    assert sidecar["counts"]["ended_by"] == ended_by
    packets = tshark.count(out, "frame")
    assert packets == sidecar["counts"]["packets"] > 0
    if ended_by == "count":
        assert packets == 5
    if ended_by == "max-size":
        assert os.path.getsize(out) <= 3000
    if ended_by == "duration":
        assert time.monotonic() - started < 15
    assert wait_for(lambda: not tcpdumps_in(pod.netns), timeout=10), (
        "timed out waiting for tcpdump to end"
    )


def test_sigterm_stops_cleanly(lab, udp_traffic, tmp_path):
    pod = lab.pods[1]
    out = str(tmp_path / "term.pcap")
    udp_traffic()  # to pods[0]: this capture may see nothing, the file must still be valid
    proc = started_podcap("capture", "--container-id", pod.container_id, "-o", out)
    assert wait_for(lambda: tcpdumps_in(pod.netns)), "timed out waiting for tcpdump in the Pod"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert read_sidecar(out)["counts"]["ended_by"] == "terminated"
    assert tshark.count(out, "frame") == read_sidecar(out)["counts"]["packets"]


def test_killed_ssh_connection_leaves_a_valid_partial_pcap_and_no_tcpdump(
    lab, sshd_server, udp_traffic, tmp_path
):
    pod = lab.pods[0]
    out = str(tmp_path / "lost.pcap")
    udp_traffic(0.005)
    spec = CaptureSpec(container_id=pod.container_id, bpf_filter="udp port 9999")
    session = CaptureSession(sshd_server.transport(), spec, out)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(session.run)
        try:
            assert wait_for(lambda: session.progress.packets >= 20), (
                "timed out waiting for packets to arrive"
            )
            os.kill(session._process.pid, signal.SIGKILL)  # the ssh client dies: connection lost
            result = running.result(timeout=30)
        finally:
            session.kill()

    assert result.ended_by == "connection-lost" and not result.complete
    assert tshark.count(out, "frame") == result.packets >= 20
    assert read_sidecar(out)["counts"]["ended_by"] == "connection-lost"
    # The node script saw stdin EOF and stopped tcpdump: nothing is left in the Pod's namespace.
    assert wait_for(lambda: not tcpdumps_in(pod.netns), timeout=15), (
        "timed out waiting for the remote tcpdump to end"
    )


def test_pcap_to_stdout(lab, udp_traffic, tmp_path):
    pod = lab.pods[0]
    out = tmp_path / "stdout.pcap"
    udp_traffic()
    with open(out, "wb") as sink:
        done = podcap(
            "capture", "--container-id", pod.container_id, "-f", "udp", "--count", "3", "-o", "-",
            capture_output=False, stdout=sink, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert tshark.count(str(out), "frame") == 3
    assert not os.path.exists(str(out) + ".json")


def test_unknown_container_id_is_a_clear_error(tmp_path):
    out = tmp_path / "none.pcap"
    proc = started_podcap("capture", "--container-id", "containerd://" + "ab" * 32, "-o", str(out))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "no process on this node belongs to container abab" in stderr.decode()
    assert not out.exists()


def test_a_pid_in_the_node_network_is_refused(tmp_path):
    proc = started_podcap("capture", "--pid", str(os.getpid()), "-o", str(tmp_path / "x.pcap"))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "shares the node's network" in stderr.decode()


def test_a_filter_tcpdump_rejects_is_reported_with_its_message(lab, tmp_path):
    proc = started_podcap(
        "capture", "--container-id", lab.pods[0].container_id, "-f", "tcp port",
        "-o", str(tmp_path / "x.pcap"),
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "can't parse filter expression" in stderr.decode()


def test_analyze_prints_the_summary_of_the_capture(lab, udp_traffic, tmp_path):
    out = str(tmp_path / "summary.pcap")
    udp_traffic()
    done = podcap(
        "capture", "--container-id", lab.pods[0].container_id,
        "-f", "udp", "--count", "4", "-o", out, "--analyze",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert out in done.stdout
    assert re.search(r"packets\W+4\b", done.stdout), done.stdout
    assert lab.pods[0].container_hex in done.stdout  # analyze read the sidecar


def test_resolve_pid_for_both_cgroup_styles_local_and_ssh(lab, sshd_server):
    styles = {pod.cgroup_style for pod in lab.pods}
    assert styles == {"cgroupfs", "systemd"}, styles  # the "mixed" lab covers both drivers
    for transport in (open_transport("local"), sshd_server.transport()):
        for pod in lab.pods:
            assert resolve_pid(transport, pod.container_id) == pod.pid
            assert resolve_pid(transport, pod.container_hex[:12]) == pod.pid  # a short ID


def test_cli_reports_a_lost_connection_and_keeps_the_packets(lab, ssh_args, udp_traffic, tmp_path):
    pod = lab.pods[0]
    out = str(tmp_path / "cli-lost.pcap")
    udp_traffic()
    proc = started_podcap(
        "capture", *ssh_args, "--container-id", pod.container_id, "-f", "udp port 9999", "-o", out
    )
    assert wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 500), (
        "timed out waiting for packets"
    )
    ssh_clients = [pid for pid in child_pids(proc.pid) if comm(pid) == "ssh"]
    assert len(ssh_clients) == 1
    os.kill(ssh_clients[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "connection to 127.0.0.1 was lost" in stderr.decode()
    assert tshark.count(out, "frame") == read_sidecar(out)["counts"]["packets"] > 0
    assert wait_for(lambda: not tcpdumps_in(pod.netns), timeout=15), (
        "timed out waiting for the remote tcpdump to end"
    )


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_the_nodes_own_view_is_captured_from_a_pid_in_its_network(tmp_path):
    # --also-node's capture: this test's process is in this machine's ("the node's") network
    # namespace, which a Pod capture refuses (the test above) and the node's view asks for
    # (in a helper Pod it is PID 1's); lo carries the traffic.
    out = str(tmp_path / "node.pcap")
    spec = CaptureSpec(pid=os.getpid(), node_view=True, interface="lo", bpf_filter="udp port 9998")
    session = CaptureSession(open_transport("local"), spec, out)
    session.start()
    try:
        assert session.wait_ready(timeout=30).ready
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for _ in range(5):
                sender.sendto(b"node view", ("127.0.0.1", 9998))
    finally:
        session.stop()
    result = session.run()
    assert result.pid == os.getpid() and result.complete
    assert result.packets == tshark.count(out, 'udp contains "node view"') == 5
