"""Pure pieces of a capture: the node script's argv, the checks on user input, and the parsing of
the script's status lines. No I/O here beyond reading the packaged script text.

The node script (``node.sh``) is sent as ``sh -c SCRIPT podcap-node ARGS...``: every value is its
own argv item, so nothing the user typed is ever parsed by a shell.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources

from podcap.errors import CaptureError, ReachError, UsageError
from podcap.reach.base import DEFAULT_TIME_BOUND

SCRIPT_NAME = "podcap-node"
# The client beats on the node script's stdin every BEAT_SECONDS; LEASE_SECONDS without a beat
# and the node stops by itself (the client died, its exec stream may still look open).
BEAT_SECONDS = 5.0
LEASE_SECONDS = 60
LEASE_VARIABLE = "PODCAP_LEASE_SECONDS"  # a longer or shorter lease, for a link that stalls


def lease_seconds() -> int:
    """The node's lease: PODCAP_LEASE_SECONDS when set (at least two beats), else 60."""
    text = os.environ.get(LEASE_VARIABLE, "")
    if not text:
        return LEASE_SECONDS
    if not text.isdigit() or int(text) < 2 * BEAT_SECONDS:
        raise UsageError(f"{LEASE_VARIABLE}={text}: give whole seconds, at least "
                         f"{2 * BEAT_SECONDS:g}")  # fmt: skip
    return int(text)


NODE_PREFIX = "podcap-node: "
# How the node script may find a container's PID from its ID: its cgroup in /proc/*/cgroup, or
# a runtime's own CLI; the default order is the first three.
PID_LOOKUPS = ("cgroup", "crictl", "docker", "podman", "ctr")
DEFAULT_PID_LOOKUP = ("cgroup", "crictl", "docker")
# Exit status of the node script when it refuses or fails before capturing (its "error:" line says why).

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9_.+][A-Za-z0-9_.+-]{11,}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:@][A-Za-z0-9_.:@-]{0,63}$")
_RUNTIME_PREFIX = re.compile(r"^[a-z][a-z0-9.+-]*://")
_FORBIDDEN_IN_FILTER = {
    ";": "';'",
    "`": "a backquote",
    "$(": "'$('",
    "\n": "a newline",
    "\r": "a carriage return",
}


@cache
def node_script() -> str:
    """The text of the node-side script shipped with the package."""
    return resources.files("podcap.capture").joinpath("node.sh").read_text(encoding="utf-8")


def normalize_container_id(container_id: str) -> str:
    """The bare ID from ``containerd://ID``, ``cri-o://ID``, ``docker://ID`` or ``ID``.

    The ID must be at least 12 characters from ``[A-Za-z0-9_.+-]`` (not starting with ``-``),
    which covers every runtime's IDs and keeps anything else out of the node's grep and CLIs.
    """
    bare = _RUNTIME_PREFIX.sub("", container_id.strip(), count=1)
    if not _CONTAINER_ID.match(bare):
        raise UsageError(
            f"invalid container id {container_id!r}",
            hint="expected [runtime://]ID, at least 12 characters from A-Z a-z 0-9 _ . + -",
        )
    return bare


def check_interface(interface: str) -> str:
    if not _INTERFACE.match(interface):
        raise UsageError(f"invalid interface name {interface!r}")
    return interface


