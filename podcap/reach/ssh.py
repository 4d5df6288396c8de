"""The ``ssh`` transport: the system OpenSSH client, so ``~/.ssh/config``, keys, the agent and
jump hosts work as they do for the user's own ``ssh``.

ssh hands the remote side one command string, which the login shell parses; argv is therefore
joined with ``shlex.quote`` per item, so no argument (the BPF filter included) is ever
interpreted by that shell. The login shell must be POSIX-like (sh, bash, dash, zsh, ksh).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from podcap.errors import UsageError
from podcap.reach.base import Completed
from podcap.reach.local import PopenProcess, run_to_end

# Defaults come after the user's -o options: ssh keeps the first value it sees for an option,
# so the user's choice wins. BatchMode: never wait on a password prompt nobody can answer;
# keepalives: notice a dead connection (then the node script sees stdin EOF and stops).
DEFAULT_OPTIONS = (
    "BatchMode=yes",
    "ConnectTimeout=15",
    "ServerAliveInterval=10",
    "ServerAliveCountMax=3",
)
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*=.*$")


def check_ssh_option(option: str) -> str:
    """One ``KEY=VALUE`` for ``ssh -o``; UsageError for anything else."""
    if not _OPTION.match(option) or "\n" in option:
        raise UsageError(f"--ssh-option {option!r} is not KEY=VALUE (e.g. ProxyJump=bastion)")
    return option


def ssh_argv(
    node: str,
    remote_argv: list[str],
    *,
    user: str | None = None,
    port: int | None = None,
    key: str | None = None,
    options: Iterable[str] = (),
    ssh: str = "ssh",
    sudo: bool = False,
    tty: bool = False,
) -> list[str]:
    """The local ``ssh`` argv that runs ``remote_argv`` on ``node`` (pure; no I/O). ``sudo``
    runs it as root through ``sudo -n`` (never a password prompt: nobody could answer it);
    ``tty`` asks for a terminal on the node (``ssh -t``: podcap netns's interactive shell)."""
    if not node or node.startswith("-") or any(c.isspace() for c in node):
        raise UsageError(f"invalid node name {node!r} for ssh")
    # No tty unless asked (binary-clean stdout), no escape character.
    argv = [ssh, "-t" if tty else "-T", "-e", "none"]
    for option in [*options, *DEFAULT_OPTIONS]:
        argv += ["-o", check_ssh_option(option)]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", str(port)]
    if key:
        argv += ["-i", key]
    if sudo:
        remote_argv = ["sudo", "-n", "--", *remote_argv]
    return [*argv, "--", node, shlex.join(remote_argv)]


class SshTransport:
    """Runs commands on a node over the user's OpenSSH client."""

    name = "ssh"

    def __init__(
        self,
        node: str,
        *,
        user: str | None = None,
        port: int | None = None,
        key: str | None = None,
        options: Iterable[str] = (),
        ssh: str = "ssh",
        sudo: bool = False,
    ):
        self.node = node
        self._settings = dict(
            user=user, port=port, key=key, options=tuple(options), ssh=ssh, sudo=sudo
        )
        ssh_argv(node, ["true"], **self._settings)  # validate everything before any connection

    def argv_for(self, remote_argv: list[str], tty: bool = False) -> list[str]:
        return ssh_argv(self.node, remote_argv, **self._settings, tty=tty)

    def start(self, argv: list[str]) -> PopenProcess:
        return PopenProcess(self.argv_for(argv), what=f"ssh to {self.node}")

    def run(self, argv: list[str], timeout: float = 60) -> Completed:
        done = run_to_end(self.argv_for(argv), f"ssh to {self.node}", timeout)
        return Completed(list(argv), done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        pass
