"""The pcap stream home: copy tcpdump's ``-w -`` byte stream into a file (or stdout) so the file
is a valid pcap at every moment.

Bytes arrive in arbitrary pieces. Only whole records (16-byte header plus its captured bytes)
are written, each batch with one write and flushed, so the file always ends at a packet
boundary: whatever stops the copy (Ctrl-C, a dropped connection, a limit, podcap being
killed) leaves a file every pcap reader opens. Count and size limits are checked per record.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from podcap.errors import CaptureError
from podcap.pcapfile import (
    MAX_RECORD,
    PCAP_CAPLEN_AT,
    PCAP_HEADER_LEN,
    PCAP_RECORD_HEADER_LEN,
    parse_pcap_header,
)

# Why copying stopped; CaptureResult.ended_by uses the same names.
ENDED_COUNT = "count"
ENDED_MAX_SIZE = "max-size"

READ_SIZE = 256 * 1024


class PcapSink:
    """Where the whole records go: a file created on the first bytes, or an open binary stream.

    The file is opened late so a capture that fails before tcpdump starts leaves no empty file.
    """

    def __init__(self, target: str | BinaryIO):
        self.path = target if isinstance(target, str) else None
        self._stream = None if isinstance(target, str) else target
        self._fd: int | None = None
        self.size = 0

    def write(self, data: bytes | bytearray) -> None:
        """Write all of ``data`` and flush; on a failed file write, cut the file back to the
        last whole record before raising, so it stays valid."""
        if self.path is None:
            self._stream.write(data)
            self._stream.flush()
            self.size += len(data)
            return
        if self._fd is None:
            self._fd = self._open(self.path)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            os.ftruncate(self._fd, self.size)
            raise CaptureError(f"cannot write {self.path}: {exc.strerror}") from exc
        self.size += len(data)

    @staticmethod
    def _open(path: str) -> int:
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise CaptureError(f"cannot create {path}: {exc.strerror}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class StreamProgress:
    """Counters of the copy so far (the progress display reads them)."""

    packets: int = 0
    bytes_written: int = 0
    bytes_received: int = 0
    linktype: int | None = None
    snaplen: int | None = None
    started: float = 0.0  # time.monotonic() when the copy began

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


@dataclass(frozen=True)
class StreamLimits:
    count: int | None = None
    max_bytes: int | None = None


class PcapStreamCopier:
    """Parses a pcap byte stream incrementally and writes whole records to a PcapSink.

    ``feed`` returns the name of the limit reached ("count", "max-size") or None; after a limit
    (or ``discard``) further bytes are counted but not written, so the node can finish cleanly.
    """

    def __init__(self, sink: PcapSink, limits: StreamLimits = StreamLimits()):
        self.sink = sink
        self.limits = limits
        self.progress = StreamProgress(started=time.monotonic())
        self._buffer = bytearray()
        self._order: str | None = None
        self._discarding = False

    def discard(self) -> None:
        self._discarding = True

    def feed(self, chunk: bytes) -> str | None:
        self.progress.bytes_received += len(chunk)
        if self._discarding:
            return None
        self._buffer += chunk
        out = bytearray()
        position = self._take_global_header(out)
        reached = None
        if position is not None:
            position, reached = self._take_records(position, out)
            del self._buffer[:position]
        if out:
            self.sink.write(out)
            self.progress.bytes_written += len(out)
        if reached:
            self._discarding = True
        return reached

    def _take_global_header(self, out: bytearray) -> int | None:
        if self._order is not None:
            return 0
        if len(self._buffer) < PCAP_HEADER_LEN:
            return None
        header = bytes(self._buffer[:PCAP_HEADER_LEN])
        parsed = parse_pcap_header(header)
        if parsed is None:
            raise CaptureError(
                f"the node sent something that is not a pcap stream (starts {header[:8].hex()})"
            )
        self._order = parsed.byte_order
        self.progress.snaplen, self.progress.linktype = parsed.snaplen, parsed.linktype
        out += header
        return PCAP_HEADER_LEN

    def _take_records(self, position: int, out: bytearray) -> tuple[int, str | None]:
        buffer, limits, progress = self._buffer, self.limits, self.progress
        record_len = struct.Struct(self._order + "I")
        while len(buffer) - position >= PCAP_RECORD_HEADER_LEN:
            caplen = record_len.unpack_from(buffer, position + PCAP_CAPLEN_AT)[0]
            if caplen > MAX_RECORD:
                raise CaptureError(f"corrupt pcap stream: a record claims {caplen} bytes")
            end = position + PCAP_RECORD_HEADER_LEN + caplen
            if end > len(buffer):
                break
            if (
                limits.max_bytes
                and progress.bytes_written + len(out) + end - position > limits.max_bytes
            ):
                return position, ENDED_MAX_SIZE
            out += buffer[position:end]
            progress.packets += 1
            position = end
            if limits.count and progress.packets >= limits.count:
                return position, ENDED_COUNT
        return position, None


def read_chunks(stream: BinaryIO) -> Callable[[], bytes]:
    """A function returning the next available bytes (b"" at the end), without waiting to fill
    a buffer: packets must reach the file as they arrive, not 256 KiB later."""
    read = getattr(stream, "read1", None) or stream.read
    return lambda: read(READ_SIZE)