def check_filter_safety(bpf_filter: str) -> str:
    """Refuse a BPF filter that tries to smuggle options or shell syntax; returns it unchanged.

    The filter never meets a shell (it is one argv item after ``--``), but a word starting with
    ``-`` is how an option such as ``-z cmd`` reaches tcpdump in tools that word-split, and
    ``;``, backquotes, ``$(`` and newlines have no business in BPF. ``|``/``&`` are BPF operators.
    """
    for token, name in _FORBIDDEN_IN_FILTER.items():
        if token in bpf_filter:
            raise UsageError(f"refusing filter {bpf_filter!r}: it contains {name}")
    for word in bpf_filter.split():
        if word.startswith("-"):
            raise UsageError(
                f"refusing filter {bpf_filter!r}: the word {word!r} looks like a tcpdump option"
            )
    return bpf_filter


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*$", re.IGNORECASE)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``1.5m``, ``2h``, ``500ms`` (a bare number is seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"invalid duration {text!r} (e.g. 30, 30s, 5m, 1h)")
    seconds = float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise UsageError(f"duration {text!r} must be more than zero")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``100MB``, ``1.5G``, ``64KiB``, ``1000`` (k/M/G/T are powers of 1000, Ki/Mi of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"invalid size {text!r} (e.g. 100MB, 1.5GB, 64KiB)")
    number, unit, binary = match.groups()
    base = 1024 if binary else 1000
    power = " KMGT".index(unit.upper() or " ")
    size = int(float(number) * base**power)
    if size <= 0:
        raise UsageError(f"size {text!r} must be more than zero")
    return size


@dataclass(frozen=True, kw_only=True)
class CaptureSettings:
    """Where a capture listens, what it keeps and when it stops: one capture's (CaptureSpec),
    or what every Pod's capture of a Kubernetes session shares (kubecapture.SessionOptions).
    Building one checks these fields, so a Kubernetes session is checked before any API call."""

    interface: str = "eth0"
    bpf_filter: str = ""
    snaplen: int | None = None
    count: int | None = None
    duration: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        check_interface(self.interface)
        check_filter_safety(self.bpf_filter)
        if self.snaplen == 0:  # tcpdump's -s 0: whole packets, its default
            object.__setattr__(self, "snaplen", None)
        for name in ("snaplen", "count", "duration", "max_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name.replace('_', ' ')} must be more than zero, not {value}")

    def capture_settings(self) -> dict:
        """These settings alone, as keyword arguments for a CaptureSpec."""
        return {f.name: getattr(self, f.name) for f in fields(CaptureSettings)}


@dataclass(frozen=True)
class CaptureSpec(CaptureSettings):
    """What to capture on one node. Building one checks every field, before any connection."""

    container_id: str | None = None
    pid: int | None = None
    time_bound: int = DEFAULT_TIME_BOUND
    # The node's own view (--also-node): ``pid`` is a process in the node's network namespace,
    # which a Pod capture refuses (a hostNetwork container), and here is the point.
    node_view: bool = False
    # Seconds the node waits for the client's next beat on stdin before it stops by itself
    # (the client beats every BEAT_SECONDS while it runs; None: no lease).
    lease_seconds: int | None = field(default_factory=lease_seconds)
    # How the node script finds a container's PID, in order (``PID_LOOKUPS``).
    pid_lookup: tuple[str, ...] = DEFAULT_PID_LOOKUP
    # In the node script's own network namespace, no nsenter: run from an ephemeral container
    # in the target Pod (capture --ephemeral), which is the Pod's namespace already.
    here: bool = False

    def __post_init__(self) -> None:
        if self.here:
            if self.container_id is not None or self.pid is not None:
                raise UsageError("a capture here names no container id or pid")
        elif (self.container_id is None) == (self.pid is None):
            raise UsageError("give exactly one of a container id and a pid")
        if self.node_view and self.pid is None:
            raise UsageError("the node's view is captured from a pid in its network namespace")
        if self.container_id is not None:
            object.__setattr__(self, "container_id", normalize_container_id(self.container_id))
        if self.pid is not None and self.pid <= 0:
            raise UsageError(f"invalid pid {self.pid}")
        unknown = [way for way in self.pid_lookup if way not in PID_LOOKUPS]
        if unknown or not self.pid_lookup:
            raise UsageError(
                f"--pid-lookup {','.join(self.pid_lookup)}: unknown way {unknown[0] if unknown else ''!r}",
                f"choose from {','.join(PID_LOOKUPS)}",
            )
        super().__post_init__()

    @property
    def bound_seconds(self) -> int:
        """The node-side time bound: the duration when one is given, else the safety bound."""
        if self.duration is not None:
            return max(1, round(self.duration))
        return self.time_bound


