"""The DNS reader's two backends: the C loop (``podcap.flows.compiled.dns_fields``, used when
the flows' extension is built) against the numpy reference (``podcap.decode.dns.read_dns``),
field by field, on the DNS sample, on messages built here with every fault a name or an
answer can have, and on random bytes."""

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podcap.analysis.run import analyze
from podcap.decode.bytesview import ByteView
from podcap.decode.dns import read_dns
from podcap.decode.reread import reopen
from podcap.flows import compiled
from podcap.flows.dns import _dns_rows

pytestmark = pytest.mark.skipif(compiled.EXTENSION is None, reason="built without a C compiler")
SAMPLE = Path(__file__).parent.parent / "sample_pcaps" / "11-dns-lookups.pcap"


def _same(view: ByteView, start: np.ndarray, end: np.ndarray) -> None:
    ours, reference = compiled.dns_fields(view, start, end), read_dns(view, start, end)
    for name in reference.__dataclass_fields__:
        got, want = getattr(ours, name), getattr(reference, name)
        assert list(np.asarray(got)) == list(np.asarray(want)), name


def test_the_sample_reads_the_same():
    packets = analyze([str(SAMPLE)], reports=["summary"]).analysis.all_packets
    rows = _dns_rows(packets)
    at = packets["file_off"].to_numpy()[rows] + packets["payload_off"].to_numpy()[rows]
    end = at + packets["payload_len"].to_numpy()[rows]
    with reopen(str(SAMPLE)) as source:
        view = source.view()
        _same(view, at, end)
        assert (compiled.dns_fields(view, at, end).name != "").any()  # names were read


def _name(labels: list[bytes], ending: bytes = b"\0") -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + ending


def _message(name: bytes, answers: list[bytes], flags: int = 0x8180, questions: int = 1) -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, flags, questions, len(answers), 0, 0)
    return header + name + struct.pack("!HH", 1, 1) + b"".join(answers)


def _record(kind: int, data: bytes, owner: bytes = b"\xc0\x0c") -> bytes:
    return owner + struct.pack("!HHIH", kind, 1, 30, len(data)) + data


HANDMADE = [
    _message(_name([b"api", b"shop"]), [_record(1, bytes([10, 0, 0, 1]))]),
    _message(_name([b"v6", b"shop"]), [_record(5, _name([b"x"])), _record(28, bytes(range(16)))]),
    _message(_name([b"q"]), [], flags=0x0100),  # a query
    _message(_name([b"bad"], ending=b"\x80"), []),  # a reserved label kind
    _message(_name([b"ptr"], ending=b"\xc0\x0c"), [_record(1, b"\1\2\3\4")]),  # a pointer
    _message(_name([b"short"]), [_record(1, b"\1\2\3")]),  # an A of 3 bytes: no address
    _message(_name([b"a" * 63] * 5), [_record(1, b"\1\2\3\4")]),  # a name over 255 bytes
    _message(b"\0", [_record(1, b"\1\2\3\4")]),  # the root
    _message(_name([b"none"]), [], questions=0),
    b"\x12\x34",  # shorter than a header
]


def _buffer(messages: list[bytes], cuts: list[int]) -> tuple[ByteView, np.ndarray, np.ndarray]:
    data, start, end = b"", [], []
    for message, cut in zip(messages, cuts, strict=True):
        start.append(len(data))
        data += message
        end.append(len(data) - min(cut, len(message)))
    return ByteView(data), np.array(start, np.int64), np.array(end, np.int64)


def test_handmade_messages_and_their_cuts_read_the_same():
    for cut in (0, 1, 2, 4, 6, 11, 30):
        view, start, end = _buffer(HANDMADE, [cut] * len(HANDMADE))
        _same(view, start, end)
    view, start, end = _buffer(HANDMADE, [0] * len(HANDMADE))
    fields = compiled.dns_fields(view, start, end)
    assert list(fields.address[:2]) == ["10.0.0.1", "1:203:405:607:809:a0b:c0d:e0f"]
    assert list(fields.name[:3]) == ["api.shop", "v6.shop", "q"]
    assert fields.malformed[3] and not fields.malformed[4] and fields.malformed[-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=80), st.integers(0, 20)), max_size=12))
def test_random_bytes_read_the_same(pieces):
    messages = [piece for piece, _ in pieces]
    # A real header first, so that the random bytes are walked as names and answers.
    messages = [struct.pack("!HHHHHH", 7, 0x8180, 1, 3, 0, 0) + m for m in messages]
    view, start, end = _buffer(messages, [cut for _, cut in pieces])
    _same(view, start, end)
