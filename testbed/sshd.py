"""A real OpenSSH server on 127.0.0.1 for the ssh transport's tests (a pytest plugin).

``sshd_server`` (module scope): sshd on a random free port, with a throwaway host key, a
throwaway client key in ``authorized_keys`` and a known_hosts file, all in a temporary directory
(``StrictModes no`` because that directory is not laid out like a home; it and
``authorized_keys`` are world-readable, since sshd reads the keys as the user logging in).
``SshServer.options`` are the ``ssh -o`` settings a client needs. At teardown sshd and every
session it still serves are ended by PID and the directory removed.

``sudo_users`` (module scope): two throwaway accounts that log in with the same key, one with
sudo without a password, one whose sudo wants a password, as on cloud nodes where root cannot
log in. They and their sudoers files are removed at teardown; accounts a killed run left
behind (named ``pcsudo*``) are removed before new ones are made.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from podcap.reach import open_transport
from testbed.helpers import descendants, free_port

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshServer:
    host: str
    port: int
    key: str  # the client's private key
    known_hosts: str
    process: subprocess.Popen

    @property
    def options(self) -> list[str]:
        return [
            f"UserKnownHostsFile={self.known_hosts}",
            "StrictHostKeyChecking=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "LogLevel=ERROR",
        ]

    def ssh_argv(self, *remote: str) -> list[str]:
        argv = ["ssh", "-T", "-p", str(self.port), "-i", self.key, "-l", "root"]
        for option in self.options:
            argv += ["-o", option]
        return [*argv, self.host, *remote]

    def transport(self, user: str = "root", sudo: bool = False):
        """podcap's ssh transport to this server, as ``user`` with the throwaway key."""
        return open_transport(
            "ssh", self.host, ssh_user=user, ssh_port=self.port, ssh_key=self.key,
            ssh_options=self.options, ssh_sudo=sudo,
        )  # fmt: skip

    def cli_flags(self, user: str = "root") -> list[str]:
        """``podcap capture``/``netns`` flags that reach this server as ``user``."""
        flags = ["--via", "ssh", "--node", self.host, "--ssh-user", user,
                 "--ssh-port", str(self.port), "--ssh-key", self.key]  # fmt: skip
        for option in self.options:
            flags += ["--ssh-option", option]
        return flags

    def session_pids(self) -> list[int]:
        """PIDs of the sshd processes serving connections (children of the listener)."""
        return descendants(self.process.pid)


def _keygen(path: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    with open(path + ".pub") as f:
        return f.read().strip()


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {process.stderr.read().decode()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("sshd did not listen in time")


def _start_sshd(directory: str) -> SshServer:
    host_public = _keygen(os.path.join(directory, "host_key"))
    client_public = _keygen(os.path.join(directory, "client_key"))
    with open(os.path.join(directory, "authorized_keys"), "w") as f:
        f.write(client_public + "\n")
    os.chmod(directory, 0o755)  # the private keys stay 0600
    os.chmod(os.path.join(directory, "authorized_keys"), 0o644)
    port = free_port()
    with open(os.path.join(directory, "known_hosts"), "w") as f:
        f.write(f"[127.0.0.1]:{port} {host_public}\n")
    config = os.path.join(directory, "sshd_config")
    with open(config, "w") as f:
        f.write(
            f"Port {port}\nListenAddress 127.0.0.1\n"
            f"HostKey {directory}/host_key\nPidFile {directory}/sshd.pid\n"
            f"AuthorizedKeysFile {directory}/authorized_keys\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nMaxStartups 50\nMaxSessions 50\n"
        )
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", config], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, process)
    except RuntimeError:
        process.kill()
        process.wait()
        raise
    return SshServer(
        "127.0.0.1",
        port,
        os.path.join(directory, "client_key"),
        os.path.join(directory, "known_hosts"),
        process,
    )


def _stop_sshd(server: SshServer) -> None:
    sessions = server.session_pids()
    server.process.terminate()
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    for pid in sessions:  # sessions outlive the listener: end them too, by PID
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def sshd_server() -> Iterator[SshServer]:
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip("the sshd fixture needs root and OpenSSH's sshd")
    directory = tempfile.mkdtemp(prefix="pcsshd")
    try:
        server = _start_sshd(directory)
        try:
            yield server
        finally:
            _stop_sshd(server)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


SUDO_USER_PREFIX = "pcsudo"


@dataclass
class SudoUsers:
    without_password: str  # sudo -n works
    with_password: str  # sudo wants a password, so sudo -n refuses


@pytest.fixture(scope="module")
def sudo_users() -> Iterator[SudoUsers]:
    if os.geteuid() != 0 or not shutil.which("sudo") or not shutil.which("useradd"):
        pytest.skip("the sudo_users fixture needs root, sudo and useradd")
    _remove_sudo_users(_leftover_sudo_users())
    tag = os.urandom(3).hex()
    users = SudoUsers(f"{SUDO_USER_PREFIX}{tag}n", f"{SUDO_USER_PREFIX}{tag}p")
    try:
        for name, rule in ((users.without_password, "NOPASSWD: ALL"), (users.with_password, "ALL")):
            # Password "*": none works, yet the account is not locked (sshd refuses locked ones).
            subprocess.run(["useradd", "-M", "-d", "/tmp", "-s", "/bin/sh", "-p", "*", name],
                           check=True)  # fmt: skip
            with open(_sudoers_file(name), "w") as f:
                f.write(f"{name} ALL=(ALL) {rule}\n")
            os.chmod(_sudoers_file(name), 0o440)
        yield users
    finally:
        _remove_sudo_users([users.without_password, users.with_password])


def _sudoers_file(name: str) -> str:
    return f"/etc/sudoers.d/{name}"


def _leftover_sudo_users() -> list[str]:
    with open("/etc/passwd") as f:
        names = [line.split(":", 1)[0] for line in f]
    return [name for name in names if name.startswith(SUDO_USER_PREFIX)]


def _remove_sudo_users(names: list[str]) -> None:
    for name in names:
        if shutil.which("pkill"):  # a session still open would keep userdel from working
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", name], capture_output=True)
        if os.path.exists(_sudoers_file(name)):
            os.remove(_sudoers_file(name))
