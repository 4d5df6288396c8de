"""Splitting a chunk of a pcap or pcapng file into packet records.

Record boundaries depend on each previous record's length, so the walk over record headers
is the one sequential Python loop of the decoder; it only appends offsets (about 0.3 s per
million records). Everything else about a record (timestamps, lengths, interface) is then
gathered for all records at once with numpy.
"""

import struct
from dataclasses import dataclass, field

import numpy as np

from podcap.decode import linktypes
from podcap.decode.bytesview import ByteView
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
PCAPNG_SHB = 0x0A0D0D0A
BYTE_ORDER_MAGIC = 0x1A2B3C4D
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


def detect(head: bytes, path: object) -> "PcapFramer | PcapngFramer":
    """Pick the framer for a file from its first bytes; DecodeError if it is no capture."""
    if head[:4] in PCAP_MAGICS:
        return PcapFramer(head, path)
    if len(head) >= 4 and struct.unpack_from("<I", head)[0] == PCAPNG_SHB:
        return PcapngFramer(path)
    raise DecodeError(f"{path}: not a pcap or pcapng file ({_describe(head)})")


def _describe(head: bytes) -> str:
    sample = head[:64]
    if sample and all(32 <= c < 127 or c in (9, 10, 13) for c in sample):
        first_line = sample.decode("ascii").splitlines()[0] if sample.strip() else ""
        return f"it starts with text {first_line[:30]!r}"
    if len(head) < 4:
        return f"only {len(head)} bytes long"
    return f"unknown magic 0x{head[:4].hex()}"


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


# The lock-step walk: the chunk is cut into WALKERS pieces, each walked by its own walker, all
# in step with numpy (one gather per step for all walkers instead of one Python iteration per
# record). A walker after the first starts at a record header guessed in the first
# GUESS_WINDOW bytes of its piece; the guess is proven when the walker before lands on it.
WALKERS = 512  # at most; a piece is at least PIECE_BYTES
PIECE_BYTES = 64 * 1024
GUESS_WINDOW = 1536
GUESS_CHAIN = 3  # a guess must be followed by this many more plausible headers
PLAUSIBLE_LENGTH = 256 * 1024  # libpcap's largest snap length
PLAUSIBLE_CLOCK_SPAN = 1 << 24  # seconds (~194 days) from the chunk's first record


