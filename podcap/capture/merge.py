"""Merge per-Pod pcap files into one pcapng with one interface per Pod.

Each input becomes an Interface Description Block whose ``if_name`` is the Pod
(``namespace/pod``) and whose link type is the input's own (so an ``-i any`` SLL2 capture and
an Ethernet one can sit side by side: a single link type for all, as some tools hard-code, would
mislabel them). Packets are written in time order as Enhanced Packet Blocks with microsecond
timestamps, the pcapng default resolution.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from podcap.errors import DecodeError
from podcap.pcapfile import (
    BLOCK_EPB,
    BLOCK_IDB,
    BYTE_ORDER_MAGIC,
    IF_DESCRIPTION,
    IF_NAME,
    OPT_COMMENT,
    OPT_END,
    PCAP_HEADER_LEN,
    PCAPNG_SHB,
    PcapHeader,
    parse_pcap_header,
)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(struct.pack("<HH", code, len(v)) + _pad(v) for code, v in options)
    return out + struct.pack("<HH", OPT_END, 0) if options else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def section_header(comment: str) -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return _block(PCAPNG_SHB, body + _options([(OPT_COMMENT, comment.encode())]))


def interface(linktype: int, snaplen: int, name: str, description: str) -> bytes:
    body = struct.pack("<HHI", linktype, 0, snaplen)
    options = [(IF_NAME, name.encode()), (IF_DESCRIPTION, description.encode())]
    return _block(BLOCK_IDB, body + _options(options))


def packet(
    interface_id: int, micros: int, data: bytes, original_length: int, comment: str = ""
) -> bytes:
    """An Enhanced Packet Block: ``data`` as captured (maybe cut at the snap length) and the
    packet's ``original_length`` on the wire, which Wireshark shows as frame.len; a
    ``comment`` it shows as the packet's comment (frame.comment)."""
    body = struct.pack(
        "<IIIII", interface_id, micros >> 32, micros & 0xFFFFFFFF, len(data), original_length
    )
    options = _options([(OPT_COMMENT, comment.encode())]) if comment else b""
    return _block(BLOCK_EPB, body + _pad(data) + options)


def read_header(f: BinaryIO, path: Path) -> PcapHeader:
    """The pcap file header; DecodeError when ``path`` is not a pcap file."""
    header = parse_pcap_header(f.read(PCAP_HEADER_LEN))
    if header is None:
        raise DecodeError(f"cannot merge {path}: not a pcap file (pcapng inputs are not merged)")
    return header


def _read(path: Path, index: int) -> Iterator[tuple[int, int, int, bytes, int]]:
    """``(microseconds, input index, packet number, captured bytes, original length)`` per
    packet (numbered from 0 in the file). Read here, not with dpkt.pcap.Reader, because its
    packets come without their original length."""
    with path.open("rb") as f:
        header = read_header(f, path)
        record = struct.Struct(header.byte_order + "IIII")
        number = 0
        while len(raw := f.read(record.size)) == record.size:
            seconds, fraction, captured, original = record.unpack(raw)
            micros = seconds * 1_000_000 + fraction * 1_000_000 // header.fractions_per_second
            data = f.read(captured)
            if len(data) < captured:
                return  # cut mid-packet (the capture was killed): keep the whole packets
            yield micros, index, number, data, original
            number += 1


def merge(
    inputs: list[tuple[str, Path]],
    output: Path,
    comment: str = "podcap capture",
    packet_comments: dict[tuple[int, int], str] | None = None,
) -> int:
    """Write ``output`` (pcapng) from ``[(interface name, pcap path), ...]``; returns the
    number of packets written. An input with no packet still gets its interface.
    ``packet_comments``: {(input index, packet number from 0): comment}."""
    notes = packet_comments or {}
    headers = []
    for name, path in inputs:
        try:
            with path.open("rb") as f:
                header = read_header(f, path)
        except OSError as exc:
            raise DecodeError(f"cannot merge {path}: {exc.strerror or exc}") from exc
        headers.append((name, header.linktype, header.snaplen))
    count = 0
    with output.open("wb") as out:
        out.write(section_header(comment))
        for name, linktype, snaplen in headers:
            out.write(interface(linktype, snaplen, name, f"podcap: Pod {name}"))
        streams = [_read(path, i) for i, (_, path) in enumerate(inputs)]
        for micros, index, number, data, length in heapq.merge(*streams, key=lambda p: p[0]):
            out.write(packet(index, micros, data, length, notes.get((index, number), "")))
            count += 1
    return count
