"""HTTP/1.x request and status lines at the start of TCP payloads.

Responses are recognised entirely with numpy (``HTTP/1.x NNN`` at fixed offsets). Requests
are picked with a numpy test of their first four bytes; only those are parsed in Python, and
identical request heads (a load test repeats the same request thousands of times) are
parsed once and then looked up.
"""

import re
from dataclasses import dataclass

import numpy as np

from podcap.decode.bytesview import ByteView
from podcap.decode.strings import Interner

# The methods Wireshark takes for HTTP (each checked against tshark): RFC 9110's, PATCH,
# WebDAV's and DeltaV's, GENA's (UPnP events) and SSDP's M-SEARCH.
METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"CHECKOUT", b"CHECKIN", b"UNCHECKOUT", b"MERGE", b"MKACTIVITY", b"LABEL",
    b"UPDATE", b"MKWORKSPACE", b"VERSION-CONTROL", b"BASELINE-CONTROL", b"POLL", b"BMOVE",
    b"BCOPY", b"NOTIFY", b"SUBSCRIBE", b"UNSUBSCRIBE", b"M-SEARCH",
)  # fmt: skip
# First four bytes of each request method followed by a space ("GET ", "POST", ...).
REQUEST_PREFIXES = np.array(
    [int.from_bytes((m + b" ")[:4], "big") for m in METHODS], dtype=np.int64
)
# METHOD SP URI SP HTTP/1.x, as Wireshark reads one segment alone (podcap, like tshark without
# TCP reassembly, does not wait for more): "GET HTTP/1.1" has the version for its URI, and an
# HTTP/0.9 "GET /" has no version at all.
REQUEST_LINE = re.compile(
    rb"([A-Z-]{3,16}) (?:([^ \r\n]+) HTTP/1\.[0-9]|(HTTP/1\.[0-9])|([^ \r\n]+))\r?\n"
)
HOST_HEADER = re.compile(rb"\nhost:[ \t]*([^\r\n]*)", re.IGNORECASE)
# Leading zeros and any number of digits are a length; a sign or anything else is none.
CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*([0-9]+)[ \t]*(?=\r?\n)", re.IGNORECASE)
CHUNK_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")
CHUNKED = re.compile(rb"\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
NO_BODY_STATUS = (204, 304)  # and 1xx: a response that never has a body
HEAD_LIMIT = 4096  # bytes of a payload searched for the request line and Host
CACHE_LIMIT = 65536  # distinct request heads remembered (bounded memory)
STATUS_LINE_BYTES = 13  # "HTTP/1.1 200 "
LENGTH_CAP = 2**31 - 1  # http_length's largest: a longer message is read again when needed
CHUNKED_BODY, TO_CLOSE = -1, -2  # body lengths that are not numbers (``body_length``)


class HttpParser:
    """Fills the http_* code columns of a chunk; keeps a cache across chunks of one file.

    ``lengths``: also the ``http_length`` of each message (head and body), which a filter on
    HTTP fields needs to mark the segment that completes it, as Wireshark does
    (``podcap.flows.messages``); a Python step per message, so only when asked."""

    def __init__(self, strings: Interner, lengths: bool = False):
        self.strings = strings
        self.lengths = lengths
        self.cache: dict[bytes, tuple[int, int, int]] = {}
        self.length_cache: dict[bytes, int] = {}

    def fill(self, view: ByteView, is_tcp, start, end, chunk: dict[str, np.ndarray]) -> None:
        has_payload = is_tcp & (start >= 0) & (end - start >= 4)
        candidates = np.flatnonzero(has_payload)
        chunk["http_status"][candidates] = self._status(view, start[candidates], end[candidates])
        first4 = view.u32(start[candidates])
        requests = candidates[np.isin(first4, REQUEST_PREFIXES)]
        self._requests(view.buf, requests, start, end, chunk)
        if self.lengths:
            starts = candidates[(chunk["http_status"][candidates] >= 0)]
            self._lengths(view.buf, np.union1d(starts, requests), start, end, chunk)

    def _lengths(self, buf, rows, start, end, chunk) -> None:
        # The head alone says the length: identical heads (a load test's) are measured once.
        status, length, cache = chunk["http_status"], chunk["http_length"], self.length_cache
        for i, s, e in zip(rows.tolist(), start[rows].tolist(), end[rows].tolist(), strict=True):
            head_end = buf.find(b"\r\n\r\n", s, min(e, s + HEAD_LIMIT))
            if head_end < 0:
                continue  # stays -1: the head is not whole in this segment
            head = bytes(buf[s : head_end + 4])
            found = cache.get(head)
            if found is None:
                found = message_length(head, int(status[i]))
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[head] = found
            length[i] = found

    def _status(self, view: ByteView, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        line = view.rows(start, STATUS_LINE_BYTES).astype(np.int64)
        digits = line[:, 9:12] - ord("0")
        ok = (line[:, :7] == np.frombuffer(b"HTTP/1.", np.uint8)).all(axis=1)
        ok &= (line[:, 7] >= ord("0")) & (line[:, 7] <= ord("9")) & (line[:, 8] == ord(" "))
        ok &= ((digits >= 0) & (digits <= 9)).all(axis=1)
        # After the code comes the reason phrase's space, or the end of the line or payload.
        length = end - start
        ok &= (length == 12) | ((length > 12) & np.isin(line[:, 12], (32, 13, 10)))
        ok &= length >= 12
        code = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
        return np.where(ok, code, -1)

    def _requests(self, buf, requests, start, end, chunk) -> None:
        method, uri, host = chunk["http_method"], chunk["http_uri"], chunk["http_host"]
        cache = self.cache
        rows = zip(requests.tolist(), start[requests].tolist(), end[requests].tolist(), strict=True)
        for i, s, e in rows:
            head = bytes(buf[s : min(e, s + HEAD_LIMIT)])
            codes = cache.get(head)
            if codes is None:
                codes = self._parse_request(head)
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                cache[head] = codes
            method[i], uri[i], host[i] = codes

    def _parse_request(self, head: bytes) -> tuple[int, int, int]:
        line = request_line(head)
        if line is None:
            return 0, 0, 0
        code = self.strings.code
        return code(line[0]), code(line[1]), code(host_of(head))


def request_line(head: bytes) -> tuple[str, str] | None:
    """(method, target) of the request line ``head`` starts with; None if it starts none."""
    request = REQUEST_LINE.match(head)
    if not request or request.group(1) not in METHODS:
        return None
    uri = next(part for part in request.groups()[1:] if part is not None)
    return request.group(1).decode("ascii"), uri.decode("latin-1")


def host_of(head: bytes) -> str:
    """The Host header's value among the head's headers ("" without one)."""
    header_end = head.find(b"\r\n\r\n")
    found = HOST_HEADER.search(head, 0, header_end if header_end >= 0 else len(head))
    return found.group(1).strip().decode("latin-1") if found else ""


def status_of(head: bytes) -> int:
    """The status code of the ``HTTP/1.x NNN`` line ``head`` starts with; -1 if none (the
    per-message twin of ``HttpParser._status``)."""
    if len(head) < 12 or head[:7] != b"HTTP/1." or head[8:9] != b" ":
        return -1
    if not (head[7:8].isdigit() and head[9:12].isdigit()):
        return -1
    if len(head) > 12 and head[12] not in b" \r\n":
        return -1
    return int(head[9:12])


@dataclass(frozen=True)
class Head:
    """An HTTP/1.x message head as read from bytes (no I/O here: ``read_head``)."""

    method: str  # "" for a response
    uri: str
    host: str
    status: int  # -1 for a request
    length: int  # bytes of the head, blank line included; -1 when it is not whole
    body: int  # ``body_length``'s answer: bytes, CHUNKED_BODY or TO_CLOSE


def read_head(data: bytes) -> Head | None:
    """The HTTP/1.x message head ``data`` starts with; None when it starts no message."""
    status = status_of(data)
    method = uri = ""
    if status < 0:
        line = request_line(data)
        if line is None:
            return None
        method, uri = line
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return Head(method, uri, host_of(data), status, -1, 0)
    body = body_length(data, head_end, status)
    return Head(method, uri, host_of(data), status, head_end + 4, body)


def chunk_at(data: bytes) -> tuple[int, int] | None:
    """A chunked body's chunk header at the start of ``data``: (bytes of the header line,
    bytes of the chunk's data); None when ``data`` starts no chunk header."""
    found = CHUNK_HEADER.match(data)
    if found is None:
        return None
    return found.end(), int(found.group(1), 16)


def trailer_length(data: bytes) -> int:
    """Bytes of the trailer section closing a chunked body (after the last chunk's header):
    an empty line, or header lines and an empty line; -1 when it is not whole in ``data``."""
    if data.startswith(b"\r\n"):
        return 2
    end = data.find(b"\r\n\r\n")
    return end + 4 if end >= 0 else -1


def message_length(head: bytes, status: int = -1) -> int:
    """Bytes of the HTTP/1.x message starting ``head`` (its first bytes, one segment's): the
    head, plus the body Content-Length gives. -1 when the head is not whole in ``head`` or
    the body's end is not known from it (chunked, or a response running to the close)."""
    head_end = head.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    body = body_length(head, head_end, status)
    return min(head_end + 4 + body, LENGTH_CAP) if body >= 0 else -1


def body_length(head: bytes, head_end: int, status: int) -> int:
    """The body's bytes as the head at ``head[:head_end]`` frames them (RFC 9112 6.3, as
    Wireshark reads it): none for 1xx, 204 and 304, chunked before Content-Length, the last
    Content-Length when there are several (one too large for 64 bits is none); else a
    request has none and a response runs to the close. CHUNKED or TO_CLOSE where it is not a number."""
    if 100 <= status < 200 or status in NO_BODY_STATUS:
        return 0
    if CHUNKED.search(head, 0, head_end):
        return CHUNKED_BODY
    lengths = CONTENT_LENGTH.findall(head, 0, head_end + 4)
    if lengths and int(lengths[-1]) < 2**63:  # past a signed 64-bit number Wireshark has none
        return int(lengths[-1])
    return 0 if status < 0 else TO_CLOSE
