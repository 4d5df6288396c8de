"""One large pcap decoded in byte ranges apart (on several Dask workers), regrouped by bucket.

``range_cuts`` cuts a plain pcap at record starts it guesses (the plausibility test the
two-process read uses, ``podcap.decode.split``); ``decode_range`` decodes one range, its
packets partitioned into buckets of conversations as the spill to disk partitions them
(``podcap.decode.spill``: the hash of a conversation does not depend on the process), and
``bucket_from_ranges`` puts one bucket together from every range's share: string codes made
one, frame numbers counted from the file's start. A bucket is then what reading the whole
file into buckets gives, packet for packet.

A guess is proven only when the range before it ends exactly on it (``RangePart.exact``);
when one does not (a guess inside a payload, a corrupt record), the caller reads the file
whole instead, so the result never depends on a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from podcap.decode.framing import detect
from podcap.decode.framing.pcap import PcapFramer
from podcap.decode.reader import Capture, Reading
from podcap.decode.source import CHUNK_BYTES, ChunkReader, open_capture
from podcap.decode.spill import Spill, bucket_capture
from podcap.decode.split import WINDOW_BYTES
from podcap.decode.strings import Interner
from podcap.decode.table import STRING_COLUMNS, packet_table
from podcap.errors import DecodeError
from podcap.pcapfile import linktype_name

MIN_RANGE_BYTES = 64 * 1024 * 1024  # below this a range saves less than moving it costs
HEADER_AND_FIRST_RECORD = 40  # the file header (24 bytes) and the first record's (16)


@dataclass
class RangePart:
    """One range decoded: per bucket its chunks (string codes of ``strings``), and what the
    whole file's Capture takes from it."""

    strings: list[str]
    packets: int
    buckets: list[list[dict[str, np.ndarray]]]
    # Ended on a record's end with nothing unusual on the way; a file with any warning is
    # read whole, which words them (counts of the whole file, not of a range).
    exact: bool
    warnings: list[str] = field(default_factory=list)
    linktypes: list[int] = field(default_factory=list)  # present, in the file's interface order
    file_format: str = "pcap"


def range_cuts(path: str, ranges: int, min_bytes: int = MIN_RANGE_BYTES) -> list[int] | None:
    """``ranges + 1`` offsets, the first 0 and the last the file's size, the others guessed
    record starts; None for a file that is not a plain pcap of at least two ranges of
    ``min_bytes``, or where no record start is found near a cut."""
    stream = open_capture(Path(path))
    try:
        size = ChunkReader(stream, Path(path)).file_size
        head = os.pread(stream.fileno(), HEADER_AND_FIRST_RECORD, 0) if size else b""
        if size is None or len(head) < HEADER_AND_FIRST_RECORD:
            return None
        framer = detect(head, Path(path))
        if not isinstance(framer, PcapFramer) or ranges < 2 or size < 2 * min_bytes:
            return None
        cuts = [0]
        for k in range(1, ranges):
            target = framer.header_len + k * (size - framer.header_len) // ranges
            window = os.pread(stream.fileno(), WINDOW_BYTES, target)
            found = framer.guess_record_start(window, head[24:40])
            if found is None:
                return None
            cuts.append(target + found)
        return cuts + [size]
    finally:
        stream.close()


def decode_range(
    path: str, start: int, stop: int, buckets: int, needles=(), http=True, http_lengths=False
) -> RangePart:
    """Bytes ``start`` to ``stop`` of ``path`` decoded into ``buckets`` buckets (``start``
    0: from the file's header)."""
    spill = Spill(buckets)
    try:
        return _decoded(path, start, stop, spill, needles, http, http_lengths)
    except DecodeError:  # a guessed cut in the middle of a record: nothing whole before a fault
        return RangePart([""], 0, [[] for _ in range(buckets)], exact=False)
    finally:
        spill.close()


def _decoded(path, start, stop, spill: Spill, needles, http, http_lengths) -> RangePart:
    with open(path, "rb") as stream:
        framer = detect(os.pread(stream.fileno(), 64, 0), Path(path))
        stream.seek(start)
        reader = ChunkReader(stream, Path(path), CHUNK_BYTES)
        reader.stop_at(stop)
        reading = Reading(Path(path), tuple(needles), reader, http)
        reading.sink, reading.http.lengths = spill, http_lengths
        first = reader.read(b"")
        reading.walk(framer, first, framer.header_len if start == 0 else 0, start)
    spill.flush()
    present = [lt for lt in framer.linktype_list if lt in spill.linktypes]
    return RangePart(
        strings=reading.strings.values,
        packets=reading.packets,
        buckets=[spill.parts(i) for i in range(spill.buckets)],
        exact=reading.leftover == 0 and not reading.warnings,
        warnings=reading.warnings,
        linktypes=present or sorted(spill.linktypes),
        file_format=framer.file_format,
    )


def bucket_share(part: RangePart, bucket: int) -> RangePart:
    """``part`` with only bucket ``bucket``'s chunks: what moves to the worker that puts the
    bucket together."""
    return RangePart(part.strings, part.packets, [part.buckets[bucket]], part.exact,
                     part.warnings, part.linktypes, part.file_format)  # fmt: skip


def whole_capture(path: str, parts: list[RangePart]) -> Capture:
    """The file's Capture without packets, from its ranges (in order)."""
    linktypes = list(dict.fromkeys(lt for part in parts for lt in part.linktypes))
    return Capture(
        path=Path(path),
        packets=packet_table([], Interner()),
        linktypes=list(dict.fromkeys(linktype_name(lt) for lt in linktypes)),
        warnings=[w for part in parts for w in part.warnings],
        file_format=parts[0].file_format,
    )


def bucket_from_ranges(path: str, shares: list[RangePart], needles=()) -> Capture:
    """One bucket as a Capture, from each range's share of it (``bucket_share``, in order)."""
    strings, chunks, before = Interner(), [], 0
    for share in shares:
        to_mine = strings.codes(share.strings)
        for chunk in share.buckets[0]:
            for name in STRING_COLUMNS:
                chunk[name] = to_mine[chunk[name]]
            chunk["frame"] = chunk["frame"] + before
            chunks.append(chunk)
        before += share.packets
    return bucket_capture(chunks, strings, whole_capture(path, shares), needles)
