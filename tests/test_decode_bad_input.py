"""Bad input: a one-line DecodeError naming the file for what cannot be read, a warning plus
the readable packets for a damaged tail; never another exception, never a hang (fuzzed)."""

import gzip
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podcap.decode import read_capture
from podcap.decode.schema import PACKET_COLUMNS
from podcap.errors import DecodeError
from testbed.helpers import tshark_fields
from tests.decode_fixtures import (
    ethernet,
    ipv4,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    tcp,
    write_pcap,
)
from tests.test_decode_formats import multi_interface_pcapng
from tests.test_decode_vs_tshark import ethernet_cases

FRAME = ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1234, 80, 0x18, b"lbtest payload")))


def pcap_bytes(frames, linktype=1) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return write_pcap(Path(tmp) / "x.pcap", linktype, frames).read_bytes()


def assert_one_line_error(path: Path, *words: str) -> None:
    with pytest.raises(DecodeError) as caught:
        read_capture(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for word in words:
        assert word in message


UNDECODED = ("{count} packets on link type {name} are counted but not decoded (--engine tshark "
             "decodes what Wireshark knows)")  # fmt: skip


def test_missing_path(tmp_path):
    assert_one_line_error(tmp_path / "nope.pcap", "no such file")


def test_directory(tmp_path):
    assert_one_line_error(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert_one_line_error(path, "empty file")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pcap"
    path.write_text("GET / HTTP/1.1\nthis is not a capture\n")
    assert_one_line_error(path, "not a pcap or pcapng file", "text 'GET / HTTP/1.1'")


def test_garbage(tmp_path):
    path = tmp_path / "garbage.pcap"
    path.write_bytes(bytes(range(7, 200)) * 3)
    assert_one_line_error(path, "not a pcap or pcapng file", "unknown magic 0x07080909"[:22])


def test_header_cut_short(tmp_path):
    path = tmp_path / "short.pcap"
    path.write_bytes(pcap_bytes([FRAME])[:10])
    assert_one_line_error(path, "pcap file header cut short")


def test_an_unknown_link_type_is_counted_not_refused(tmp_path):
    """A well-formed capture is always analyzed: packets on a link type the decoder does not
    know are counted and timed, and a warning says how many were not decoded."""
    path = tmp_path / "usb.pcap"
    path.write_bytes(pcap_bytes([b"\x00" * 40, b"\x01" * 40], linktype=147))
    cap = read_capture(path)
    assert cap.packets.ip_version.tolist() == [0, 0] and cap.linktypes == ["LINKTYPE_147"]
    assert cap.warnings == [UNDECODED.format(count=2, name="LINKTYPE_147")]


def test_header_only_capture_is_an_empty_table(tmp_path):
    path = tmp_path / "none.pcap"
    path.write_bytes(pcap_bytes([]))
    cap = read_capture(path, needles=(b"x",))
    assert len(cap.packets) == 0 and list(cap.packets.columns) == list(PACKET_COLUMNS)
    assert cap.warnings == [] and cap.linktypes == ["EN10MB"] and len(cap.contains[b"x"]) == 0


def test_first_record_claiming_2_gib(tmp_path):
    data = bytearray(pcap_bytes([FRAME]))
    struct.pack_into("<I", data, 24 + 8, 2**31)
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    assert_one_line_error(path, "corrupt record at byte 24", "claims 2147483648 bytes")


def test_later_record_claiming_2_gib_keeps_the_packets_before(tmp_path):
    data = bytearray(pcap_bytes([FRAME] * 4))
    third = 24 + 2 * (16 + len(FRAME))
    struct.pack_into("<I", data, third + 8, 2**31)
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    cap = read_capture(path)
    assert len(cap.packets) == 2
    assert cap.warnings == [
        f"corrupt record at byte {third} (claims 2147483648 bytes): kept 2 whole packets"
    ]


@pytest.mark.parametrize("cut", [5, 20, 40], ids=["in-header", "in-data", "deep-in-data"])
def test_truncated_tail_warns_and_keeps_whole_packets(tmp_path, cut):
    data = pcap_bytes([FRAME] * 5)
    last = 24 + 4 * (16 + len(FRAME))
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: last + cut])
    cap = read_capture(path, needles=(b"lbtest",))
    assert len(cap.packets) == 4 and cap.contains[b"lbtest"].sum() == 4
    assert cap.warnings == [f"truncated record at byte {last}: kept 4 whole packets"]
    # tshark also shows the 4 whole packets (and complains)
    assert len(tshark_fields(path, "frame.number", cut_short=True)) == 4


def test_truncated_pcapng_tail(tmp_path):
    blocks = pcapng_shb() + pcapng_idb(1) + pcapng_epb(0, 10, FRAME) + pcapng_epb(0, 20, FRAME)
    path = tmp_path / "cut.pcapng"
    path.write_bytes(blocks[:-7])
    cap = read_capture(path)
    assert len(cap.packets) == 1 and "truncated record" in cap.warnings[0]


