"""Captures run together: N node sessions at once, one Ctrl-C/SIGTERM path, their results.

Every ``podcap capture`` is a fleet. A capture ``--via local`` or ``--via ssh`` is a fleet of
one (:class:`NodeCapture`); Pod targets are one capture per Pod through helper Pods, each with
the node's own view beside it under ``--also-node`` (podcap.capture.pods.PodCaptures). Both are
a :class:`CapturePlan`, and :func:`run` runs either the same way:

1. ``plan.check()``: whatever can fail before anything is created (RBAC, one output, ...);
2. ``plan.reach()``: the transports to the nodes (helper Pods are created here, and deleted on
   the way out whatever happens);
3. ``plan.members(transports)``: one :class:`Member` per capture, all started at once;
4. until every member ended: the first Ctrl-C or SIGTERM stops them all cleanly (tcpdump
   flushes, every file ends at a whole packet), a second one kills them;
5. ``plan.finish(members)`` (the merged pcapng), then one error naming every capture that failed.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from podcap import signals
from podcap.capture.session import CaptureResult, CaptureSession
from podcap.capture.stream import StreamProgress
from podcap.errors import CaptureError, PodcapError, UsageError
from podcap.reach.base import Transport

ProgressCallback = Callable[[str | None, StreamProgress], None]
Step = Callable[[str], None]  # one line of what is happening: a helper's phase, a stop


@dataclass
class Member:
    """One capture of a fleet: its session, then its result or its error."""

    session: CaptureSession
    label: str | None = None  # "namespace/pod"; None for the one capture of a NodeCapture
    target: Any = None  # the podcap.locate.PodTarget of a Pod's capture
    path: Path | None = None  # the pcap file (None: to a stream)
    node_view: CaptureSession | None = None  # --also-node: stopped when this capture ends
    node_view_result: CaptureResult | None = None
    drops: Any = None  # --drops: a podcap.capture.drops.DropWatch, likewise
    drops_result: Any = None  # its DropWatchResult
    result: CaptureResult | None = None
    error: Exception | None = None


@dataclass
class FleetResult:
    captures: list[Member]
    merged: Path | None = None
    interrupted: bool = False
    # A second signal killed the captures: each file ends at its last whole packet, but the
    # nodes' statistics never came. The signal's number, for the exit status (130, 143).
    killed_by: int | None = None


class CapturePlan(Protocol):
    """What :func:`run` needs from a kind of target."""

    warnings: Sequence[str]

    def announcement(self) -> str | None: ...

    def check(self) -> None: ...

    def reach(
        self, on_step: Step | None = None
    ) -> contextlib.AbstractContextManager[dict[str, Transport]]: ...

    def members(self, transports: dict[str, Transport]) -> list[Member]: ...

    def finish(self, members: list[Member]) -> Path | None: ...


@dataclass
class NodeCapture:
    """A capture on one node reached ``--via local`` or ``--via ssh``: a fleet of one.

    ``output`` is a pcap path (a sidecar ``PATH.json`` is written beside it) or a binary
    stream such as ``sys.stdout.buffer``; the transport is closed when the capture ends."""

    transport: Transport
    spec: Any  # podcap.capture.CaptureSpec
    output: str | BinaryIO
    drops: bool = False  # --drops: the kernel's drops of the target's packets, beside the pcap
    warnings = ()  # nothing to warn about: the user named the process

    def __post_init__(self) -> None:
        if isinstance(self.output, str):
            check_writable(self.output)

    def announcement(self) -> None:
        """None: the user named the one process; the progress line says the rest."""

    def check(self) -> None:
        """Nothing more to check: the spec was checked when built."""

    @contextlib.contextmanager
    def reach(self, on_step: Step | None = None) -> Iterator[dict[str, Transport]]:
        try:
            yield {self.transport.node: self.transport}
        finally:
            self.transport.close()

    def members(self, transports: dict[str, Transport]) -> list[Member]:
        from podcap.capture.drops import DropWatch, container_addresses

        path = Path(self.output) if isinstance(self.output, str) else None
        watch = cluster = None
        if self.drops and path is not None:
            drops = path.with_name(f"{path.stem}.drops.jsonl")
            cluster = {"drops": {"file": drops.name}}
        session = CaptureSession(self.transport, self.spec, self.output, cluster=cluster)
        if cluster is not None:
            watch = DropWatch(self.transport, [], drops, self.spec.bound_seconds, node_pid=None,
                              resolve=lambda: container_addresses(session, self.transport))  # fmt: skip
        return [Member(session, path=path, drops=watch)]

    def finish(self, members: list[Member]) -> Path | None:
        return None


def check_writable(path: str | Path, *, directory: bool = False) -> None:
    """UsageError unless files can be created at ``path`` (a file to write, or with
    ``directory`` a directory to write files in): tried by creating one, and removing it and
    any directory made for it, before any connection or API write."""
    where = Path(path) if directory else Path(path).parent
    chain = [where, *where.parents]
    existing = next(d for d in chain if d.exists() or d == chain[-1])
    if not existing.is_dir():
        raise UsageError(f"cannot write {path}: {existing} is a file, not a directory")
    missing = chain[: chain.index(existing)]
    made: list[Path] = []
    try:
        for directory_missing in reversed(missing):
            directory_missing.mkdir()
            made.append(directory_missing)
        tempfile.TemporaryFile(dir=where).close()
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: cannot create files in {where} ({exc.strerror or exc})"
        ) from None
    finally:
        for directory_made in reversed(made):
            directory_made.rmdir()


def run(
    plan: CapturePlan,
    *,
    on_start: Callable[[], None] | None = None,
    on_progress: ProgressCallback | None = None,
    on_step: Step | None = None,
) -> FleetResult:
    """Run every capture of ``plan`` at once until each ended (its own limits, or Ctrl-C /
    SIGTERM); ``on_start`` is called once the captures start (helpers running),
    ``on_progress(label, progress)`` after every batch of packets, ``on_step(text)`` at each
    phase (a helper created, pending, running, deleted; a capture listening; stopping). Raises
    the one capture's error (a NodeCapture) or one CaptureError naming each that failed."""
    plan.check()
    with plan.reach(on_step) as transports:
        members = plan.members(transports)
        if on_progress is not None:
            for member in members:
                member.session.on_progress = _labelled(on_progress, member.label)
        if on_start is not None:
            on_start()
        stopper = _run_together(members, on_step)
    merged = plan.finish(members)
    _raise_failures(members)
    return FleetResult(members, merged, stopper.signals_seen > 0, stopper.killed_by)


