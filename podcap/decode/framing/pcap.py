"""Framing classic pcap: the file header, record by record, and the frame columns both formats give."""

import struct
from dataclasses import dataclass, field

import numpy as np

from podcap.decode import linktypes
from podcap.decode.bytesview import ByteView
from podcap.decode.framing.lockstep import first_plausible_record, lockstep_offsets
from podcap.errors import DecodeError

# No real capture has a record this large (libpcap's maximum snap length is 256 KiB); a larger
# length means a corrupt or hostile header, which must not make us allocate gigabytes.
MAX_RECORD = 16 * 1024 * 1024


PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}


BLOCK_IDB, BLOCK_OPB, BLOCK_SPB, BLOCK_EPB = 1, 2, 3, 6


OPT_TSRESOL, OPT_TSOFFSET = 9, 14


MAX_UNITS_PER_SECOND = 10**18


@dataclass
class Frames:
    """The records of one chunk: where each packet's bytes start, and its metadata."""

    data_off: np.ndarray  # int64 offset of the packet bytes in the chunk
    caplen: np.ndarray  # int64
    wirelen: np.ndarray  # int64
    ts: np.ndarray  # float64 seconds
    iface: np.ndarray  # int32
    linktype: np.ndarray  # int32

    @classmethod
    def empty(cls) -> "Frames":
        i64 = np.zeros(0, dtype=np.int64)
        i32 = np.zeros(0, dtype=np.int32)
        return cls(i64, i64, i64, np.zeros(0), i32, i32)

    def __len__(self) -> int:
        return len(self.data_off)

    def take(self, keep: np.ndarray) -> "Frames":
        return Frames(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


@dataclass
class Walk:
    """Result of walking one chunk."""

    frames: Frames
    stop: int  # first byte not consumed; the rest is carried over to the next chunk
    need: int = 0  # size of the record that starts at ``stop`` if known (it may exceed a chunk)
    problem: str | None = None  # corrupt record: reading ends here
    warnings: list[str] = field(default_factory=list)


class PcapFramer:
    """Classic libpcap files: a 24-byte header, then 16-byte record headers."""

    file_format = "pcap"

    def __init__(self, head: bytes, path: object):
        if len(head) < 24:
            raise DecodeError(f"{path}: pcap file header cut short ({len(head)} of 24 bytes)")
        self.endian, self.tick = PCAP_MAGICS[head[:4]]
        snaplen, raw_linktype = struct.unpack_from(self.endian + "II", head, 16)
        self.linktype = raw_linktype & linktypes.LINKTYPE_MASK
        if self.linktype not in linktypes.SUPPORTED:
            raise DecodeError(
                f"{path}: link type {self.linktype} ({linktypes.name(self.linktype)}) is not supported"
            )
        self.linktype_list = [self.linktype]
        self.header_len = 24

    def walk(self, buf: bytes, start: int, base: int) -> Walk:
        view = ByteView(buf)
        offsets, stop = self._record_offsets(buf, start)
        big = self.endian == ">"
        caplen = view.u32(offsets + 8, big)
        problem = None
        bad = np.flatnonzero(caplen > MAX_RECORD)
        if len(bad):
            first = int(bad[0])
            problem = (
                f"corrupt record at byte {base + int(offsets[first])} "
                f"(claims {int(caplen[first])} bytes)"
            )
            offsets, caplen, stop = offsets[:first], caplen[:first], int(offsets[first])
        need = 0
        if len(offsets) and int(offsets[-1]) + 16 + int(caplen[-1]) > len(buf):
            # The last record runs past the chunk: carry it over whole to the next read.
            need = 16 + int(caplen[-1])
            stop = int(offsets[-1])
            offsets, caplen = offsets[:-1], caplen[:-1]
        frames = self._frames(view, offsets, caplen, big)
        return Walk(frames, stop, need, problem)

    @property
    def fraction_limit(self) -> int:
        """Sub-second units per second: a plausible record's fraction field is below it."""
        return 10**9 if self.tick < 1e-6 else 10**6

    def guess_record_start(self, window: bytes, first_record: bytes) -> int | None:
        """Where a record seems to start in ``window``, a piece from the middle of the file;
        ``first_record`` is the file's first record header, whose clock a guess must be near."""
        clock = struct.unpack_from(self.endian + "I", first_record)[0]
        return first_plausible_record(window, self.endian, self.fraction_limit, clock)

    def _record_offsets(self, buf: bytes, pos: int) -> tuple[np.ndarray, int]:
        found = lockstep_offsets(buf, pos, self.endian, self.fraction_limit)
        if found is not None:
            return found
        caplen_at = struct.Struct(self.endian + "I").unpack_from
        last = len(buf) - 16
        offsets: list[int] = []
        append = offsets.append
        while pos <= last:
            append(pos)
            pos += 16 + caplen_at(buf, pos + 8)[0]
        # pos may point past the chunk: walk() then carries the last, incomplete record over.
        return np.array(offsets, dtype=np.int64), pos

    def _frames(self, view: ByteView, offsets: np.ndarray, caplen: np.ndarray, big: bool) -> Frames:
        # One gather of the whole 16-byte record headers: seconds, fraction, caplen, wirelen.
        header = view.rows(offsets, 16).view(">u4" if big else "<u4")
        seconds = header[:, 0].astype(np.float64)
        fraction = header[:, 1].astype(np.float64)
        return Frames(
            data_off=offsets + 16,
            caplen=caplen,
            wirelen=header[:, 3].astype(np.int64),
            ts=seconds + fraction * self.tick,
            iface=np.zeros(len(offsets), dtype=np.int32),
            linktype=np.full(len(offsets), self.linktype, dtype=np.int32),
        )


def _concat_in_file_order(parts: list[Frames]) -> Frames:
    if not parts:
        return Frames.empty()
    if len(parts) == 1:
        return parts[0]
    joined = Frames(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Frames.__dataclass_fields__)
    )
    return joined.take(np.argsort(joined.data_off, kind="stable"))
