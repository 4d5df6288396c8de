"""Errors podcap raises. The CLI turns each into one line on stderr and exit status 2.

The library never prints and never exits: it raises one of these with a message that says
what went wrong and where, and optionally a hint that says what to try next.
"""


class PodcapError(Exception):
    """Base of every error podcap reports to the user (exit status 2, no traceback)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(PodcapError):
    """A flag or argument is wrong, or two of them contradict each other."""


class DecodeError(PodcapError):
    """A capture file cannot be read: missing, not a capture, or broken beyond its header."""


class FilterError(PodcapError):
    """A display filter does not parse, or names a field podcap cannot evaluate."""


class LocateError(PodcapError):
    """A Kubernetes target cannot be resolved: no such Pod, not running, access denied."""


class ReachError(PodcapError):
    """A node cannot be reached: ssh failed, helper Pod failed, connection dropped."""


class CaptureError(PodcapError):
    """The node-side capture failed: no such container, tcpdump missing, bad BPF filter."""


class ClusterError(PodcapError):
    """A Dask cluster could not do the work: its scheduler gone, its workers lost."""