def _labelled(on_progress: ProgressCallback, label: str | None):
    return lambda progress: on_progress(label, progress)


def _run_together(members: list[Member], on_step: Step | None = None) -> _Stopper:
    """Every member in a thread of its own, until each ended; the first SIGINT/SIGTERM stops
    them cleanly (tcpdump flushes), a second kills them."""
    stopper = _Stopper(members, on_step)
    threads = [
        threading.Thread(
            target=_run_member, args=(m, on_step), daemon=True, name=m.label or "capture"
        )  # fmt: skip
        for m in members
    ]
    with signals.taken_over(stopper.on_signal):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return stopper


def _run_member(member: Member, on_step: Step | None = None) -> None:
    """The capture, and beside it the node's view and its drop watcher (stopped once the
    capture ends)."""
    if on_step is not None and member.label is not None:
        threading.Thread(target=_say_listening, args=(member, on_step), daemon=True).start()
    node_view = drops = None
    if member.node_view is not None:
        node_view = threading.Thread(target=_run_node_view, args=(member,), daemon=True)
        node_view.start()
    if member.drops is not None:
        drops = threading.Thread(target=_run_drops, args=(member,), daemon=True)
        drops.start()
    try:
        member.result = member.session.run()
    except Exception as exc:  # noqa: BLE001 - reported by run() in the caller's thread
        member.error = exc
    finally:
        if node_view is not None:  # it ends as the Pod's capture did (duration, interrupted)
            member.node_view.stop(member.result.ended_by if member.result else "stopped")
            node_view.join()
        if drops is not None:
            member.drops.stop()
            drops.join()


def _say_listening(member: Member, on_step: Step) -> None:
    """``NAMESPACE/POD: listening on eth0`` once the node's tcpdump says so."""
    try:
        report = member.session.wait_ready()
    except PodcapError:
        return  # the capture's own error says why
    if report.ready:
        on_step(f"{member.label}: listening on {member.session.spec.interface}")


def _run_drops(member: Member) -> None:
    """The drop watcher never fails a capture: a node that cannot watch says why."""
    from podcap.capture.drops import unavailable

    try:
        member.drops_result = member.drops.run()
    except PodcapError as exc:
        member.drops_result = unavailable(member.drops, f"the watcher failed: {exc}")


def _run_node_view(member: Member) -> None:
    try:
        member.node_view_result = member.node_view.run()
    except PodcapError as exc:
        member.error = member.error or CaptureError(f"the node's view (--also-node): {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug: raised by run() in the caller's thread
        member.error = member.error or exc


@dataclass
class _Stopper:
    """What a signal does to running captures: the first stops them cleanly, a second kills
    them (each file still ends at a whole packet)."""

    members: list[Member]
    on_step: Step | None = None
    signals_seen: int = 0
    killed_by: int | None = None

    def on_signal(self, signum: int, nth: int) -> None:
        self.signals_seen = max(self.signals_seen, nth)
        if nth == 1:
            if self.on_step is not None:
                self.on_step(f"{signals.REASONS[signum]}: stopping (again stops at once)")
            self.stop(signals.REASONS[signum])
        else:
            self.killed_by = signum
            self.kill()

    def stop(self, reason: str) -> None:
        for member in self.members:
            member.session.stop(reason)

    def kill(self) -> None:
        for member in self.members:
            member.session.kill()
            for beside in (member.node_view, member.drops):
                if beside is not None:
                    beside.kill()


def _raise_failures(members: list[Member]) -> None:
    failed = [m for m in members if m.error is not None]
    for member in failed:
        if not isinstance(member.error, PodcapError):
            raise member.error  # a bug: its traceback is the report
    if len(failed) == 1 and failed[0].label is None:
        raise failed[0].error
    if failed:
        raise CaptureError("; ".join(f"{m.label}: {m.error}" for m in failed))
