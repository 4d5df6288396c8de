"""``podcap capture`` refuses, in one line and before reaching anything, a flag that does not
apply to the target given (a Pod, or a process on a node), instead of ignoring it."""

from __future__ import annotations

import pytest

from testbed.helpers import podcap

ID = "containerd://" + "ab" * 32

REFUSED = [
    # Pod targets are reached through a helper Pod: no ssh, no --node.
    (["web-0", "-n", "shop", "--ssh-user", "admin"],
     "--ssh-user is for --via local/ssh, not for Pod targets"),
    (["-l", "app=web", "--node", "node1", "--ssh-sudo"],
     "--node, --ssh-sudo are for --via local/ssh, not for Pod targets"),
    (["web-0", "--via", "ssh", "--node", "node1"],
     "a Pod goes through a helper Pod (--via pod); with --via ssh give --container-id or --pid"),
    (["web-0", "-A"], "-A goes with -l SELECTOR"),
    # A process on a node: none of the Kubernetes flags.
    (["--pid", "4242", "-n", "shop"], "-n/--namespace is for Pod targets, not for --container-id/--pid"),
    (["--container-id", ID, "--also-node", "--merge"],
     "--also-node, --merge are for Pod targets, not for --container-id/--pid"),
    (["--pid", "4242", "--image", "x", "--dry-run"],
     "--image, --dry-run are for Pod targets, not for --container-id/--pid"),
    (["--pid", "4242", "-l", "app=web"], "name Pods or give --container-id/--pid, not both"),
    (["web-0", "--container-id", ID], "name Pods or give --container-id/--pid, not both"),
    (["--pid", "4242", "--via", "pod"], "--via pod captures Pods (NAME -n NAMESPACE, or -l"),
    # --via local (the default) runs on this machine: no ssh login, no node name.
    (["--pid", "4242", "--ssh-user", "admin", "--ssh-port", "2222"],
     "--ssh-user, --ssh-port are for --via ssh; --via local runs on this machine"),
    (["--pid", "4242", "--node", "node1"], "--node is for --via ssh; --via local runs on this machine"),
    (["--pid", "4242", "--via", "local", "--ssh-sudo"], "--ssh-sudo is for --via ssh"),
    # --analyze reads the file the capture wrote.
    (["web-0", "-o", "-", "--analyze"], "--analyze needs a file"),
    (["--pid", "4242", "-o", "-", "--drops"], "--drops writes a file beside the pcap"),
]  # fmt: skip


@pytest.mark.parametrize("args,message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_flag_for_another_kind_of_target_is_refused_in_one_line(tmp_path, args, message):
    # No kubeconfig exists and nothing listens: the refusal comes before any connection.
    env = {"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = podcap("capture", *args, "-d", "1", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("podcap: error: "), done.stderr
    assert message in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []  # no capture.pcap, no helper output


def test_flags_that_fit_the_target_are_not_refused(tmp_path):
    # The shared flags go with a node target; the refusal is then the node's own.
    done = podcap(
        "capture", "--pid", "1", "-i", "lo", "-f", "tcp", "-s", "96", "--count", "1", "-q",
        "--via", "ssh", "-o", str(tmp_path / "x.pcap"),
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == "podcap: error: --via ssh needs --node HOST\n"


REFUSED_ELSEWHERE = [
    (["netns", "--pid", "4242", "-n", "shop", "--", "true"],
     "-n/--namespace is for Pod targets, not for --container-id/--pid"),
    (["netns", "web-0", "-n", "shop", "--node", "node1", "--", "true"],
     "--node is for --via local/ssh, not for Pod targets"),
    (["inspect", "--container-id", ID, "--kubeconfig", "k", "--image", "x"],
     "--kubeconfig, --image are for Pod targets, not for --container-id/--pid"),
    (["inspect", "web-0", "--ssh-user", "admin"],
     "--ssh-user is for --via local/ssh, not for Pod targets"),
]  # fmt: skip


@pytest.mark.parametrize(
    "args,message", REFUSED_ELSEWHERE, ids=[" ".join(a) for a, _ in REFUSED_ELSEWHERE]
)
def test_netns_and_inspect_refuse_the_same_way(tmp_path, args, message):
    env = {"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = podcap(*args, cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"podcap: error: {message}\n"


HABITS_REFUSED = [
    # kubectl's -c is the container; tcpdump's -c N (a count) would be read as one named "5".
    (["--pid", "4242", "-c", "5"], "-c 5: -c names the Pod's container, as in kubectl",
     "for tcpdump's packet count give --count 5"),
    (["web-0", "-c", "5"], "-c 5: -c names the Pod's container, as in kubectl", "--count 5"),
    (["--pid", "4242", "-d", "5x"], "invalid duration '5x' (e.g. 30, 30s, 5m, 1h)", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    "args,message,hint", HABITS_REFUSED, ids=[" ".join(a) for a, _, _ in HABITS_REFUSED]
)
def test_tcpdump_habits_that_would_mislead_are_refused_with_a_hint(tmp_path, args, message, hint):
    env = {"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = podcap("capture", *args, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(f"podcap: error: {message}") and hint in done.stderr


def test_tcpdump_habits_that_mean_the_same_are_taken():
    from podcap.capture.command import CaptureSettings, parse_duration

    assert CaptureSettings(snaplen=0).snaplen is None  # -s 0: whole packets
    assert [parse_duration(t) for t in ("30", "30s", "1.5m", "2h", "500ms")] == [
        30,
        30,
        90,
        7200,
        0.5,
    ]
    done = podcap("capture", "-h")
    assert "-o, -w, --output PATH" in done.stdout  # tcpdump's -w FILE
    assert "<str>" not in done.stdout and "<int>" not in done.stdout  # metavars are words