def test_truncated_gzip_keeps_what_decompressed(tmp_path):
    packed = gzip.compress(pcap_bytes([FRAME] * 200))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) - 30])
    cap = read_capture(path)
    assert 0 < len(cap.packets) <= 200
    (warning,) = cap.warnings
    # The offset is into the decompressed pcap, and the warning says so.
    assert "truncated gzip stream after" in warning and "decompressed bytes" in warning


def test_corrupt_pcapng_block_length(tmp_path):
    blocks = bytearray(
        pcapng_shb() + pcapng_idb(1) + pcapng_epb(0, 10, FRAME) + pcapng_epb(0, 20, FRAME)
    )
    second = len(blocks) - len(pcapng_epb(0, 20, FRAME))
    struct.pack_into("<I", blocks, second + 4, 7)  # not a multiple of 4, smaller than a block
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(blocks))
    cap = read_capture(path)
    assert len(cap.packets) == 1
    assert cap.warnings == [f"corrupt block at byte {second} (length 7): kept 1 whole packets"]


# ---- fuzzing --------------------------------------------------------------------------
VALID_CAPTURES = [
    pcap_bytes(ethernet_cases()),
    multi_interface_pcapng()[0],
    gzip.compress(pcap_bytes(ethernet_cases()[:5])),
]
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def decode_or_decode_error(data: bytes) -> None:
    """The only acceptable outcomes: a Capture with a well-formed table, or DecodeError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.pcap"
        path.write_bytes(data)
        try:
            cap = read_capture(path, needles=(b"lbtest", b"GET"))
        except DecodeError as err:
            assert str(err).startswith(str(path)) and "\n" not in str(err)
            return
        packets = cap.packets
        assert list(packets.columns) == list(PACKET_COLUMNS)
        assert len(packets) <= len(data) // 12  # every record costs at least 12 bytes
        assert (packets.caplen >= 0).all() and (packets.payload_len >= 0).all()
        assert all(len(found) == len(packets) for found in cap.contains.values())


@FUZZ
@given(st.binary(max_size=3000))
def test_fuzz_random_bytes(data):
    decode_or_decode_error(data)


@FUZZ
@given(
    st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"]),
    st.binary(max_size=3000),
)
def test_fuzz_random_bytes_behind_a_valid_magic(magic, data):
    decode_or_decode_error(magic + data)


@FUZZ
@given(
    st.sampled_from(VALID_CAPTURES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=12),
    st.integers(0, 10_000),
)
def test_fuzz_mutated_captures(base, flips, cut):
    data = bytearray(base)
    for position, value in flips:
        data[position % len(data)] = value
    decode_or_decode_error(bytes(data[: max(cut, 1)] if cut < len(data) else data))


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2, 3, 5, 6, 0x99]), st.integers(0, 300), st.binary(max_size=120)
        ),
        max_size=10,
    ),
    st.booleans(),
)
def test_fuzz_pcapng_block_sequences(items, big_endian):
    # Well-framed blocks in any order with random contents: interfaces with random link types
    # and clocks, packets on interfaces that may not exist, unknown and odd blocks.
    endian = ">" if big_endian else "<"
    data = pcapng_shb(endian)
    for kind, number, body in items:
        if kind == 1:
            data += pcapng_idb(number, tsresol=body[0] if body else None, endian=endian)
        elif kind == 6:
            data += pcapng_epb(number % 3, len(body) * 1000, body, endian=endian)
        else:
            data += pcapng_block(kind, body, endian)
    decode_or_decode_error(data)


def test_absurd_pcapng_clock_resolution_does_not_overflow(tmp_path):
    # Found by fuzzing: if_tsresol 10^127 does not fit the 64-bit clock arithmetic.
    path = tmp_path / "clock.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb(1, tsresol=0x7F) + pcapng_epb(0, 10**12, FRAME))
    cap = read_capture(path)
    assert len(cap.packets) == 1 and cap.packets.src[0] == "10.0.0.1"


def test_pcapng_with_an_unsupported_interface_keeps_the_others(tmp_path):
    path = tmp_path / "mixed.pcapng"
    blocks = pcapng_shb() + pcapng_idb(147) + pcapng_idb(1)
    path.write_bytes(blocks + pcapng_epb(0, 1, b"\x00" * 30) + pcapng_epb(1, 2, FRAME))
    cap = read_capture(path)
    assert cap.packets.ip_version.tolist() == [0, 4]  # counted, not decoded; decoded
    assert cap.warnings == [UNDECODED.format(count=1, name="LINKTYPE_147")]


def test_pcapng_with_only_unsupported_interfaces_is_counted(tmp_path):
    path = tmp_path / "usb.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb(189) + pcapng_epb(0, 1, b"\x00" * 30))
    cap = read_capture(path)
    assert len(cap.packets) == 1 and cap.packets.ip_version[0] == 0
    assert cap.warnings == [UNDECODED.format(count=1, name="LINKTYPE_189")]


def test_simple_packet_block_too_short_is_skipped(tmp_path):
    # Found by fuzzing: a 12-byte SPB has no room for its length field.
    path = tmp_path / "spb.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb(1) + pcapng_block(3, b""))
    cap = read_capture(path)
    assert len(cap.packets) == 0
    assert cap.warnings == ["skipped 1 simple packet block(s) too short"]
