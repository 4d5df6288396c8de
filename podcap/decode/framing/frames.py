"""The frame columns pcap and pcapng both give, gathered for a whole chunk at once.

Per record: where its packet's bytes start, its captured and wire lengths, its time,
interface and link type.
"""

from dataclasses import dataclass, field

import numpy as np


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


def concat_in_file_order(parts: list[Frames]) -> Frames:
    """The frames of several parts of one chunk (pcapng's block types, sections) as one, in
    the order their records stand in the file."""
    if not parts:
        return Frames.empty()
    if len(parts) == 1:
        return parts[0]
    joined = Frames(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Frames.__dataclass_fields__)
    )
    return joined.take(np.argsort(joined.data_off, kind="stable"))
