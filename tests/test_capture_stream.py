"""The stream home: whatever pieces the bytes arrive in, only whole records reach the file,
and the file is a pcap tshark reads at every step, including after a limit or a cut."""

import os
import random
import shutil
import struct

import pytest

from podcap.capture.stream import PcapSink, PcapStreamCopier, StreamLimits
from testbed.lab import tshark

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "sample_pcaps", "01-http-mytest.pcap")


def sample_bytes() -> bytes:
    with open(SAMPLE, "rb") as f:
        data = f.read()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), (
        "sample must be little-endian pcap"
    )
    return data


def record_offsets(data: bytes) -> list[int]:
    """Offsets where each record ends (the only places a valid file may end)."""
    ends, position = [], 24
    while position < len(data):
        caplen = struct.unpack_from("<I", data, position + 8)[0]
        position += 16 + caplen
        ends.append(position)
    return ends


def feed_in_random_pieces(copier: PcapStreamCopier, data: bytes, seed: int, after_each=None):
    rng = random.Random(seed)
    position = 0
    while position < len(data):
        size = rng.choice([1, 3, 15, 16, 17, 100, 1500, 70000])
        copier.feed(data[position : position + size])
        position += size
        if after_each:
            after_each()


@pytest.mark.parametrize("seed", range(5))
def test_random_pieces_give_back_the_same_file(tmp_path, seed):
    data = sample_bytes()
    ends = set(record_offsets(data)) | {24}
    out = tmp_path / "out.pcap"
    sink = PcapSink(str(out))
    copier = PcapStreamCopier(sink)

    def file_ends_at_a_record_boundary():
        size = out.stat().st_size if out.exists() else 0
        assert size == 0 or size in ends

    feed_in_random_pieces(copier, data, seed, file_ends_at_a_record_boundary)
    sink.close()
    assert out.read_bytes() == data
    assert copier.progress.packets == len(ends) - 1
    assert copier.progress.linktype == 1


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_a_stream_cut_mid_packet_leaves_a_readable_file(tmp_path):
    data = sample_bytes()
    ends = record_offsets(data)
    cut = ends[4] + 10  # 5 whole packets and the start of the sixth
    out = tmp_path / "cut.pcap"
    sink = PcapSink(str(out))
    PcapStreamCopier(sink).feed(data[:cut])
    sink.close()
    assert out.stat().st_size == ends[4]
    assert tshark.count(str(out), "frame") == 5


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
def test_limits_stop_at_whole_packets(tmp_path):
    data = sample_bytes()
    ends = record_offsets(data)
    by_count = tmp_path / "count.pcap"
    copier = PcapStreamCopier(PcapSink(str(by_count)), StreamLimits(count=3))
    assert copier.feed(data) == "count"
    copier.sink.close()
    assert tshark.count(str(by_count), "frame") == 3

    by_size = tmp_path / "size.pcap"
    limit = ends[6] + 5
    copier = PcapStreamCopier(PcapSink(str(by_size)), StreamLimits(max_bytes=limit))
    assert copier.feed(data) == "max-size"
    copier.feed(data)  # more bytes after the limit are counted, not written
    copier.sink.close()
    assert by_size.stat().st_size == ends[6] <= limit
    assert tshark.count(str(by_size), "frame") == 7
    assert copier.progress.bytes_received == 2 * len(data)


def test_no_file_until_the_header_arrives(tmp_path):
    out = tmp_path / "late.pcap"
    copier = PcapStreamCopier(PcapSink(str(out)))
    copier.feed(sample_bytes()[:10])
    assert not out.exists()


def test_a_stream_that_is_not_pcap_is_an_error(tmp_path):
    from podcap.errors import CaptureError

    copier = PcapStreamCopier(PcapSink(str(tmp_path / "x.pcap")))
    with pytest.raises(CaptureError, match="not a pcap"):
        copier.feed(b"tcpdump: eth0: No such device exists\n")
