"""Framing pcapng: sections, interfaces and their time units, enhanced and simple packet blocks."""

import struct
from dataclasses import dataclass, field

import numpy as np

from podcap.decode.bytesview import ByteView
from podcap.decode.framing.frames import Frames, Walk, concat_in_file_order
from podcap.pcapfile import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SPB,
    IF_TSOFFSET,
    IF_TSRESOL,
    MAX_RECORD,
    OPT_END,
    PCAPNG_SHB,
    section_byte_order,
)

# Beyond attoseconds a time resolution is a corrupt option: the clock arithmetic stays in 64 bits.
MAX_UNITS_PER_SECOND = 10**18


@dataclass
class Interface:
    """One interface description block: its link type, snap length and clock."""

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
                endian = section_byte_order(buf, pos)
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
        frames = concat_in_file_order([p for p in parts if len(p)])
        return Walk(frames, min(pos, len(buf)), need, problem, warnings)

    def _add_interface(self, buf: bytes, pos: int, blen: int) -> None:
        if blen < 20:
            self.interfaces.append(Interface(-1, 0))
            return
        linktype, _, snaplen = struct.unpack_from(self.endian + "HHI", buf, pos + 8)
        iface = Interface(linktype, snaplen)
        opt, end = pos + 16, pos + blen - 4
        while opt + 4 <= end:
            code, length = struct.unpack_from(self.endian + "HH", buf, opt)
            if code == OPT_END:
                break
            value = buf[opt + 4 : opt + 4 + length]
            if code == IF_TSRESOL and length >= 1:
                exponent = value[0] & 0x7F
                # High bit set: a power of two; otherwise a power of ten (pcapng spec).
                units = 2**exponent if value[0] & 0x80 else 10**exponent
                iface.units_per_second = min(units, MAX_UNITS_PER_SECOND)
            elif code == IF_TSOFFSET and length == 8:
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
        return concat_in_file_order(parts)

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
