"""How a command runs on a node: the one small interface every transport implements.

A transport starts an argv on a node (no shell string is built from user input: each
transport passes argv through as a list, quoting only where its channel forces a string, as
ssh does, and then with ``shlex.quote`` per item). It gives back a ``RemoteProcess`` whose
stdout is a binary stream read as it arrives, whose stderr arrives separately, and which can
be asked to stop (the node-side script stops tcpdump with SIGINT when asked, so the pcap is
flushed) or killed.

Transports: ``local`` (this machine is the node), ``ssh`` (system OpenSSH), ``pod`` (a
privileged helper Pod and the exec API). See ``podcap.reach.open_transport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

# Without --duration the node still stops tcpdump after this long, in case the stop signal
# never arrives (an exec stream that cannot close stdin, a client that vanished). The capture's
# node script enforces it; a helper Pod's deadline (podcap.reach.pod) is set from it.
DEFAULT_TIME_BOUND = 4 * 3600


@dataclass(frozen=True)
class Completed:
    """A finished command, shaped like ``subprocess.CompletedProcess``."""

    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: bytes


class RemoteProcess(Protocol):
    """A command running on a node.

    ``stdout`` must return bytes as they arrive: ``read1(n)`` (or ``read(n)``) gives what is
    available, up to n, without waiting to fill n, and b"" only at the end of the stream (the
    capture copies it with ``podcap.capture.stream.read_chunks``). ``stop()`` is how every capture
    ends cleanly: the node script stops tcpdump on stdin EOF or on a line ``stop`` on stdin.
    """

    stdout: BinaryIO

    def stderr_text(self) -> str:
        """Everything the command has written to stderr so far."""

    def stop(self) -> None:
        """Ask the command to finish cleanly (the capture script SIGINTs tcpdump)."""

    def beat(self) -> None:
        """Say on its stdin that the client is alive (a line the capture script counts as a
        beat); a command already ended or stopped is left alone."""

    def kill(self) -> None:
        """End the command and anything it started on the node, now."""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command to end and return its exit status.

        When it is still running after ``timeout`` seconds, raise ``ReachError`` (a PodcapError,
        never the builtin TimeoutError) saying what still runs and where; the command keeps
        running, so a caller that wants it gone calls ``kill()``."""


class Transport(Protocol):
    """Runs commands on one node."""

    name: str
    node: str

    def start(self, argv: list[str]) -> RemoteProcess:
        """Start ``argv`` on the node and return at once."""

    def run(self, argv: list[str], timeout: float = 60) -> Completed:
        """Run ``argv`` on the node to the end and collect its output."""

    def close(self) -> None:
        """Release what the transport holds (connections, helper Pods)."""
