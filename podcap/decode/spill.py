"""Reading a capture too large to hold: its packets spilled to disk in buckets of conversations.

The packet table costs about 180 bytes a packet and the flow step as much again, so a capture
of ten million packets does not fit the memory a laptop or a node gives. ``read_spilled``
decodes the file chunk by chunk as ``read_capture`` does, but sends each packet to one of
``buckets`` files on disk, chosen by a hash of its conversation (protocol and both endpoints,
in either direction). Every packet of a conversation, and so of every flow, HTTP request and
``tcpdump -i any`` copy, lands in the same bucket, in file order, with its frame number in the
whole file. ``SpilledCapture.capture(i)`` reads bucket ``i`` back as an ordinary
:class:`~podcap.decode.Capture`; each bucket can then be analyzed alone, and only one is in
memory at a time (``podcap.analysis.run`` does that for large captures).

The spill files are on disk (``TMPDIR``), not in memory, and have no name from the start:
nothing is left behind however the process ends.
"""

from __future__ import annotations

import pickle
import tempfile
import zlib
from pathlib import Path

import numpy as np

from podcap.decode.framing import detect
from podcap.decode.reader import Capture, Reading, start_reading
from podcap.decode.source import CHUNK_BYTES, ChunkReader, open_capture
from podcap.decode.strings import Interner
from podcap.decode.table import STRING_COLUMNS, packet_table
from podcap.errors import DecodeError

# Odd 64-bit constants (splitmix64's) that spread endpoint numbers over the hash bits.
MIX_LOW = np.uint64(0x9E3779B97F4A7C15)
MIX_HIGH = np.uint64(0xBF58476D1CE4E5B9)
NEEDLE_PREFIX = "contains:"


def conversation_buckets(
    chunk: dict[str, np.ndarray], buckets: int, address_keys: np.ndarray
) -> np.ndarray:
    """The bucket of each packet: a hash of its protocol and its two endpoints (address and
    port), the same whichever way the packet goes. ``address_keys`` gives each string code a
    number that does not depend on the process (``AddressKeys``): a helper process spilling the
    file's later part has codes of its own, and a conversation across the cut must land in one
    bucket."""
    src_end = address_keys[chunk["src"]] << np.uint64(17) | (chunk["sport"] + 1).astype(np.uint64)
    dst_end = address_keys[chunk["dst"]] << np.uint64(17) | (chunk["dport"] + 1).astype(np.uint64)
    low, high = np.minimum(src_end, dst_end), np.maximum(src_end, dst_end)
    mixed = low * MIX_LOW ^ high * MIX_HIGH ^ chunk["ip_proto"].astype(np.uint64)
    return ((mixed >> np.uint64(33)) % np.uint64(buckets)).astype(np.int64)


class AddressKeys:
    """A number for each string of an Interner: the CRC-32 of its text, so the same in every
    process; spelled once per string, as the Interner grows."""

    def __init__(self):
        self.keys = np.zeros(0, np.uint64)

    def of(self, strings: Interner) -> np.ndarray:
        known = len(self.keys)
        if known < len(strings.values):
            new = [zlib.crc32(text.encode()) for text in strings.values[known:]]
            self.keys = np.concatenate([self.keys, np.array(new, np.uint64)])
        return self.keys


class Spill:
    """Bucket files being written: ``add`` partitions one decoded chunk among them.

    The files never have a name: each is created and unlinked at once (``TemporaryFile``), so
    nothing is left on disk however the process ends, even by SIGKILL; the open files are
    the only handle on them, and ``close()`` frees their space."""

    def __init__(self, buckets: int):
        self.buckets = buckets
        self.later: tuple[Spill, np.ndarray, int] | None = None  # see adopt
        self.address_keys = AddressKeys()
        self.files: list = []
        try:
            for _ in range(buckets):
                self.files.append(tempfile.TemporaryFile(prefix="podcap-spill-"))
        except BaseException:
            self.close()
            raise
        self.linktypes: set[int] = set()

    def add(
        self,
        chunk: dict[str, np.ndarray],
        matches: dict[bytes, np.ndarray],
        link_meta: dict[str, np.ndarray],
        strings: Interner,
    ) -> None:
        columns = dict(chunk)
        columns.update(link_meta)
        columns.update({NEEDLE_PREFIX + needle.hex(): found for needle, found in matches.items()})
        linktype = columns["linktype"]
        if len(linktype):
            self.linktypes.update(np.unique(linktype).tolist())
        bucket = conversation_buckets(columns, self.buckets, self.address_keys.of(strings))
        order = np.argsort(bucket, kind="stable")  # stable: file order inside each bucket
        bounds = np.searchsorted(bucket[order], np.arange(self.buckets + 1))
        ordered = {name: values[order] for name, values in columns.items()}
        for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            if stop > start:
                part = {name: values[start:stop] for name, values in ordered.items()}
                pickle.dump(part, self.files[i], protocol=pickle.HIGHEST_PROTOCOL)

    def sibling(self) -> Spill:
        """Empty bucket files like these, for a helper process to spill the file's later part
        into (``podcap.decode.split``); ``adopt`` then takes them in."""
        return Spill(self.buckets)

    def adopt(self, later: Spill, to_mine: np.ndarray, frames_before: int, linktypes) -> None:
        """Take ``later``'s buckets as the rest of each bucket: their string codes (the
        helper's) through ``to_mine``, their frame numbers after ``frames_before``."""
        self.later = (later, to_mine, frames_before)
        self.linktypes.update(linktypes)

    def parts(self, i: int) -> list[dict[str, np.ndarray]]:
        """What ``add`` wrote to bucket ``i``, chunk by chunk (then the adopted ones')."""
        chunks = _chunks_in(self.files[i])
        if self.later is not None:
            later, to_mine, frames_before = self.later
            for chunk in _chunks_in(later.files[i]):
                for name in STRING_COLUMNS:
                    chunk[name] = to_mine[chunk[name]]
                chunk["frame"] = chunk["frame"] + frames_before
                chunks.append(chunk)
        return chunks

    def flush(self) -> None:
        for file in self.files:
            file.flush()

    def close(self) -> None:
        for file in self.files:
            file.close()
        if self.later is not None:
            self.later[0].close()