def lockstep_offsets(
    buf: bytes, pos: int, endian: str, fraction_limit: int
) -> tuple[np.ndarray, int] | None:
    """Record offsets of a pcap chunk from ``pos``, as the sequential walk finds them, and the
    position after the last one; None when the chunk is small or a guess was not proven
    (corrupt records, odd lengths): the caller then walks record by record."""
    size = len(buf)
    walkers = min(WALKERS, (size - pos) // PIECE_BYTES)
    if walkers < 2:
        return None
    piece = (size - pos) // walkers
    # A 32-bit integer starting at every byte (unaligned, overlapping): one gather per field.
    words = np.ndarray(shape=(size - 3,), dtype=endian + "u4", buffer=buf, strides=(1,))

    def u32(at: np.ndarray) -> np.ndarray:
        return words[np.minimum(at, size - 4)].astype(np.int64)

    guessed = _guess_headers(u32, pos, piece, walkers, size, fraction_limit)
    starts = np.concatenate([[pos], guessed])
    ends = np.append(starts[1:], size - 15)  # the last walker runs to the chunk end
    at, steps, alive = starts.copy(), [], np.ones(len(starts), bool)
    while alive.any():
        steps.append(np.where(alive, at, -1))
        caplen = u32(at + 8)
        at = np.where(alive, at + 16 + caplen, at)
        alive &= at < ends
    if not (at[:-1] == ends[:-1]).all():
        return None  # a guessed start was inside a record: walk sequentially
    walked = np.stack(steps).T.ravel()  # walker after walker, each in record order
    return walked[walked >= 0], int(at[-1])


def _guess_headers(
    u32, pos: int, piece: int, walkers: int, size: int, fraction_limit: int
) -> np.ndarray:
    """For each piece after the first, the first offset in its window where GUESS_CHAIN + 1
    chained record headers look plausible (pieces without one are left to their neighbour)."""
    first_clock = u32(np.array([pos]))[0]
    window = pos + piece * np.arange(1, walkers)[:, None] + np.arange(GUESS_WINDOW)
    at = _plausible_chains(u32, window.ravel(), size, fraction_limit, first_clock)
    if not len(at):
        return at
    piece_of = (at - pos) // piece
    first = np.flatnonzero(np.diff(piece_of, prepend=-1) > 0)
    return at[first]


def _plausible_chains(
    u32, at: np.ndarray, size: int, fraction_limit: int, clock: int
) -> np.ndarray:
    """The offsets in ``at`` where GUESS_CHAIN + 1 chained record headers look plausible:
    a clock near ``clock``, a fraction below one second, caplen <= wirelen <= 256 KiB."""
    at = at[np.abs(u32(at) - clock) < PLAUSIBLE_CLOCK_SPAN]
    chain = at.copy()
    for _ in range(GUESS_CHAIN + 1):
        caplen, wirelen = u32(chain + 8), u32(chain + 12)
        ok = (u32(chain + 4) < fraction_limit) & (caplen <= wirelen) & (wirelen > 0)
        ok &= (wirelen <= PLAUSIBLE_LENGTH) & (chain + 16 <= size)
        at, chain = at[ok], (chain + 16 + caplen)[ok]
    return at


def first_plausible_record(
    window: bytes, endian: str, fraction_limit: int, clock: int
) -> int | None:
    """The first offset in ``window`` (bytes from the middle of a pcap file) where a record
    header seems to start, judged as the lock-step walk judges its guesses; None if none.

    A guess, not a proof: the caller proves it by walking up to it from an earlier record."""
    size = len(window)
    if size < 16 * (GUESS_CHAIN + 1):
        return None
    words = np.ndarray(shape=(size - 3,), dtype=endian + "u4", buffer=window, strides=(1,))

    def u32(at: np.ndarray) -> np.ndarray:
        return words[np.minimum(at, size - 4)].astype(np.int64)

    found = _plausible_chains(u32, np.arange(size - 15), size, fraction_limit, clock)
    return int(found[0]) if len(found) else None


@dataclass
class Interface:
    linktype: int
    snaplen: int
    units_per_second: int = 1_000_000
    offset_seconds: int = 0


@dataclass
class _Segment:
    """Packet blocks of one section (same byte order, same interface numbering)."""

    endian: str
    iface_base: int
    blocks: dict[int, list[int]] = field(
        default_factory=lambda: {BLOCK_EPB: [], BLOCK_SPB: [], BLOCK_OPB: []}
    )


class PcapngFramer:
    """pcapng: sections of typed blocks; interfaces (IDB) each with link type and clock."""

    file_format = "pcapng"
    header_len = 0

    def __init__(self, path: object):
        self.path = path
        self.interfaces: list[Interface] = []
        self.endian = "<"
        self.iface_base = 0  # interfaces of earlier sections: ids restart in each section

    @property
    def linktype_list(self) -> list[int]:
        return [i.linktype for i in self.interfaces]

    def walk(self, buf: bytes, start: int, base: int) -> Walk:
        segments = [_Segment(self.endian, self.iface_base)]
        pos, need, problem = start, 0, None
        last = len(buf) - 12
        head = struct.Struct(self.endian + "II").unpack_from
        while pos <= last:
            btype, blen = head(buf, pos)
            if btype == PCAPNG_SHB:
                endian = self._section_endian(buf, pos)
                if endian is None:
                    problem = f"corrupt section header at byte {base + pos}"
                    break
                head = struct.Struct(endian + "II").unpack_from
                blen = head(buf, pos)[1]
            if blen < 12 or blen % 4 or blen > MAX_RECORD:
                problem = f"corrupt block at byte {base + pos} (length {blen})"
                break
            if pos + blen > len(buf):
                need = blen
                break
            if btype == BLOCK_EPB:
                segments[-1].blocks[BLOCK_EPB].append(pos)
            elif btype == PCAPNG_SHB:
                self.endian = endian
                self.iface_base = len(self.interfaces)
                segments.append(_Segment(endian, self.iface_base))
            elif btype in (BLOCK_SPB, BLOCK_OPB):
                segments[-1].blocks[btype].append(pos)
            elif btype == BLOCK_IDB:
                self._add_interface(buf, pos, blen)
            # Any other block type (statistics, name resolution, custom...) is skipped.
            pos += blen
        view = ByteView(buf)
        warnings: list[str] = []
        parts = [self._segment_frames(view, seg, base, warnings) for seg in segments]
        frames = _concat_in_file_order([p for p in parts if len(p)])
        return Walk(frames, min(pos, len(buf)), need, problem, warnings)

    def _section_endian(self, buf: bytes, pos: int) -> str | None:
        if pos + 12 > len(buf):
            return None
        magic = struct.unpack_from("<I", buf, pos + 8)[0]
        if magic == BYTE_ORDER_MAGIC:
            return "<"
        if magic == struct.unpack("<I", struct.pack(">I", BYTE_ORDER_MAGIC))[0]:
            return ">"
        return None

    def _add_interface(self, buf: bytes, pos: int, blen: int) -> None:
        if blen < 20:
            self.interfaces.append(Interface(-1, 0))
            return
        linktype, _, snaplen = struct.unpack_from(self.endian + "HHI", buf, pos + 8)
        iface = Interface(linktype, snaplen)
        opt, end = pos + 16, pos + blen - 4
        while opt + 4 <= end:
            code, length = struct.unpack_from(self.endian + "HH", buf, opt)
            if code == 0:
                break
            value = buf[opt + 4 : opt + 4 + length]
            if code == OPT_TSRESOL and length >= 1:
                exponent = value[0] & 0x7F
                # High bit set: a power of two; otherwise a power of ten (pcapng spec).
                units = 2**exponent if value[0] & 0x80 else 10**exponent
                # Beyond attoseconds it is a corrupt option; keep the clock arithmetic in 64 bits.
                iface.units_per_second = min(units, MAX_UNITS_PER_SECOND)
            elif code == OPT_TSOFFSET and length == 8:
                iface.offset_seconds = struct.unpack(self.endian + "q", value)[0]
            opt += 4 + length + (-length % 4)
        self.interfaces.append(iface)

    def _segment_frames(
        self, view: ByteView, seg: _Segment, base: int, warnings: list[str]
    ) -> Frames:
        big = seg.endian == ">"
        parts = []
        for btype, positions in seg.blocks.items():
            if not positions:
                continue
            pos = np.array(positions, dtype=np.int64)
            blen = view.u32(pos + 4, big)
            if btype == BLOCK_SPB:
                whole = blen >= 16  # room for the original-length field
                if not whole.all():
                    warnings.append(
                        f"skipped {int((~whole).sum())} simple packet block(s) too short"
                    )
                parts.append(self._simple_frames(view, pos[whole], blen[whole], seg, big))
            else:
                parts.append(
                    self._enhanced_frames(view, pos, blen, seg, big, btype, base, warnings)
                )
        return _concat_in_file_order(parts)

    def _enhanced_frames(self, view, pos, blen, seg, big, btype, base, warnings) -> Frames:
        if btype == BLOCK_OPB:  # obsolete Packet Block: 16-bit interface id, 16-bit drops
            local_iface = view.u16(pos + 8, big)
        else:
            local_iface = view.u32(pos + 8, big)
        ticks = (view.u32(pos + 12, big).astype(np.uint64) << np.uint64(32)) | view.u32(
            pos + 16, big
        ).astype(np.uint64)
        caplen = view.u32(pos + 20, big)
        iface = local_iface + seg.iface_base
        known = (iface < len(self.interfaces)) & (caplen <= blen - 32)
        if not known.all():
            first = int(np.flatnonzero(~known)[0])
            warnings.append(
                f"skipped {int((~known).sum())} packet block(s) with an unknown interface or a "
                f"length past the block end, first at byte {base + int(pos[first])}"
            )
            pos, ticks, caplen, iface = pos[known], ticks[known], caplen[known], iface[known]
        units, offsets = self._clock_tables()
        per_packet_units = units[iface]
        seconds = (ticks // per_packet_units).astype(np.float64)
        fraction = (ticks % per_packet_units).astype(np.float64) / per_packet_units
        return Frames(
            data_off=pos + 28,
            caplen=caplen,
            wirelen=view.u32(pos + 24, big),
            ts=seconds + fraction + offsets[iface],
            iface=iface.astype(np.int32),
            linktype=self._linktypes()[iface],
        )

    def _simple_frames(self, view, pos, blen, seg, big) -> Frames:
        # An SPB belongs to the section's first interface and carries no timestamp.
        iface_id = seg.iface_base
        if iface_id >= len(self.interfaces):
            return Frames.empty()
        wirelen = view.u32(pos + 8, big)
        caplen = np.minimum(wirelen, blen - 16)
        snaplen = self.interfaces[iface_id].snaplen
        if snaplen:
            caplen = np.minimum(caplen, snaplen)
        n = len(pos)
        return Frames(
            data_off=pos + 12,
            caplen=caplen,
            wirelen=wirelen,
            ts=np.zeros(n),
            iface=np.full(n, iface_id, dtype=np.int32),
            linktype=np.full(n, self.interfaces[iface_id].linktype, dtype=np.int32),
        )

    def _clock_tables(self) -> tuple[np.ndarray, np.ndarray]:
        units = np.array([i.units_per_second or 1 for i in self.interfaces], dtype=np.uint64)
        offsets = np.array([i.offset_seconds for i in self.interfaces], dtype=np.float64)
        return units, offsets

    def _linktypes(self) -> np.ndarray:
        return np.array(self.linktype_list, dtype=np.int32)


def _concat_in_file_order(parts: list[Frames]) -> Frames:
    if not parts:
        return Frames.empty()
    if len(parts) == 1:
        return parts[0]
    joined = Frames(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Frames.__dataclass_fields__)
    )
    return joined.take(np.argsort(joined.data_off, kind="stable"))
