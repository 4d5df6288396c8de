"""DNS messages read with numpy, many at once: header, question, the first answers.

``read_dns(view, start, end)`` takes the offsets of DNS messages in a byte buffer (UDP
payloads; a TCP payload's message after its 2-byte length) and returns one column per field,
with no Python step per message: names are walked label by label for all messages together,
and only distinct names are spelled out in Python (a resolver asks the same few names over
and over). A message that runs past its end, or whose labels are not labels, is
``malformed`` and keeps what was read before the fault.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from podcap.decode.bytesview import ByteView

HEADER = 12
MAX_LABELS = 128  # a name of 255 bytes has at most 127 labels
MAX_ANSWERS = 8  # answers looked at for the first address (CNAME chains come first)
MAX_NAME = 255
A, AAAA, CNAME = 1, 28, 5
IN = 1  # the Internet class
MAX_PLAUSIBLE_ANSWERS = 64
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
         33: "SRV", 65: "HTTPS", 255: "ANY"}  # fmt: skip


@dataclass(frozen=True)
class DnsColumns:
    """One value per message given to ``read_dns``."""

    ident: np.ndarray  # transaction id (dns.id)
    response: np.ndarray  # bool: QR set (dns.flags.response)
    truncated: np.ndarray  # bool: TC set (dns.flags.truncated)
    rcode: np.ndarray  # dns.flags.rcode
    questions: np.ndarray  # dns.count.queries
    answers: np.ndarray  # dns.count.answers
    name: Any  # pandas Categorical: the question's name, dotted ("" without a question)
    qtype: np.ndarray  # dns.qry.type; -1 without a question
    address: Any  # pandas Categorical: the first A/AAAA answer's address ("" if none)
    malformed: np.ndarray  # bool
    # bool: reads as a standard query or answer (one question, class IN, opcode QUERY): what
    # tells DNS on another port than 53 from other UDP payloads
    plausible: np.ndarray


def read_dns(view: ByteView, start: np.ndarray, end: np.ndarray) -> DnsColumns:
    """The fields of the DNS messages at ``start`` (each ending before ``end``), with numpy
    (the reference: ``podcap.flows.compiled.dns_fields`` reads the same in C)."""
    start, end = start.astype(np.int64), end.astype(np.int64)
    header = view.rows(start, HEADER)

    def field(at: int) -> np.ndarray:  # the big-endian 16-bit header field at byte ``at``
        return (header[:, at].astype(np.int64) << 8) | header[:, at + 1]

    flags, questions, answers = field(2), field(4), field(6)
    malformed = start + HEADER > end
    asked = (questions > 0) & ~malformed
    name_end, bad = _skip_names(view, np.where(asked, start + HEADER, end), end)
    malformed |= asked & (bad | (name_end + 4 > end))
    asked &= ~malformed
    qtype = np.where(asked, view.u16(name_end), -1)
    qclass = np.where(asked, view.u16(name_end + 2), -1)
    names = _names(view, start + HEADER, name_end, asked)
    answer_at = np.where(asked, name_end + 4, start + HEADER)
    found = _first_address(view, answer_at, end, np.where(flags >> 15 == 1, answers, 0))
    address = addresses(view, len(start), *found)
    header_fields = (field(0), flags, questions, answers)
    return dns_columns(*header_fields, names, qtype, qclass, address, malformed, asked)


def dns_columns(ident, flags, questions, answers, names, qtype, qclass, address, malformed,
                asked) -> DnsColumns:  # fmt: skip
    """The columns from the fields read (by numpy here, or in C)."""
    return DnsColumns(
        ident=ident,
        response=(flags >> 15) == 1,
        truncated=(flags & 0x0200) != 0,
        rcode=flags & 0x000F,
        questions=questions,
        answers=answers,
        name=names,
        qtype=qtype,
        address=address,
        malformed=malformed,  # an answer cut short (a long one over TCP) keeps the rest
        plausible=asked
        & (questions == 1)
        & (((flags >> 11) & 0xF) == 0)
        & (qclass == IN)
        & (answers <= MAX_PLAUSIBLE_ANSWERS),
    )


def _skip_names(view: ByteView, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The offset after the name at each ``at`` (labels, ending with a zero length or a
    compression pointer), and whether the name is broken (runs past ``end``, bad label)."""
    pos, bad = at.copy(), np.zeros(len(at), bool)
    active = np.flatnonzero(at < end)
    bad[at >= end] = True
    for _ in range(MAX_LABELS):
        if not len(active):
            break
        length = view.u8(pos[active]).astype(np.int64)
        pointer = (length & 0xC0) == 0xC0
        done = (length == 0) | pointer
        pos[active] += np.where(pointer, 2, length + 1)
        wrong = ((length & 0xC0) != 0) & ~pointer
        wrong |= pos[active] > end[active]
        bad[active[wrong]] = True
        active = active[~done & ~wrong]
    bad[active] = True  # still going after MAX_LABELS labels
    return pos, bad