def _chunks_in(file) -> list[dict[str, np.ndarray]]:
    file.seek(0)
    chunks = []
    while True:
        try:
            chunks.append(pickle.load(file))
        except EOFError:
            return chunks


class SpilledCapture:
    """A capture read into bucket files. ``whole`` is the Capture of the whole file without
    its packets (link types, warnings, format); ``packets`` its packet count. Use as a
    context manager, or call ``close()``: that frees the files' space."""

    def __init__(self, whole: Capture, reading: Reading, spill: Spill):
        self.whole = whole
        self.packets = reading.packets
        self.helper_packets = reading.helper_packets  # spilled by a helper process (split)
        self.buckets = spill.buckets
        self._strings = reading.strings
        self._needles = reading.needles
        self._spill = spill

    def capture(self, i: int) -> Capture:
        """Bucket ``i`` as a Capture: its packets in file order, ``frame`` numbered in the file."""
        return bucket_capture(self._spill.parts(i), self._strings, self.whole, self._needles)

    def close(self) -> None:
        self._spill.close()

    def __enter__(self) -> SpilledCapture:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def bucket_capture(
    chunks: list[dict[str, np.ndarray]], strings: Interner, whole: Capture, needles
) -> Capture:
    """A bucket's chunks (as ``Spill.add`` wrote them, string codes of ``strings``) as a
    Capture of the file ``whole`` describes."""

    def column(name: str, dtype) -> np.ndarray:
        parts = [chunk.pop(name) for chunk in chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    if_index, pkt_type = column("if_index", np.int32), column("pkt_type", np.int16)
    contains = {n: column(NEEDLE_PREFIX + n.hex(), bool) for n in needles}
    return Capture(
        path=whole.path,
        packets=packet_table(chunks, strings),
        linktypes=whole.linktypes,
        warnings=whole.warnings,
        contains=contains,
        file_format=whole.file_format,
        if_index=if_index,
        pkt_type=pkt_type,
    )


def read_spilled(
    path: str | Path,
    buckets: int,
    needles: tuple[bytes, ...] = (),
    http: bool = True,
    chunk_bytes: int = CHUNK_BYTES,
    http_lengths: bool = False,
) -> SpilledCapture:
    """Decode ``path`` into ``buckets`` bucket files (see the module). Raises DecodeError as
    ``read_capture`` does; a cut tail gives the packets before it and a warning."""
    spill = Spill(max(1, buckets))
    try:
        reading = start_reading(
            path, needles, chunk_bytes, http, sink=spill, http_lengths=http_lengths
        )
        whole = reading.finish()  # closes the file, also on an error
        # Nothing left in the files' buffers: a process forked to read some buckets
        # (podcap.analysis.buckets) would otherwise write its copy of them a second time.
        spill.flush()
    except BaseException:
        spill.close()
        raise
    return SpilledCapture(whole, reading, spill)


def estimate_packets(path: str | Path, sample_bytes: int = 1024 * 1024) -> int:
    """About how many packets ``path`` holds: its size over the mean record size of its first
    ``sample_bytes``. A gzip file counts as five times its size (pcaps compress 3-6 fold).
    0 for a pipe (nothing may be read from it twice) and when the file cannot be read as a
    capture (reading it proper gives that error)."""
    path = Path(path)
    if not path.is_file():  # a pipe would lose what is read here; a missing file has no size
        return 0
    try:
        stream = open_capture(path)
    except DecodeError:
        return 0
    try:
        reader = ChunkReader(stream, path, sample_bytes)
        sample = reader.read(b"")
        framer = detect(bytes(sample[:64]), path)
        walk = framer.walk(sample, framer.header_len, 0)
        records, used = len(walk.frames), walk.stop - framer.header_len
        size = reader.file_size if reader.file_size is not None else 5 * path.stat().st_size
    except (DecodeError, OSError):
        return 0
    finally:
        stream.close()
    if records == 0 or used <= 0:
        return 0
    return int(size / (used / records))
