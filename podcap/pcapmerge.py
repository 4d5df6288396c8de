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

import dpkt

from podcap.errors import DecodeError

BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_COMMENT, OPT_IF_NAME, OPT_IF_DESCRIPTION = 1, 2, 3


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(struct.pack("<HH", code, len(v)) + _pad(v) for code, v in options)
    return out + struct.pack("<HH", 0, 0) if options else b""


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def section_header(comment: str) -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)
    return _block(0x0A0D0D0A, body + _options([(OPT_COMMENT, comment.encode())]))


def interface(linktype: int, snaplen: int, name: str, description: str) -> bytes:
    body = struct.pack("<HHI", linktype, 0, snaplen)
    options = [(OPT_IF_NAME, name.encode()), (OPT_IF_DESCRIPTION, description.encode())]
    return _block(0x00000001, body + _options(options))


def packet(interface_id: int, timestamp: float, data: bytes, original_length: int) -> bytes:
    micros = round(timestamp * 1_000_000)
    body = struct.pack(
        "<IIIII", interface_id, micros >> 32, micros & 0xFFFFFFFF, len(data), original_length
    )
    return _block(0x00000006, body + _pad(data))


def _read(path: Path, index: int) -> Iterator[tuple[float, int, bytes, int]]:
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        for timestamp, data in reader:
            yield timestamp, index, bytes(data), len(data)


def merge(inputs: list[tuple[str, Path]], output: Path, comment: str = "podcap capture") -> int:
    """Write ``output`` (pcapng) from ``[(interface name, pcap path), ...]``; returns the
    number of packets written. An input with no packet still gets its interface."""
    headers = []
    for name, path in inputs:
        try:
            with path.open("rb") as f:
                reader = dpkt.pcap.Reader(f)
                headers.append((name, reader.datalink(), reader.snaplen))
        except (OSError, ValueError) as exc:
            raise DecodeError(f"cannot merge {path}: {exc}") from exc
    count = 0
    with output.open("wb") as out:
        out.write(section_header(comment))
        for name, linktype, snaplen in headers:
            out.write(interface(linktype, snaplen, name, f"podcap: Pod {name}"))
        streams = [_read(path, i) for i, (_, path) in enumerate(inputs)]
        for timestamp, index, data, length in heapq.merge(*streams, key=lambda p: p[0]):
            out.write(packet(index, timestamp, data, length))
            count += 1
    return count
