"""File formats: pcap (µs/ns, both byte orders), pcapng (several interfaces, clocks, blocks),
gzip, and reading in chunks. Packet counts, timestamps and interfaces are checked against
tshark where it has an opinion."""

import gzip
import os
import shutil
import threading

import numpy as np
import pandas as pd
import pytest

from podcap.decode import read_capture
from podcap.decode.schema import PACKET_COLUMNS
from testbed.helpers import tshark_fields
from tests.decode_fixtures import (
    ETH_IPV6,
    ethernet,
    http_request,
    ipv4,
    ipv6,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    pcapng_spb,
    sll2,
    tcp,
    udp,
    write_pcap,
)

needs_tshark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the oracle")


def sample_frames(count=6) -> list[bytes]:
    frames = []
    for i in range(count):
        payload = http_request(f"/item/{i}") if i % 2 else b"lbtest-%d" % i
        frames.append(
            ethernet(ipv4(f"10.0.0.{i + 1}", "10.0.1.1", 6, tcp(30000 + i, 80, 0x18, payload)))
        )
    return frames


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
@pytest.mark.parametrize("big_endian", [False, True], ids=["little", "big"])
def test_pcap_variants_keep_timestamps_and_fields(tmp_path, nano, big_endian):
    stamps = [1_700_000_000.123456, 1_700_000_001.000001, 1_700_000_002.5]
    if nano:
        stamps = [1_700_000_000.123456789, 1_700_000_001.000000001, 1_700_000_002.5]
    records = [(ts, f) for ts, f in zip(stamps, sample_frames(3), strict=True)]
    path = write_pcap(tmp_path / "v.pcap", 1, records, nano=nano, big_endian=big_endian)
    cap = read_capture(path)
    assert cap.file_format == "pcap" and cap.linktypes == ["EN10MB"] and cap.warnings == []
    np.testing.assert_allclose(cap.packets.ts, stamps, rtol=0, atol=1e-6)
    assert cap.packets.src.tolist() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert list(cap.packets.columns) == list(PACKET_COLUMNS)


def test_packet_table_dtypes_follow_the_schema(tmp_path):
    packets = read_capture(write_pcap(tmp_path / "d.pcap", 1, sample_frames())).packets
    for name, (dtype, _, _) in PACKET_COLUMNS.items():
        if dtype == "str":  # text: a categorical over the strings the column holds
            assert isinstance(packets[name].dtype, pd.CategoricalDtype), name
            used = sorted(set(packets[name].astype(str)))
            assert packets[name].cat.categories.tolist() == used, name
        else:
            assert str(packets[name].dtype) == dtype, name
    assert packets.frame.tolist() == list(range(1, 7))


def multi_interface_pcapng() -> tuple[bytes, list[tuple[int, float, str]]]:
    """Three interfaces (Ethernet µs, SLL2 ns, raw IP with a 2^-20 clock) and odd blocks."""
    frame_eth = ethernet(ipv4("10.1.0.1", "10.1.0.2", 17, udp(1, 2, b"a")))
    frame_sll2 = sll2(ipv6("fd00::1", "fd00::2", 17, udp(3, 4, b"b")), ETH_IPV6)
    frame_raw = ipv4("10.3.0.1", "10.3.0.2", 6, tcp(5, 6, 0x02))
    blocks = [
        pcapng_shb(),
        pcapng_idb(1),
        pcapng_block(0x00000099, b"a block type nobody knows"),
        pcapng_idb(276, tsresol=9),
        pcapng_idb(101, tsresol=0x80 | 20),
        pcapng_epb(0, 1_700_000_000_250_000, frame_eth),
        pcapng_epb(1, 1_700_000_001_000_000_500, frame_sll2),
        pcapng_block(4, b"\0\0\0\0"),  # name resolution block, empty
        pcapng_epb(2, 1_700_000_002 * 2**20 + 2**19, frame_raw),
        pcapng_spb(frame_eth),  # simple packet block: interface 0, no timestamp
        pcapng_block(5, b"\0" * 12),  # interface statistics
    ]
    expected = [
        (0, 1_700_000_000.25, "10.1.0.1"),
        (1, 1_700_000_001.0000005, "fd00::1"),
        (2, 1_700_000_002.5, "10.3.0.1"),
        (0, 0.0, "10.1.0.1"),
    ]
    return b"".join(blocks), expected


@needs_tshark
def test_pcapng_interfaces_clocks_and_blocks(tmp_path):
    data, expected = multi_interface_pcapng()
    path = tmp_path / "multi.pcapng"
    path.write_bytes(data)
    cap = read_capture(path)
    assert cap.file_format == "pcapng"
    assert cap.linktypes == ["EN10MB", "LINUX_SLL2", "RAW"]
    packets = cap.packets
    assert packets.iface.tolist() == [e[0] for e in expected]
    assert packets.src.tolist() == [e[2] for e in expected]
    np.testing.assert_allclose(packets.ts, [e[1] for e in expected], rtol=0, atol=1e-7)
    fields = ("frame.interface_id", "frame.time_epoch", "ip.src", "ipv6.src")
    theirs = tshark_fields(path, *fields, occurrence="l")
    assert len(theirs) == len(packets)
    for row, (iface, epoch, v4, v6) in zip(packets.itertuples(), theirs, strict=True):
        assert row.iface == int(iface) and row.src == (v4 or v6)
        if row.ts:  # tshark gives the SPB no time either (it shows the epoch start)
            assert abs(row.ts - float(epoch)) < 1e-6


