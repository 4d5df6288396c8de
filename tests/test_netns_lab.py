"""``podcap netns`` and ``podcap inspect`` for real, in the lab: the real ``podcap`` process,
reaching the "node" locally and through a real sshd on 127.0.0.1, entering a lab Pod's network
namespace found by its containerd:// ID in a kubelet-style cgroup."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from podcap.snat.iptables import load_iptables
from testbed.helpers import podcap

pytestmark = pytest.mark.timeout(120)

LISTENER = (
    "import socket, sys, time\n"
    "tcp = socket.socket(); tcp.bind(('0.0.0.0', int(sys.argv[1]))); tcp.listen()\n"
    "udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(('0.0.0.0', int(sys.argv[1])))\n"
    "print('listening', flush=True); time.sleep(120)\n"
)


@pytest.fixture(scope="module")
def via(sshd_server):
    """Flags that reach the node: ``via["local"]`` and ``via["ssh"]`` (real sshd, throwaway key)."""
    return {"local": ["--via", "local"], "ssh": sshd_server.cli_flags()}


def addresses(text: str) -> set[str]:
    """IPv4 addresses in ``ip -o -4 addr`` output."""
    return {line.split()[3].split("/")[0] for line in text.splitlines() if " inet " in line}


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_command_sees_the_pods_network_not_the_nodes(lab, via, how):
    pod = lab.pods[0]
    done = podcap(
        "netns", *via[how], "--container-id", pod.container_id, "--", "ip", "-o", "-4", "addr"
    )
    assert done.returncode == 0, done.stderr
    assert addresses(done.stdout) == {"127.0.0.1", pod.ip}
    # "The node" of --via local and of ssh to 127.0.0.1 is this machine's own namespace.
    own = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    assert addresses(own) - {"127.0.0.1"}
    assert addresses(own).isdisjoint(addresses(done.stdout) - {"127.0.0.1"})


def test_ssh_sudo_enters_the_pods_network_as_a_user_with_sudo(lab, sshd_server, sudo_users):
    pod = lab.pods[0]
    flags = [*sshd_server.cli_flags(sudo_users.without_password), "--ssh-sudo"]
    done = podcap(
        "netns", *flags, "--container-id", pod.container_id, "--", "ip", "-o", "-4", "addr"
    )
    assert done.returncode == 0, done.stderr
    assert addresses(done.stdout) == {"127.0.0.1", pod.ip}


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_exit_status_and_streams_pass_through(lab, via, how):
    pod = lab.pods[1]
    script = "echo to-stdout; echo to-stderr >&2; exit 7"
    done = podcap("netns", *via[how], "--container-id", pod.container_id, "--", "sh", "-c", script)
    assert done.returncode == 7
    assert done.stdout == "to-stdout\n"
    assert "to-stderr" in done.stderr


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_argv_is_passed_as_given_never_through_a_shell(lab, via, how, tmp_path):
    pod = lab.pods[0]
    canary = tmp_path / "canary"
    words = ["a b", f"$(touch {canary})", "; touch {canary}", "*", "'"]
    done = podcap(
        "netns", *via[how], "--container-id", pod.container_id, "--", "printf", "%s|", *words
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "|".join(words) + "|"
    assert not canary.exists()


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_interactive_shell_on_a_terminal(lab, via, how, terminal):
    pod = lab.pods[0]
    session = terminal("netns", *via[how], "--container-id", pod.container_id)
    session.read_until(b"] # ")
    prompt = f"[podcap netns container {pod.container_hex[:12]} @ ".encode()
    assert prompt in session.output
    # The markers are computed by the shell, so the echo of the typed line never matches them.
    session.send("echo BEGIN-$((1+1)); ip -o -4 addr; tty; echo DONE-$((6*7))\n")
    seen = session.read_until(b"DONE-42\r\n").decode(errors="replace")
    answer = seen.split("BEGIN-2\r\n", 1)[1]
    assert addresses(answer) == {"127.0.0.1", pod.ip}
    assert "/dev/pts/" in answer  # a real terminal on the node side (ssh -t)
    session.send("exit 5\n")
    assert session.wait() == 5


def test_shell_without_terminal_reads_commands_from_stdin(lab, via):
    pod = lab.pods[1]
    done = podcap("netns", "--container-id", pod.container_id, input="ip -o -4 addr\nexit 3\n")
    assert done.returncode == 3, done.stderr
    assert addresses(done.stdout) == {"127.0.0.1", pod.ip}


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_inspect_shows_the_pods_addresses_routes_and_a_socket_opened_in_it(lab, via, how):
    pod = lab.pods[0]
    port = 7000 + (os.getpid() % 900)
    listener = lab.popen(
        pod, [sys.executable, "-c", LISTENER, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout.readline().strip() == "listening"
        done = podcap("inspect", *via[how], "--container-id", pod.container_id, "-F", "json")
    finally:
        listener.kill()
        listener.wait()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    (summary,) = report["summary"]
    assert summary["addresses"] == pod.ip and summary["pid"] == pod.pid
    assert summary["via"] == how
    eth0 = [row for row in report["interfaces"] if row["interface"] == "eth0"]
    assert [row["address"] for row in eth0] == [pod.ip]
    default = [row for row in report["routes"] if row["dst"] == "default"]
    assert default and default[0]["gateway"] == pod.node.gateway
    mine = {row["proto"]: row for row in report["sockets"] if row["local_port"] == port}
    assert set(mine) == {"tcp", "udp"}
    assert mine["tcp"]["state"] == "LISTEN"
    assert mine["tcp"]["pids"].split(",") == [str(listener.pid)]
    assert "python" in mine["tcp"]["process"]
    servers = {row["local_port"] for row in report["sockets"] if row["proto"] == "tcp"}
    assert {pod.http_port, pod.marker_port} <= servers


def test_inspect_saves_the_nodes_nat_rules_for_analyze(lab, tmp_path):
    pod = lab.pods[0]
    # "The node" is a lab namespace here; a process living in it stands in for PID 1.
    stand_in = lab.popen(pod.node, ["sleep", "120"])
    done = podcap(
        "inspect",
        "--container-id",
        pod.container_id,
        "--node-rules",
        "--node-pid",
        str(stand_in.pid),
        "-o",
        str(tmp_path / "inspect.json"),
        "-F",
        "json",
    )
    assert done.returncode == 0, done.stderr
    (saved,) = tmp_path.glob("*.iptables-save.txt")
    text = saved.read_text()
    assert "*nat" in text and "IP-MASQ-AGENT" in text and "*filter" not in text
    rules = load_iptables(saved)  # what podcap analyze --iptables reads
    assert rules.rules
    (summary,) = json.loads((tmp_path / "inspect.json").read_text())["summary"]
    assert summary["rules_iptables-save"] == str(saved)
    assert str(saved) in done.stderr


# --- clear errors: one line, exit status 2 ---------------------------------------------------


def one_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("podcap: error: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_a_container_that_is_gone_is_a_clear_error(lab, via, how):
    gone = "containerd://" + "0f" * 32
    line = one_error(podcap("netns", *via[how], "--container-id", gone, "--", "true"))
    assert "no process on this node belongs to container" in line


def test_a_command_missing_on_the_node_is_a_clear_error(lab):
    pod = lab.pods[0]
    line = one_error(
        podcap("netns", "--container-id", pod.container_id, "--", "no-such-tool-here", "-x")
    )
    assert "no-such-tool-here is not found on node" in line


@pytest.fixture
def path_without(tmp_path):
    """``path_without(*tools)``: a PATH with every command of ours except ``tools`` (a node
    without them), as one directory of links."""

    def make(*missing: str) -> str:
        directory = tmp_path / "bin"
        directory.mkdir()
        for folder in os.environ["PATH"].split(os.pathsep):
            for entry in os.scandir(folder) if os.path.isdir(folder) else ():
                link = directory / entry.name
                if entry.name not in missing and not link.exists() and not link.is_symlink():
                    link.symlink_to(entry.path)
        for tool in missing:
            assert shutil.which(tool, path=str(directory)) is None
        return str(directory)

    return make


def test_nsenter_missing_on_the_node(lab, path_without):
    pod = lab.pods[0]
    env = os.environ | {"PATH": path_without("nsenter")}
    line = one_error(podcap("netns", "--container-id", pod.container_id, "--", "ip", "a", env=env))
    assert "nsenter is not found on node" in line


def test_ss_missing_on_the_node(lab, path_without):
    pod = lab.pods[0]
    env = os.environ | {"PATH": path_without("ss")}
    line = one_error(podcap("inspect", "--container-id", pod.container_id, env=env))
    assert "ss is not found on node" in line


def test_without_privilege_is_a_clear_error(lab):
    pod = lab.pods[0]
    # Root's uid with every capability dropped: not allowed into another network namespace.
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "podcap"]
    done = subprocess.run(
        [*drop, "netns", "--container-id", pod.container_id, "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_error(done)
    assert "not root" in line or "needs root" in line


def test_no_target_is_a_usage_error():
    for command in ("netns", "inspect"):
        line = one_error(podcap(command, "--via", "local"))
        assert "no target" in line


def _session_commands(session_id: int) -> list[str]:
    """The command names of the processes in a session (the terminal's)."""
    names = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                name, fields = f.read().rsplit(")", 1)
        except (OSError, ValueError):
            continue
        if fields.split()[3] == str(session_id):
            names.append(name.split("(", 1)[1])
    return names


def test_ctrl_c_ends_the_command_and_its_status_comes_back(lab, terminal):
    pod = lab.pods[0]
    session = terminal("netns", "--container-id", pod.container_id, "--", "sleep", "60")
    deadline = time.monotonic() + 20
    while "sleep" not in _session_commands(session.pid):  # the command runs in the Pod's netns
        assert time.monotonic() < deadline, session.output
        time.sleep(0.05)
    session.send("\x03")  # Ctrl-C on the terminal: SIGINT to the foreground process group
    assert session.wait() == 130  # 128 + SIGINT, as a shell reports it
    assert b"interrupted" not in session.output  # podcap itself did not die of it


@pytest.mark.parametrize("how", ["local", "ssh"])
def test_tty_flag_gives_a_command_a_terminal_on_the_node(lab, via, how, terminal):
    pod = lab.pods[1]
    with_tty = terminal("netns", *via[how], "-t", "--container-id", pod.container_id, "--", "tty")
    assert with_tty.wait() == 0
    assert b"/dev/pts/" in with_tty.output
    # Without -t a command gets no terminal, even from one (as kubectl exec without -t).
    without = terminal("netns", *via[how], "--container-id", pod.container_id, "--", "tty")
    if how == "ssh":
        assert without.wait() == 1 and b"not a tty" in without.output
    else:  # locally the command simply shares podcap's own terminal
        assert without.wait() == 0


def test_a_process_in_the_nodes_own_namespace_is_refused(lab):
    # This test's own process lives in the root namespace: "the node" for --via local.
    line = one_error(podcap("netns", "--pid", str(os.getpid()), "--", "true"))
    assert "shares the node's network namespace" in line
