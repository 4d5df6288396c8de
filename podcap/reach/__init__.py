"""Reaching a node: pick a transport by name. See ``podcap.reach.base`` for the interface."""

from __future__ import annotations

from collections.abc import Iterable

from podcap.errors import UsageError
from podcap.reach.base import Completed, RemoteProcess, Transport

TRANSPORTS = ("local", "ssh")

__all__ = ["Completed", "RemoteProcess", "Transport", "TRANSPORTS", "open_transport"]


def open_transport(
    via: str,
    node: str | None = None,
    *,
    ssh_user: str | None = None,
    ssh_port: int | None = None,
    ssh_key: str | None = None,
    ssh_options: Iterable[str] = (),
    ssh_sudo: bool = False,
) -> Transport:
    """A transport to ``node``: ``local`` (this machine) or ``ssh`` (system OpenSSH).

    Raises UsageError for an unknown transport or a missing/invalid/unwanted node; nothing
    connects here (ssh connects per command).
    """
    if via == "local":
        if ssh_sudo:
            raise UsageError("--ssh-sudo is for --via ssh; --via local runs as podcap's own user")
        if node:
            raise UsageError("--node is for --via ssh; --via local runs on this machine")
        from podcap.reach.local import LocalTransport

        return LocalTransport()
    if via == "ssh":
        if not node:
            raise UsageError("--via ssh needs --node HOST")
        from podcap.reach.ssh import SshTransport

        return SshTransport(
            node, user=ssh_user, port=ssh_port, key=ssh_key, options=ssh_options, sudo=ssh_sudo
        )
    raise UsageError(f"unknown transport {via!r} (choose from {', '.join(TRANSPORTS)})")
