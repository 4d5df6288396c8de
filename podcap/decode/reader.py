"""``read_capture``: a pcap/pcapng file (optionally gzipped) into the packet table.

The file is read in chunks (``source``), each chunk split into records (``framing``), its
packets decoded with numpy (``layers``), HTTP first lines parsed (``http``) and payloads
searched for the needles (``needles``); then the chunk's bytes are dropped and only its
columns are kept. Memory therefore grows with the number of packets, not with the file size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from podcap.decode import split
from podcap.decode.bytesview import ByteView
from podcap.decode.columns import Columns
from podcap.decode.framing import Frames, PcapFramer, Walk, detect
from podcap.decode.http import HttpParser
from podcap.decode.layers import Decoder
from podcap.decode.links import undecoded_warnings
from podcap.decode.needles import payload_matches
from podcap.decode.preview import PREVIEW_DTYPE, payload_heads
from podcap.decode.schema import PACKET_COLUMNS, TCP
from podcap.decode.source import CHUNK_BYTES, ChunkReader, open_capture
from podcap.decode.strings import Interner
from podcap.decode.table import STRING_COLUMNS, concat_parts, packet_table
from podcap.errors import DecodeError
from podcap.pcapfile import linktype_name

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Capture:
    """A decoded capture: the packet table plus what the decoder noticed about the file."""

    path: Path
    packets: pd.DataFrame
    linktypes: list[str]
    warnings: list[str] = field(default_factory=list)
    contains: dict[bytes, np.ndarray] = field(default_factory=dict)
    file_format: str = "pcap"
    # Linux cooked captures only (-1 elsewhere): the interface index (SLL2) and packet type
    # (SLL/SLL2) of each packet, to tell apart the copies `tcpdump -i any` sees of one packet.
    if_index: np.ndarray | None = None
    pkt_type: np.ndarray | None = None
    # With ``preview=True``: the first bytes of each packet's payload (``podcap.decode.preview``).
    payload_head: np.ndarray | None = None


def read_capture(
    path: str | Path,
    needles: tuple[bytes, ...] = (),
    chunk_bytes: int = CHUNK_BYTES,
    http: bool = True,
    preview: bool = False,
    http_lengths: bool = False,
) -> Capture:
    """Decode ``path`` (pcap, pcapng, or gzip of either) into a :class:`Capture`.

    ``needles``: byte strings to look for in each packet's TCP/UDP header and payload (L4
    payload for other protocols), as Wireshark's ``tcp contains`` does; the answers are in
    ``Capture.contains``. ``http=False`` skips the HTTP first lines (the http_* columns keep
    their sentinels) for callers that never look at them. ``preview=True`` keeps the first
    bytes of each payload (``Capture.payload_head``); ``http_lengths=True`` each HTTP
    message's length (``http_length``, ``podcap.decode.http.message_length``). Raises DecodeError when the file
    cannot be read as a capture; a file cut short or corrupt after some packets gives those
    packets and a warning.
    """
    return start_reading(
        path, needles, chunk_bytes, http, preview=preview, http_lengths=http_lengths
    ).finish()


def start_reading(
    path: str | Path,
    needles: tuple[bytes, ...] = (),
    chunk_bytes: int = CHUNK_BYTES,
    http: bool = True,
    sink=None,
    preview: bool = False,
    http_lengths: bool = False,
) -> Reading:
    """``read_capture`` in two steps: this opens the file and, for a large pcap, starts the
    helper process that decodes its second part (``podcap.decode.split``); ``finish()``
    decodes the rest and returns the Capture. Work done between the two (imports) runs while
    the helper decodes. Always call ``finish()`` or ``cancel()``.

    ``sink``: where decoded chunks go instead of the Capture's table (``podcap.decode.spill``);
    the Capture then has no packets. A helper process then spills its part into bucket files
    of its own (``sink.sibling()``), which the sink adopts; previews are not spilled (the
    packets report, their one reader, holds every packet at once)."""
    path = Path(path)
    stream = open_capture(path)
    try:
        reading = Reading(
            path, tuple(dict.fromkeys(needles)), ChunkReader(stream, path, chunk_bytes), http
        )
        reading.sink = sink
        reading.preview = preview and sink is None
        reading.http.lengths = http_lengths
        reading.start()
    except BaseException:
        stream.close()
        raise
    return reading


class Reading:
    """The state of one read_capture call: chunks in, per-chunk column arrays out."""

    def __init__(
        self, path: Path, needles: tuple[bytes, ...], reader: ChunkReader, http: bool = True
    ):
        self.path = path
        self.parse_http = http
        self.needles = needles
        self.reader = reader
        self.strings = Interner()
        self.http = HttpParser(self.strings)
        self.chunks: list[dict[str, np.ndarray]] = []
        self.matches: dict[bytes, list[np.ndarray]] = {n: [] for n in needles}
        self.link_meta: dict[str, list[np.ndarray]] = {"if_index": [], "pkt_type": []}
        self.warnings: list[str] = []
        self.packets = 0
        self.leftover = 0  # bytes after the last whole record where reading stopped
        self.helper: split.Helper | None = None
        self.helper_packets = 0  # packets the helper process decoded (0: none, or dropped)
        self.helper_sink = None  # where the helper spills, when this reading spills
        # Where decoded chunks go instead of ``chunks`` (podcap.decode.spill): None keeps them.
        self.sink = None
        self.preview = False  # keep each payload's first bytes in ``heads``
        self.heads: list[np.ndarray] = []

    def start(self) -> None:
        self.first_chunk = self.reader.read(b"")
        self.framer = detect(bytes(self.first_chunk[:64]), self.path)
        self.helper = self._start_helper(self.framer, self.first_chunk)

    def finish(self) -> Capture:
        """Decode the file (up to the helper's part, then adopt that) and build the Capture."""
        try:
            buf, self.first_chunk = self.first_chunk, b""
            self.walk(self.framer, buf, self.framer.header_len, 0)
        finally:
            self.cancel()
        return self._capture(self.framer.file_format, self.framer.linktype_list)

    def cancel(self) -> None:
        """Stop the helper (if any) and close the file."""
        self._drop_helper()
        self.reader.stream.close()

    def _drop_helper(self) -> None:
        """Stop the helper and forget its part (its spill files too, unless adopted)."""
        if self.helper is not None:
            self.helper.cancel()
            self.helper = None
        if self.helper_sink is not None:
            self.helper_sink.close()
            self.helper_sink = None

    def walk(self, framer, buf: bytearray, start: int, base: int) -> None:
        """Decode chunk after chunk from ``buf[start:]`` (``base``: its offset in the file)
        to the end of the file, or to the cut where ``self.helper`` took over."""
        while True:
            walk = framer.walk(buf, start, base)
            self._decode_chunk(buf, walk.frames, base)
            self.warnings.extend(walk.warnings)
            if walk.problem:
                self._stop_at_problem(walk)
                return
            carry = bytes(buf[walk.stop :])
            if self.reader.eof and self.helper is not None:
                # At the cut: adopt the helper's part if the walk landed exactly on the cut.
                if not carry and self._adopt(self.helper.result()):
                    return
                self._drop_helper()
                self.reader.read_to_end()
            if self.reader.eof:
                self._note_truncated_tail(base + walk.stop, carry)
                return
            base += walk.stop
            buf = self.reader.read(carry, want=walk.need)
            start = 0
            if len(buf) == len(carry) and self.reader.eof:
                self._note_truncated_tail(base, carry)
                return

    # --- a helper process for the second part of a large file (podcap.decode.split) ---

    def _start_helper(self, framer, buf: bytearray) -> split.Helper | None:
        size = self.reader.file_size
        if not (isinstance(framer, PcapFramer) and split.wanted(size) and len(buf) >= 40):
            return None
        target = split.cut_target(framer.header_len, size)
        window = os.pread(self.reader.stream.fileno(), split.WINDOW_BYTES, target)
        found = framer.guess_record_start(window, bytes(buf[24:40]))
        if found is None:
            return None
        cut = target + found
        # Spilling, the helper writes bucket files of its own, made here: this process reads
        # them once the helper is gone.
        helper_sink = self.sink.sibling() if self.sink is not None else None
        try:
            helper = split.Helper(lambda: _decode_part(self, framer, cut, helper_sink))
        except OSError:  # no process or scratch file to be had: this process reads it all
            if helper_sink is not None:
                helper_sink.close()
            return None
        self.helper_sink = helper_sink
        if len(buf) > cut:  # the first chunk reaches past the cut: the helper reads that part
            del buf[cut:]
            self.reader.stream.seek(cut)
        self.reader.stop_at(cut)
        return helper

    def part(self) -> dict | None:
        """What a helper hands back: its columns (string codes with their strings), needle
        matches and link metadata, or when spilling only its strings, packet count and link
        types (the packets are in its spill files); None when anything was unusual (warnings,
        a corrupt record), so that the parent reads that part itself and words those cases as
        always."""
        if self.warnings or not self.packets:
            return None
        if self.sink is not None:  # the packets are in the sink's files
            self.sink.flush()
            return {
                "strings": self.strings.values,
                "packets": self.packets,
                "linktypes": sorted(self.sink.linktypes),
            }
        return {
            "columns": {
                name: np.concatenate([c[name] for c in self.chunks]) for name in self.chunks[0]
            },
            "strings": self.strings.values,
            "matches": {n: np.concatenate(parts) for n, parts in self.matches.items()},
            "link_meta": {k: np.concatenate(parts) for k, parts in self.link_meta.items()},
            "heads": concat_parts(self.heads, PREVIEW_DTYPE) if self.preview else None,
            "packets": self.packets,
        }

    def _adopt(self, part: dict | None) -> bool:
        if part is None:
            return False
        to_mine = self.strings.codes(part["strings"])  # the helper's string codes -> ours
        if self.sink is not None:
            self.sink.adopt(self.helper_sink, to_mine, self.packets, part["linktypes"])
            self.helper_sink = None  # the sink's now
        else:
            self._adopt_columns(part, to_mine)
        self.packets += part["packets"]
        self.helper_packets = part["packets"]
        return True

    def _adopt_columns(self, part: dict, to_mine: np.ndarray) -> None:
        columns = part["columns"]
        for name in STRING_COLUMNS:
            columns[name] = to_mine[columns[name]]
        columns["frame"] = columns["frame"] + self.packets
        self.chunks.append(columns)
        for needle, found in part["matches"].items():
            self.matches[needle].append(found)
        for name, values in part["link_meta"].items():
            self.link_meta[name].append(values)
        if self.preview:
            self.heads.append(part["heads"])

    def _stop_at_problem(self, walk: Walk) -> None:
        if self.packets == 0:
            raise DecodeError(f"{self.path}: {walk.problem}, no packet before it")
        self.warnings.append(f"{walk.problem}: kept {self.packets} whole packets")

    def _note_truncated_tail(self, at: int, carry: bytes) -> None:
        self.leftover = len(carry)
        if self.reader.truncated_gzip:  # ``at`` counts the decompressed bytes, not the file's
            self.warnings.append(
                f"truncated gzip stream after {at} decompressed bytes: kept {self.packets} "
                "whole packets"
            )
        elif carry:
            self.warnings.append(
                f"truncated record at byte {at}: kept {self.packets} whole packets"
            )

    def _needle_matches(self, buf: bytes, cols: Columns, packet_end: np.ndarray) -> dict:
        """Per needle, which packets hold it in their TCP/UDP header or payload (Wireshark's
        ``tcp contains`` covers both), or in their payload for other protocols."""
        if not self.needles:
            return {}
        has_l4 = cols.l4_start >= 0
        start = np.where(has_l4, cols.l4_start, cols.payload_start)
        # A header cut by the snap length has no payload range: search what was captured.
        end = np.where(has_l4 & (cols.payload_end < 0), packet_end, cols.payload_end)
        return {needle: payload_matches(buf, needle, start, end) for needle in self.needles}

    def _decode_chunk(self, buf: bytearray, frames: Frames, base: int) -> None:
        n = len(frames)
        if n == 0:
            return
        view = ByteView(buf)
        cols = Columns(n, self.strings)
        end = frames.data_off + frames.caplen
        Decoder(view, cols, end, frames.data_off + frames.wirelen).link(
            frames.data_off, frames.linktype
        )
        chunk = self._chunk_columns(frames, cols, base)
        if self.parse_http:
            self.http.fill(view, cols.ip_proto == TCP, cols.payload_start, cols.payload_end, chunk)
        meta = {name: getattr(cols, name) for name in self.link_meta}
        matches = self._needle_matches(buf, cols, end)
        if self.preview:
            self.heads.append(payload_heads(view, cols.payload_start, cols.payload_end))
        if self.sink is not None:
            self.sink.add(chunk, matches, meta, self.strings)
        else:
            self.chunks.append(chunk)
            for name, values in meta.items():
                self.link_meta[name].append(values)
            for needle, found in matches.items():
                self.matches[needle].append(found)
        self.packets += n

    def _chunk_columns(self, frames: Frames, cols: Columns, base: int) -> dict[str, np.ndarray]:
        n = len(frames)
        chunk = {
            "frame": np.arange(self.packets + 1, self.packets + n + 1, dtype=np.int64),
            "ts": frames.ts,
            "iface": frames.iface,
            "linktype": frames.linktype,
            "caplen": frames.caplen,
            "length": frames.wirelen,
            "payload_off": np.where(
                cols.payload_start >= 0, cols.payload_start - frames.data_off, -1
            ),
            "file_off": frames.data_off + base,
            "http_method": np.zeros(n, np.int32),
            "http_uri": np.zeros(n, np.int32),
            "http_host": np.zeros(n, np.int32),
            "http_status": np.full(n, -1, np.int16),
            "http_length": np.full(n, -1, np.int32),
        }
        for name in PACKET_COLUMNS:
            if name not in chunk:
                chunk[name] = getattr(cols, name)
        return chunk

    def _capture(self, file_format: str, linktype_list: list[int]) -> Capture:
        """The Capture of everything read; a link type the decoder does not know is counted
        and said (never refused: a well-formed capture is always analyzed)."""
        if self.sink is not None:
            present = sorted(self.sink.linktypes)
        else:
            present = sorted({int(v) for c in self.chunks for v in np.unique(c["linktype"])})
        # In interface order; a file without packets still names its interfaces' link types.
        shown = [lt for lt in linktype_list if lt in present] or linktype_list
        packets = packet_table(self.chunks, self.strings)
        self.warnings += undecoded_warnings(packets["linktype"].to_numpy(), present)
        capture = Capture(
            path=self.path,
            packets=packets,
            linktypes=list(dict.fromkeys(linktype_name(lt) for lt in shown)),
            warnings=self.warnings,
            contains={n: concat_parts(parts, bool) for n, parts in self.matches.items()},
            file_format=file_format,
            if_index=concat_parts(self.link_meta["if_index"], np.int32),
            pkt_type=concat_parts(self.link_meta["pkt_type"], np.int16),
            payload_head=concat_parts(self.heads, PREVIEW_DTYPE) if self.preview else None,
        )
        # Every part is joined: let go of them (the helper's live in a mapped file whose memory
        # is only returned when the last of them goes).
        self.chunks.clear()
        self.matches = {n: [] for n in self.matches}
        self.link_meta = {name: [] for name in self.link_meta}
        self.heads = []
        return capture


def _decode_part(parent: Reading, framer: PcapFramer, cut: int, sink=None) -> dict | None:
    """In the helper process: decode ``parent``'s file from byte ``cut`` (a record start, if
    the guess was right) to its end (into ``sink`` when the parent spills)."""
    with open(parent.path, "rb") as stream:
        stream.seek(cut)
        reader = ChunkReader(stream, parent.path, parent.reader.chunk_bytes)
        reading = Reading(parent.path, parent.needles, reader, parent.parse_http)
        reading.sink = sink
        reading.preview = parent.preview
        reading.http.lengths = parent.http.lengths
        reading.walk(framer, reader.read(b""), 0, cut)
    return reading.part()
