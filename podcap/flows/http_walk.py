"""Walking one direction of a connection message by message, where the decoder's marks do
not say it all (``podcap.flows.messages`` sends those directions here).

Segments are taken in file order, retransmissions left out. A message ends where its length
says; the next one starts right there, at the start of a segment or inside one, whose bytes
are read again from the file (``podcap.decode.reread``), as are chunked bodies' chunk headers.
The bodies themselves are skipped, so a walk holds one head at a time. Where the next start
holds no HTTP, or its bytes are not in the capture, the walk resumes at the next segment the
decoder marked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from podcap.decode.http import (
    CHUNKED_BODY,
    HEAD_LIMIT,
    LENGTH_CAP,
    TO_CLOSE,
    Head,
    chunk_at,
    read_head,
    trailer_length,
)
from podcap.flows.groups import SEQ_SPACE

LONGEST_HEAD = 1 << 16  # Wireshark's HTTP reassembly also stops somewhere; this is ours
CHUNK_LINE = 1024  # bytes read for a chunk header line (its extensions included)


class Side:
    """One direction's data segments in file order, placed in its byte stream."""

    def __init__(self, arrays: dict[str, np.ndarray], texts: dict[str, np.ndarray]):
        self.arrays = arrays
        self.texts = texts  # the categories the http_* text codes index
        self.flow_id = int(arrays["flow_id"][0])
        self.c2s = bool(arrays["c2s"][0])
        seq = arrays["tcp_seq"].astype(np.int64)
        self.rel = (seq - seq[0]) % SEQ_SPACE  # streams under 4 GB, as Wireshark's relative seq
        self.size = arrays["payload_len"].astype(np.int64)
        captured = arrays["caplen"].astype(np.int64) - arrays["payload_off"]
        self.captured = np.minimum(self.size, np.maximum(captured, 0))
        self.at = arrays["file_off"] + arrays["payload_off"]
        self.rows = arrays["row"]
        self.fin_row = int(arrays["fin_row"][0])
        self.starts = np.flatnonzero(arrays["marked"])
        self.by_rel = np.argsort(self.rel, kind="stable")
        self.sorted_rel = self.rel[self.by_rel]
        self.reach = np.maximum.accumulate(self.rel + self.size)

    def containing(self, pos: int) -> int:
        """The segment holding stream byte ``pos``, or -1."""
        found = int(np.searchsorted(self.sorted_rel, pos, side="right")) - 1
        if found < 0:
            return -1
        k = int(self.by_rel[found])
        return k if pos < self.rel[k] + self.size[k] else -1

    def next_start(self, after: int, pos: int) -> int:
        """The first segment after ``after`` (file order) the decoder marked as starting a
        message at or beyond stream byte ``pos``; -1 if none."""
        for k in self.starts[np.searchsorted(self.starts, after, side="right") :].tolist():
            if self.rel[k] >= pos:
                return k
        return -1

    def completing(self, end: int, first: int) -> int:
        """The row of the first segment from ``first`` on that brings stream byte ``end - 1``."""
        k = max(int(np.searchsorted(self.reach, end, side="left")), first)
        return int(self.rows[k]) if k < len(self.rows) else -1

    def read(self, pos: int, size: int, source) -> bytes:
        """Up to ``size`` captured bytes from stream byte ``pos`` on, as far as they are
        contiguous in the capture (b"" when none, or the file cannot be read again)."""
        if source is None or self.at[0] < 0:
            return b""
        pieces = []
        while size > 0:
            k = self.containing(pos)
            if k < 0 or pos - self.rel[k] >= self.captured[k]:
                break
            offset = int(pos - self.rel[k])
            take = min(size, int(self.captured[k]) - offset)
            pieces.append(source.read(int(self.at[k]) + offset, take))
            pos, size = pos + take, size - take
        return b"".join(pieces)

    def decoded(self, k: int) -> Head:
        """The head the decoder read at the start of segment ``k``."""
        a, text = self.arrays, self.texts
        method, uri, host = (
            str(text[n][a[n][k]]) for n in ("http_method", "http_uri", "http_host")
        )
        length = int(a["http_length"][k])
        return Head(method, uri, host, int(a["http_status"][k]), length,
                    0 if length >= 0 else CHUNKED_BODY)  # fmt: skip