def test_big_endian_pcapng_and_second_section(tmp_path):
    frame = ethernet(ipv4("10.9.0.1", "10.9.0.2", 17, udp(7, 8, b"x")))
    section_be = (
        pcapng_shb(">") + pcapng_idb(1, endian=">") + pcapng_epb(0, 5_000_000, frame, endian=">")
    )
    section_le = pcapng_shb() + pcapng_idb(101) + pcapng_epb(0, 7_000_000, frame[14:])
    path = tmp_path / "sections.pcapng"
    path.write_bytes(section_be + section_le)
    packets = read_capture(path).packets
    # Interface ids restart in each section; the table numbers interfaces across the file.
    assert packets.iface.tolist() == [0, 1]
    assert packets.linktype.tolist() == [1, 101]
    assert packets.ts.tolist() == [5.0, 7.0]
    assert packets.dst.tolist() == ["10.9.0.2", "10.9.0.2"]


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_is_read_transparently(tmp_path, kind):
    if kind == "pcap":
        plain = write_pcap(tmp_path / "p.pcap", 1, sample_frames())
    else:
        plain = tmp_path / "p.pcapng"
        plain.write_bytes(multi_interface_pcapng()[0])
    zipped = tmp_path / f"p.{kind}.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_capture(plain, needles=(b"lbtest",)), read_capture(zipped, needles=(b"lbtest",))
    pd.testing.assert_frame_equal(a.packets, b.packets)
    assert a.file_format == b.file_format == kind
    np.testing.assert_array_equal(a.contains[b"lbtest"], b.contains[b"lbtest"])


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_small_chunks_give_the_same_table(tmp_path, kind):
    # Records straddle every chunk boundary; the carried-over bytes must join up exactly.
    frames = sample_frames(40)
    if kind == "pcap":
        path = write_pcap(tmp_path / "c.pcap", 1, frames)
    else:
        blocks = [pcapng_shb(), pcapng_idb(1)]
        blocks += [pcapng_epb(0, 1_000_000 * (i + 1), f) for i, f in enumerate(frames)]
        path = tmp_path / "c.pcapng"
        path.write_bytes(b"".join(blocks))
    whole = read_capture(path, needles=(b"lbtest", b"/item/3"))
    for chunk_bytes in (97, 1000, 4096):
        parts = read_capture(path, needles=(b"lbtest", b"/item/3"), chunk_bytes=chunk_bytes)
        pd.testing.assert_frame_equal(whole.packets, parts.packets)
        for needle, found in whole.contains.items():
            np.testing.assert_array_equal(found, parts.contains[needle])
    assert len(whole.packets) == 40 and whole.warnings == []


def test_contains_looks_only_inside_l4_payloads(tmp_path):
    frames = [
        ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 80, 0x18, b"xx lbtest yy"))),
        # The needle split across two packets matches neither.
        ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 80, 0x18, b"....lbt"))),
        ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 80, 0x18, b"est...."))),
        # In the IP header bytes (a crafted address), not the payload: no match.
        ethernet(ipv4("108.98.116.101", "10.0.0.2", 17, udp(2, 3, b"st"))),
        ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp(2, 3, b"lbtest"))),
        ethernet(ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 80, 0x10))),
    ]
    cap = read_capture(write_pcap(tmp_path / "n.pcap", 1, frames), needles=(b"lbtest", b"lbt"))
    assert cap.contains[b"lbtest"].tolist() == [True, False, False, False, True, False]
    assert cap.contains[b"lbt"].tolist() == [True, True, False, False, True, False]


@needs_tshark
def test_contains_agrees_with_tshark_udp_and_tcp(tmp_path):
    frames = sample_frames(10)
    frames.append(ethernet(ipv6("fd00::1", "fd00::2", 17, udp(9, 10, b"lbtest over v6")), ETH_IPV6))
    path = write_pcap(tmp_path / "m.pcap", 1, frames)
    cap = read_capture(path, needles=(b"lbtest",))
    theirs = tshark_fields(
        path,
        "frame.number",
        display_filter='tcp.payload contains "lbtest" || udp contains "lbtest"',
    )
    matched = {int(r[0]) for r in theirs}
    assert matched == set((np.flatnonzero(cap.contains[b"lbtest"]) + 1).tolist())
    assert len(matched) == 6


@pytest.mark.parametrize("zipped", [False, True], ids=["pcap", "gzip"])
def test_reads_from_a_pipe(tmp_path, zipped):
    # `podcap analyze <(zcat capture.pcap.gz)` hands the decoder a pipe: no size, no seeking.
    data = write_pcap(tmp_path / "p.pcap", 1, sample_frames(40)).read_bytes()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(
        target=lambda: fifo.write_bytes(gzip.compress(data) if zipped else data), daemon=True
    )
    writer.start()
    try:
        cap = read_capture(fifo, needles=(b"lbtest",), chunk_bytes=1000)
    finally:
        writer.join(timeout=10)
    assert len(cap.packets) == 40 and cap.warnings == []
    assert cap.contains[b"lbtest"].sum() == 20