def _names(view: ByteView, at: np.ndarray, stop: np.ndarray, asked: np.ndarray):
    """The dotted question names, as a pandas Categorical: distinct wire names found with
    one hash per message, each spelled once (no Python string per message)."""
    rows = np.flatnonzero(asked & (stop - at <= MAX_NAME))
    if not len(rows):
        return names_of(view, at, stop, rows, np.zeros(0, np.uint64))
    length = stop[rows] - at[rows]
    width = int(-(-length.max() // 8) * 8)
    words = view.rows(at[rows], width).view(np.uint64)
    # Only each name's own bytes count: whole words before its end, then its last word's
    # first bytes (the bytes after a name belong to the rest of its message).
    whole, tail = length // 8, (length % 8).astype(np.uint64)
    mixers = np.random.default_rng(5353).integers(1, 2**63, words.shape[1], dtype=np.uint64) | 1
    key = np.zeros(len(rows), np.uint64)
    for nth, mixer in enumerate(mixers):  # a column at a time: numpy is slow on short rows
        key += np.where(whole > nth, words[:, nth], 0) * mixer
    last = words[np.arange(len(rows)), np.minimum(whole, words.shape[1] - 1)]
    last &= np.where(tail > 0, (np.uint64(1) << (tail * np.uint64(8))) - np.uint64(1), 0)
    key ^= (last * np.uint64(0x9E3779B97F4A7C15)) ^ length.astype(np.uint64)
    return names_of(view, at, stop, rows, key)


def names_of(view: ByteView, at: np.ndarray, stop: np.ndarray, rows: np.ndarray, key):
    """The names of ``rows`` (bytes ``at`` to ``stop``) as a Categorical of every message
    ("" elsewhere), ``key`` a hash of each row's name: one spelled per distinct hash."""
    import pandas as pd

    codes = np.zeros(len(at), np.int64)
    if not len(rows):
        return pd.Categorical.from_codes(codes, [""])
    inverse, distinct = pd.factorize(key)
    first = np.zeros(len(distinct), np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]  # each distinct key's first row
    spelled = [_dotted(view.read(int(at[rows[i]]), int(stop[rows[i]] - at[rows[i]])))
               for i in first]  # fmt: skip
    categories, spelled_codes = np.unique(["", *spelled], return_inverse=True)
    codes[rows] = spelled_codes[1:][inverse]
    return pd.Categorical.from_codes(codes, categories.astype(object))


def _dotted(wire: bytes) -> str:
    """A name in wire format (labels; a final pointer stands for the rest) as text."""
    labels, pos = [], 0
    while pos < len(wire) and 0 < wire[pos] < 0xC0:
        labels.append(wire[pos + 1 : pos + 1 + wire[pos]].decode("latin-1"))
        pos += 1 + wire[pos]
    return ".".join(labels) if labels else "<Root>"


def _first_address(view, at, end, answers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the first A or AAAA record's address is among each message's first MAX_ANSWERS
    answers (after ``at``): (the messages that have one, its offset, its size)."""
    pos = at.copy()
    active = np.flatnonzero(answers > 0)
    found_rows, found_at, found_size = [], [], []
    for nth in range(MAX_ANSWERS):
        if not len(active):
            break
        after_name, bad = _skip_names(view, pos[active], end[active])
        kind = view.u16(after_name)
        size = view.u16(after_name + 8).astype(np.int64)
        data = after_name + 10
        bad |= data + size > end[active]
        found = ~bad & (((kind == A) & (size == 4)) | ((kind == AAAA) & (size == 16)))
        found_rows.append(active[found]), found_at.append(data[found])
        found_size.append(size[found])
        pos[active] = data + size
        active = active[~bad & ~found & (answers[active] > nth + 1)]
    if not found_rows:
        return (np.zeros(0, np.int64),) * 3
    return tuple(np.concatenate(parts) for parts in (found_rows, found_at, found_size))


def addresses(view: ByteView, n: int, rows: np.ndarray, at: np.ndarray, size: np.ndarray):
    """A Categorical of ``n`` messages' addresses: ``rows`` have one of ``size`` bytes (4 or
    16) at ``at``, the others ""; each distinct address spelled once."""
    import pandas as pd

    codes = np.zeros(n, np.int64)
    spelled = [""]
    raw = view.rows(at, 16)
    for width, family in ((4, socket.AF_INET), (16, socket.AF_INET6)):
        pick = size == width
        if not pick.any():
            continue
        values = np.ascontiguousarray(raw[pick, :width])
        if width == 4:  # as one number each: hashed, not sorted
            inverse, distinct = pd.factorize(values.view(np.uint32).ravel())
            distinct = distinct.astype(np.uint32).view(np.uint8).reshape(-1, 4)
        else:
            distinct, inverse = np.unique(values.view("V16").ravel(), return_inverse=True)
            distinct = distinct.view(np.uint8).reshape(-1, 16)
        codes[rows[pick]] = len(spelled) + inverse.ravel()
        spelled += [socket.inet_ntop(family, bytes(v)) for v in distinct]
    categories, remap = np.unique(spelled, return_inverse=True)
    return pd.Categorical.from_codes(remap[codes], categories.astype(object))
