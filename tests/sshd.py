"""A real OpenSSH server on 127.0.0.1 for the ssh transport's tests (a pytest plugin).

``sshd_server`` (module scope): sshd on a random free port, with a throwaway host key, a
throwaway client key in ``authorized_keys`` and a known_hosts file, all in a temporary directory
(``StrictModes no`` because that directory is not laid out like a home). ``SshServer.options``
are the ``ssh -o`` settings a client needs. At teardown sshd and every session it still serves
are ended by PID and the directory removed.
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

    def transport(self):
        """podcap's ssh transport to this server, as root with the throwaway key."""
        return open_transport(
            "ssh", self.host, ssh_user="root", ssh_port=self.port, ssh_key=self.key,
            ssh_options=self.options,
        )  # fmt: skip

    def session_pids(self) -> list[int]:
        """PIDs of the sshd processes serving connections (children of the listener)."""
        return _descendants(self.process.pid)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
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
