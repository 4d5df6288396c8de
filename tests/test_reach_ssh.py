"""podcap.reach.ssh against a real sshd on 127.0.0.1, and the transport contract checked on
local and ssh side by side.
"""

import time

import pytest

from podcap.errors import ReachError, UsageError
from podcap.reach import open_transport
from podcap.reach.ssh import ssh_argv

AWKWARD_ARGS = ["a b", "it's", '"$(id)"', "; echo pwned", "`id`", "*", "tab\there", "new\nline"]


@pytest.fixture
def ssh_transport(sshd_server):
    return sshd_server.transport()


@pytest.mark.parametrize("via", ["local", "ssh"])
def test_arguments_arrive_unchanged(via, request):
    transport = (
        open_transport("local") if via == "local" else request.getfixturevalue("ssh_transport")
    )
    done = transport.run(["printf", "%s\\0", *AWKWARD_ARGS])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(b"\0")[:-1] == [a.encode() for a in AWKWARD_ARGS]


@pytest.mark.parametrize("via", ["local", "ssh"])
def test_stop_closes_stdin_and_the_command_ends(via, request):
    transport = (
        open_transport("local") if via == "local" else request.getfixturevalue("ssh_transport")
    )
    process = transport.start(["sh", "-c", "echo started; cat >/dev/null; echo saw-eof >&2"])
    assert process.stdout.readline() == b"started\n"
    process.stop()
    assert process.wait(timeout=15) == 0
    assert "saw-eof" in process.stderr_text()


@pytest.mark.parametrize("via", ["local", "ssh"])
def test_wait_timeout_is_a_reach_error_and_leaves_the_command_running(via, request):
    transport = (
        open_transport("local") if via == "local" else request.getfixturevalue("ssh_transport")
    )
    process = transport.start(["sh", "-c", "echo started; cat >/dev/null"])
    try:
        assert process.stdout.readline() == b"started\n"
        where = "on this machine" if via == "local" else "ssh to"
        with pytest.raises(ReachError, match=f"{where}.* still running after 0.2 s"):
            process.wait(timeout=0.2)
        process.stop()  # the timeout did not end it: a clean stop still does
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()


def test_stdout_is_binary_clean_over_ssh(ssh_transport):
    payload = bytes(range(256)) * 64
    done = ssh_transport.run(["sh", "-c", "head -c 16384 /dev/zero | tr '\\0' '\\377'"])
    assert done.stdout == b"\xff" * 16384
    process = ssh_transport.start(["cat"])
    process._popen.stdin.write(payload)  # the transport's own pipe, to feed bytes through
    process.stop()
    assert process.stdout.read() == payload
    process.wait(timeout=15)


def test_a_killed_connection_gives_the_node_command_stdin_eof(ssh_transport, tmp_path):
    # What the node script relies on to stop tcpdump when the connection is lost: ssh gives
    # no signal to a command without a tty, but its stdin reaches EOF.
    marker = tmp_path / "saw-eof"
    process = ssh_transport.start(["sh", "-c", f"echo up; cat >/dev/null; touch {marker}"])
    assert process.stdout.readline() == b"up\n"
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the remote command never saw stdin EOF"


def test_wrong_key_is_a_reach_error_from_ssh(sshd_server, tmp_path):
    from podcap.capture import CaptureSession, CaptureSpec

    transport = open_transport(
        "ssh", sshd_server.host, ssh_user="root", ssh_port=sshd_server.port,
        ssh_key=str(tmp_path / "no-such-key"), ssh_options=sshd_server.options,
    )  # fmt: skip
    with pytest.raises(ReachError, match="Permission denied|cannot run the capture"):
        CaptureSession(transport, CaptureSpec(pid=1), str(tmp_path / "x.pcap")).run()
    assert not (tmp_path / "x.pcap").exists()


def test_ssh_argv_keeps_user_options_first_and_refuses_bad_input():
    argv = ssh_argv("node1", ["echo", "a b"], user="u", port=2222, options=["BatchMode=no"])
    assert argv[argv.index("-o") + 1] == "BatchMode=no"  # ssh keeps the first value given
    assert argv[-3:] == ["--", "node1", "echo 'a b'"]
    with pytest.raises(UsageError):
        ssh_argv("-oProxyCommand=evil", ["true"])
    with pytest.raises(UsageError):
        ssh_argv("node1", ["true"], options=["ProxyCommand evil"])
    with pytest.raises(UsageError):
        open_transport("ssh")
    with pytest.raises(UsageError):
        open_transport("carrier-pigeon")
    with pytest.raises(UsageError, match="--node is for --via ssh"):
        open_transport("local", "node1")
    with pytest.raises(UsageError, match="--ssh-sudo is for --via ssh"):
        open_transport("local", ssh_sudo=True)


def test_ssh_sudo_runs_the_command_as_root_through_sudo_n():
    argv = ssh_argv("node1", ["sh", "-c", "id -u"], user="ec2-user", sudo=True)
    assert argv[-1] == "sudo -n -- sh -c 'id -u'"


def test_a_user_with_sudo_becomes_root_only_with_ssh_sudo(sshd_server, sudo_users):
    user = sudo_users.without_password
    plain = sshd_server.transport(user=user).run(["id", "-un"])
    assert (plain.returncode, plain.stdout.decode().strip()) == (0, user)  # really not root
    elevated = sshd_server.transport(user=user, sudo=True).run(["id", "-un"])
    assert (elevated.returncode, elevated.stdout.decode().strip()) == (0, "root")
    # Arguments still arrive exactly as given, through ssh's shell and sudo.
    echoed = sshd_server.transport(user=user, sudo=True).run(["printf", "%s|", *AWKWARD_ARGS])
    assert echoed.stdout.decode() == "".join(f"{a}|" for a in AWKWARD_ARGS)