def node_argv(spec: CaptureSpec, mode: str = "capture", transport: str = "local") -> list[str]:
    """``sh -c SCRIPT podcap-node ARGS``: the node-side command for ``spec`` (``mode`` capture
    or resolve), run through the ``transport`` named (local, ssh: on the node itself; pod: in
    a hostPID helper, whose own network namespace is not the node's, PID 1's is)."""
    if spec.here:
        args = ["--here"]
    elif spec.container_id:
        args = ["--container-id", spec.container_id]
    else:
        args = ["--pid", str(spec.pid)]
    args += ["--mode", mode, "--iface", spec.interface, "--bound", str(spec.bound_seconds)]
    if spec.lease_seconds and mode == "capture":
        args += ["--lease", str(spec.lease_seconds)]
    if spec.pid_lookup != DEFAULT_PID_LOOKUP:
        args += ["--pid-lookup", ",".join(spec.pid_lookup)]
    if transport == "pod":
        args += ["--node-netns", "1"]
    if spec.node_view:
        args.append("--node-view")
    if spec.snaplen:
        args += ["--snaplen", str(spec.snaplen)]
    if spec.count:
        args += ["--count", str(spec.count)]
    if spec.bpf_filter.strip():
        args += ["--", spec.bpf_filter]
    return ["sh", "-c", node_script(), SCRIPT_NAME, *args]


def pid_lookups(text: str) -> tuple[str, ...]:
    """``--pid-lookup cgroup,docker``: the ways, in order."""
    return tuple(way.strip() for way in text.split(",") if way.strip())


@dataclass(frozen=True)
class NodeStats:
    """tcpdump's closing statistics and the bytes the node script sent (-1 when unknown)."""

    captured: int
    received: int
    dropped: int
    written: int
    status: int


@dataclass
class NodeReport:
    """What the node script said on stderr, parsed."""

    pid: int | None = None
    netns: str | None = None
    ready: bool = False
    error: str | None = None
    stats: NodeStats | None = None
    tcpdump_lines: list[str] = field(default_factory=list)
    other_lines: list[str] = field(default_factory=list)


_TARGET = re.compile(r"^target pid=(\d+) netns=(\S+)$")
_STATS = re.compile(
    r"^stats captured=(-?\d+) received=(-?\d+) dropped=(-?\d+) written=(-?\d+) status=(-?\d+)$"
)


def parse_node_stderr(text: str) -> NodeReport:
    """Parse the node script's stderr (lines it did not write, e.g. ssh's, go to other_lines)."""
    report = NodeReport()
    for line in text.splitlines():
        if not line.startswith(NODE_PREFIX):
            if line.strip():
                report.other_lines.append(line)
            continue
        body = line[len(NODE_PREFIX) :]
        if match := _TARGET.match(body):
            report.pid, report.netns = int(match[1]), match[2]
        elif match := _STATS.match(body):
            report.stats = NodeStats(*(int(g) for g in match.groups()))
        elif body == "ready":
            report.ready = True
        elif body.startswith("error: "):
            report.error = body[len("error: ") :]
        elif body.startswith("log: "):
            report.tcpdump_lines.append(body[len("log: ") :])
    return report


def raise_for_node_failure(report: NodeReport, status: int, node: str) -> None:
    """CaptureError with the node script's own message when it refused or failed."""
    if report.error:
        raise CaptureError(f"on {node}: {report.error}")
    if status != 0 and report.stats is None and report.pid is None:
        # The script never spoke: the transport failed (ssh auth, unknown host, no sh there).
        detail = "; ".join(report.other_lines[-3:]) or f"exit status {status}"
        if "sudo: a password is required" in detail:
            detail += " (--ssh-sudo needs sudo without a password: NOPASSWD in sudoers)"
        raise ReachError(f"cannot run the capture on {node}: {detail}")
