"""One capture on one node: start the node script over a transport, bring the pcap home, stop
it in order, and say how it ended.

Stopping is the same on every transport: ``RemoteProcess.stop()`` (close stdin, or send "stop");
the node script then SIGINTs tcpdump, which flushes its last packet and prints its statistics,
and the stream ends. ``CaptureSession.stop`` is safe to call from a signal handler or another
thread; if the node has not finished ``STOP_GRACE`` seconds later the process is killed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from podcap.capture.command import (
    BEAT_SECONDS,
    CaptureSpec,
    NodeReport,
    NodeStats,
    node_argv,
    parse_node_stderr,
    raise_for_node_failure,
)
from podcap.capture.stream import (
    ENDED_COUNT,
    PcapSink,
    PcapStreamCopier,
    StreamLimits,
    StreamProgress,
    read_chunks,
)
from podcap.errors import CaptureError, PodcapError
from podcap.reach.base import RemoteProcess, Transport
from podcap.sidecar import capture_document, sidecar_path, write_sidecar

STOP_GRACE = 10.0  # seconds between asking the node to stop and killing the connection
DURATION_SLACK = 15.0  # the node's own timeout ends a --duration capture; this is the backstop
TIMEOUT_STATUS = 124  # timeout(1)'s exit status when the bound expired

# How a capture ended (CaptureResult.ended_by).
ENDED_DURATION = "duration"
ENDED_STOPPED = "stopped"
ENDED_OUTPUT_CLOSED = "output-closed"
ENDED_CONNECTION_LOST = "connection-lost"
ENDED_BY_NODE = "tcpdump-exited"


@dataclass
class CaptureResult:
    """What a finished capture produced and how it ended."""

    spec: CaptureSpec
    node: str
    transport: str
    output: str  # the pcap path, or "-" for stdout
    started: datetime
    ended: datetime
    ended_by: str
    pid: int | None
    netns: str | None
    packets: int
    bytes_written: int
    bytes_received: int
    linktype: int | None
    node_stats: NodeStats | None
    messages: list[str] = field(default_factory=list)  # tcpdump's stderr lines
    sidecar: str | None = None
    listening: datetime | None = None  # the first bytes home: tcpdump listened just before

    @property
    def complete(self) -> bool:
        """True when the node reported its statistics and every byte it sent arrived."""
        return self.node_stats is not None and self.node_stats.written == self.bytes_received

    @property
    def duration(self) -> float:
        return (self.ended - self.started).total_seconds()


class CaptureSession:
    """Runs one capture: ``run()`` blocks until it ends; ``stop()`` ends it early, cleanly.

    ``output`` is a file path (a sidecar ``PATH.json`` is written beside it) or a binary stream
    such as ``sys.stdout.buffer``. ``cluster`` is stored as is in the sidecar's ``cluster`` object
    (the Kubernetes facts: Pod, namespace, node IP, ...). ``on_progress`` is called after every
    batch of packets with the stream counters.
    """

    def __init__(
        self,
        transport: Transport,
        spec: CaptureSpec,
        output: str | BinaryIO,
        *,
        cluster: dict | None = None,
        on_progress: Callable[[StreamProgress], None] | None = None,
    ):
        self.transport = transport
        self.spec = spec
        self.output = output
        self.cluster = cluster
        self.on_progress = on_progress
        self._sink = PcapSink(output)
        self._copier = PcapStreamCopier(self._sink, StreamLimits(spec.count, spec.max_bytes))
        self._process: RemoteProcess | None = None
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._ending = threading.Event()  # set when run() returns: the beats stop
        self._listening: datetime | None = None

    @property
    def progress(self) -> StreamProgress:
        return self._copier.progress

    def stop(self, reason: str = ENDED_STOPPED) -> None:
        """Ask the node to stop tcpdump (it flushes); kill the connection if it takes too long."""
        process = self._record_stop(reason)
        if process is not None:
            process.stop()
            self._start_timer(STOP_GRACE, process.kill)

    def kill(self) -> None:
        """End the capture now (a second Ctrl-C): the file still ends at a whole packet."""
        process = self._record_stop(ENDED_STOPPED)
        if process is not None:
            process.kill()

    def _record_stop(self, reason: str) -> RemoteProcess | None:
        """Keep the first reason given for ending; the process to act on, if started."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            return self._process

    def node_report(self) -> NodeReport:
        """What the node script has said so far (``ready`` once tcpdump listens)."""
        return parse_node_stderr(self._process.stderr_text() if self._process else "")

    def wait_ready(self, timeout: float = 30) -> NodeReport:
        """Block until tcpdump listens on the node (for tests and scripted traffic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.node_report()
            if report.ready or report.error or report.stats:
                return report
            time.sleep(0.05)
        raise CaptureError(f"tcpdump on {self.transport.node} not listening after {timeout:g} s")

    def start(self) -> None:
        """Start the node script; ``run`` calls it if needed. Separate so callers can wait_ready."""
        if self._process is not None:
            return
        self._started = datetime.now(UTC)
        self._process = self.transport.start(node_argv(self.spec, transport=self.transport.name))
        if self.spec.duration is not None:
            self._start_timer(self.spec.duration + DURATION_SLACK, self._process.kill)
        if self.spec.lease_seconds:
            threading.Thread(target=self._beat, daemon=True, name="beat").start()
        if self._stop_reason is not None:  # stop() came before the process existed
            self._process.stop()

    def _beat(self) -> None:
        """Beat on the node script's stdin until the capture is asked to stop or ends: the
        node stops by itself when the beats stop (podcap killed), whatever the connection
        seems to be."""
        while not self._ending.wait(BEAT_SECONDS):
            with self._lock:
                if self._stop_reason is not None:
                    return
                self._process.beat()

    def run(self) -> CaptureResult:
        """Capture until a stop condition; returns the result (ended_by says which).

        Raises CaptureError when the node refuses (no such container, bad filter, ...) and
        ReachError when the node cannot be reached; a connection lost mid-capture is not an
        error here: the result says ``connection-lost`` and the file holds every whole packet.
        """
        self.start()
        try:
            self._copy_stream()
            status = self._process.wait(timeout=STOP_GRACE + 5)
        except PodcapError:
            self._process.kill()
            raise
        finally:
            self._ending.set()
            for timer in self._timers:
                timer.cancel()
            self._sink.close()
        report = self.node_report()
        if self._copier.progress.bytes_received == 0:
            raise_for_node_failure(report, status, self.transport.node)
        result = self._result(report, status)
        if isinstance(self.output, str) and self._sink.size:
            document = capture_document(result, self.cluster)
            result.sidecar = write_sidecar(sidecar_path(self.output), document)
        return result

    def _copy_stream(self) -> None:
        next_chunk = read_chunks(self._process.stdout)
        while chunk := next_chunk():
            self._listening = self._listening or datetime.now(UTC)
            try:
                reached = self._copier.feed(chunk)
            except BrokenPipeError:  # -o - and the reader (wireshark, head) went away
                self._copier.discard()
                reached = ENDED_OUTPUT_CLOSED
            if reached:
                self.stop(reached)
            if self.on_progress:
                self.on_progress(self._copier.progress)

    def _result(self, report: NodeReport, status: int) -> CaptureResult:
        progress = self._copier.progress
        return CaptureResult(
            spec=self.spec,
            node=self.transport.node,
            transport=self.transport.name,
            output=self.output if isinstance(self.output, str) else "-",
            started=self._started,
            ended=datetime.now(UTC),
            ended_by=self._ended_by(report),
            pid=report.pid if report.pid is not None else self.spec.pid,
            netns=report.netns,
            packets=progress.packets,
            bytes_written=progress.bytes_written,
            bytes_received=progress.bytes_received,
            linktype=progress.linktype,
            node_stats=report.stats,
            messages=report.tcpdump_lines + report.other_lines,
            listening=self._listening,
        )

    def _ended_by(self, report: NodeReport) -> str:
        if self._stop_reason is not None:
            return self._stop_reason
        if report.stats is None:
            return ENDED_CONNECTION_LOST
        if report.stats.status == TIMEOUT_STATUS:
            return ENDED_DURATION
        if self.spec.count and self._copier.progress.packets >= self.spec.count:
            return ENDED_COUNT
        return ENDED_BY_NODE

    def _start_timer(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)


def capture(
    transport: Transport,
    spec: CaptureSpec,
    output: str | BinaryIO,
    *,
    cluster: dict | None = None,
    on_progress: Callable[[StreamProgress], None] | None = None,
) -> CaptureResult:
    """Capture ``spec`` on the transport's node into ``output``; see ``CaptureSession``."""
    return CaptureSession(transport, spec, output, cluster=cluster, on_progress=on_progress).run()


def resolve_pid(transport: Transport, container_id: str) -> int:
    """The PID of a container on the transport's node (the node script's ``resolve`` mode).

    Raises CaptureError when no process belongs to the container or it shares the node's network.
    """
    spec = CaptureSpec(container_id=container_id)
    done = transport.run(node_argv(spec, mode="resolve", transport=transport.name))
    report = parse_node_stderr(done.stderr.decode("utf-8", "replace"))
    raise_for_node_failure(report, done.returncode, transport.node)
    if report.pid is None:
        raise CaptureError(f"the node script on {transport.node} did not report a PID")
    return report.pid