@dataclass
class _Found:
    head: Head
    total: int  # head and body bytes; -1 when the end is not in the capture or not known
    known: bool  # False: only the decoder's fields (the bytes could not be read again)
    to_close: bool = False  # the body runs to the direction's FIN


def walk(side: Side, source) -> Iterator[tuple]:
    """The messages of one direction: (flow_id, c2s, row, end_row, offset, method, uri,
    host, status, length)."""
    k = int(side.starts[0])
    pos = int(side.rel[k])
    while k >= 0:
        found = _message_at(side, source, k, pos)
        if found is None:  # no HTTP where a message should start: on to the next marked one
            k = side.next_start(k, pos + 1)
            pos = int(side.rel[k]) if k >= 0 else 0
            continue
        head = found.head
        completed = side.completing(pos + found.total, k) if found.total >= 0 else -1
        if not found.known:
            completed = int(side.rows[k])  # as the decoder saw it: on its first segment
        elif found.to_close:
            completed = side.fin_row if side.fin_row > side.rows[k] else -1
        yield (side.flow_id, side.c2s, int(side.rows[k]), completed, pos, head.method,
               head.uri, head.host, head.status, found.total)  # fmt: skip
        k, pos = _after(side, k, pos, found)


def _after(side: Side, k: int, pos: int, found: _Found) -> tuple[int, int]:
    """Where the walk goes on after the message found at stream byte ``pos`` (in segment
    ``k``): the segment and byte where the next one starts; segment -1 to stop."""
    if found.total >= 0:
        end = pos + found.total
        holding = side.containing(end)
        if holding >= 0:
            return holding, end
        k = side.next_start(-1, end)  # the bytes at its end are not in the capture
    elif found.known:
        return -1, 0  # the rest of the direction is this message's (to the close, or cut)
    else:
        k = side.next_start(k, pos + 1)
    return k, int(side.rel[k]) if k >= 0 else 0


def _message_at(side: Side, source, k: int, pos: int) -> _Found | None:
    at_start = pos == side.rel[k] and k in side.starts
    if at_start:
        decoded = side.decoded(k)
        if 0 <= decoded.length < LENGTH_CAP:
            return _Found(decoded, decoded.length, True)
    data = _head_bytes(side, source, pos)
    head = read_head(data) if data else None
    if head is None:
        return _Found(side.decoded(k), -1, False) if at_start and not data else None
    if head.length < 0:  # the head is cut: never completed
        return _Found(head, -1, True)
    if head.body >= 0:
        return _Found(head, head.length + head.body, True)
    if head.body == TO_CLOSE:
        return _Found(head, -1, True, to_close=True)
    body = _chunked_length(side, source, pos + head.length)
    return _Found(head, head.length + body if body >= 0 else -1, True)


def _head_bytes(side: Side, source, pos: int) -> bytes:
    """The bytes from ``pos`` that hold a head: HEAD_LIMIT, more while they are all there and
    hold no blank line yet (long cookies), up to LONGEST_HEAD."""
    size = HEAD_LIMIT
    data = side.read(pos, size, source)
    while len(data) == size and size < LONGEST_HEAD and b"\r\n\r\n" not in data:
        size *= 4
        data = side.read(pos, size, source)
    return data


def _chunked_length(side: Side, source, pos: int) -> int:
    """Bytes of the chunked body from stream byte ``pos``; -1 when it does not end in the
    capture (or is not chunked after all)."""
    start = pos
    while True:
        line = side.read(pos, CHUNK_LINE, source)
        chunk = chunk_at(line)
        if chunk is None:
            return -1
        header, size = chunk
        if size == 0:
            trailer = trailer_length(side.read(pos + header, HEAD_LIMIT, source))
            return pos + header + trailer - start if trailer >= 0 else -1
        pos += header + size + 2  # the data and its CRLF
