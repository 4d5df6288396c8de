"""Framing classic pcap: the file header, then record by record (layout in ``podcap.pcapfile``)."""

import struct

import numpy as np

from podcap.decode.bytesview import ByteView
from podcap.decode.framing.frames import Frames, Walk
from podcap.decode.framing.lockstep import first_plausible_record, lockstep_offsets
from podcap.errors import DecodeError
from podcap.pcapfile import (
    LINKTYPE_MASK,
    MAX_RECORD,
    PCAP_CAPLEN_AT,
    PCAP_HEADER_LEN,
    PCAP_RECORD_HEADER_LEN,
    parse_pcap_header,
)


class PcapFramer:
    """Classic libpcap files: a 24-byte header, then 16-byte record headers."""

    file_format = "pcap"

    def __init__(self, head: bytes, path: object):
        header = parse_pcap_header(head)
        if header is None:
            got = len(head)
            raise DecodeError(
                f"{path}: pcap file header cut short ({got} of {PCAP_HEADER_LEN} bytes)"
            )
        self.endian = header.byte_order
        self.units_per_second = header.fractions_per_second
        self.tick = 1 / header.fractions_per_second  # 1e-6 or 1e-9, exactly those floats
        # A link type the decoder does not know is no error: its packets are counted, timed
        # and said to be undecoded (podcap.decode.reader), as an unknown pcapng interface's are.
        self.linktype = header.linktype & LINKTYPE_MASK
        self.linktype_list = [self.linktype]
        self.header_len = PCAP_HEADER_LEN

    def walk(self, buf: bytes, start: int, base: int) -> Walk:
        view = ByteView(buf)
        offsets, stop = self._record_offsets(buf, start)
        big = self.endian == ">"
        caplen = view.u32(offsets + PCAP_CAPLEN_AT, big)
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
        if len(offsets) and int(offsets[-1]) + PCAP_RECORD_HEADER_LEN + int(caplen[-1]) > len(buf):
            # The last record runs past the chunk: carry it over whole to the next read.
            need = PCAP_RECORD_HEADER_LEN + int(caplen[-1])
            stop = int(offsets[-1])
            offsets, caplen = offsets[:-1], caplen[:-1]
        frames = self._frames(view, offsets, caplen, big)
        return Walk(frames, stop, need, problem)

    @property
    def fraction_limit(self) -> int:
        """Sub-second units per second: a plausible record's fraction field is below it."""
        return self.units_per_second

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
        last = len(buf) - PCAP_RECORD_HEADER_LEN
        offsets: list[int] = []
        append = offsets.append
        while pos <= last:
            append(pos)
            pos += PCAP_RECORD_HEADER_LEN + caplen_at(buf, pos + PCAP_CAPLEN_AT)[0]
        # pos may point past the chunk: walk() then carries the last, incomplete record over.
        return np.array(offsets, dtype=np.int64), pos

    def _frames(self, view: ByteView, offsets: np.ndarray, caplen: np.ndarray, big: bool) -> Frames:
        # One gather of the whole record headers: seconds, fraction, caplen, wirelen.
        header = view.rows(offsets, PCAP_RECORD_HEADER_LEN).view(">u4" if big else "<u4")
        seconds = header[:, 0].astype(np.float64)
        fraction = header[:, 1].astype(np.float64)
        return Frames(
            data_off=offsets + PCAP_RECORD_HEADER_LEN,
            caplen=caplen,
            wirelen=header[:, 3].astype(np.int64),
            ts=seconds + fraction * self.tick,
            iface=np.zeros(len(offsets), dtype=np.int32),
            linktype=np.full(len(offsets), self.linktype, dtype=np.int32),
        )
