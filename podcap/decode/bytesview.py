"""Vectorised reads of fixed-width fields at many offsets of one byte buffer.

Every decoder step asks "the 16-bit big-endian value at these N offsets": one numpy fancy
index over a view of the buffer as overlapping w-byte items (one starting at every byte)
returns all N fields at once, with no Python object per packet. Reads past the chunk end see zeros, so garbage lengths in a broken
packet never index outside the buffer; each caller masks out values that lie past its own
packet's captured end.
"""

import numpy as np
from numpy.lib.stride_tricks import as_strided


class ByteView:
    """A read-only numpy view of a chunk of capture bytes with gather helpers.

    Reads that run past the end of the chunk see zero bytes, as if the chunk were padded,
    so a field at the very end of the last packet is never shifted or garbled.
    """

    TAIL = 1024  # bytes of zero padding modelled after the end of the chunk

    def __init__(self, buf: bytes | bytearray):
        self.buf = buf
        self.arr = np.frombuffer(buf, dtype=np.uint8)
        self.size = len(buf)
        kept = min(self.TAIL, self.size)
        # A padded copy of the last bytes serves the few reads that cross the end.
        self.tail = np.concatenate([self.arr[self.size - kept :], np.zeros(self.TAIL, np.uint8)])
        self.tail_base = self.size - kept
        self._item_views: dict[int, np.ndarray] = {}

    def rows(self, offsets: np.ndarray, width: int) -> np.ndarray:
        """(len(offsets), width) uint8 array of the bytes at each offset."""
        limit = self.size - width
        if limit < 0:
            out = np.zeros((len(offsets), width), dtype=np.uint8)
            late = np.ones(len(offsets), dtype=bool)
        else:
            out = self._items(width)[np.clip(offsets, 0, limit)].view(np.uint8)
            out = out.reshape(len(offsets), width)
            late = offsets > limit
        if late.any():
            tail = as_strided(self.tail, shape=(len(self.tail) - width + 1, width), strides=(1, 1))
            at = np.clip(offsets[late] - self.tail_base, 0, len(self.tail) - width)
            out[late] = tail[at]
        return out

    def _items(self, width: int) -> np.ndarray:
        """The chunk as overlapping ``width``-byte items, one starting at every byte: a fancy
        index then copies each requested field with one fixed-size move (faster than rows
        of a strided 2-D view)."""
        items = self._item_views.get(width)
        if items is None:
            items = np.ndarray(
                shape=(self.size - width + 1,), dtype=f"V{width}", buffer=self.arr, strides=(1,)
            )
            self._item_views[width] = items
        return items

    def read(self, at: int, size: int) -> bytes:
        """``size`` bytes from ``at`` (as many as the chunk holds)."""
        return bytes(self.arr[at : at + size])

    def u8(self, offsets: np.ndarray) -> np.ndarray:
        return self.rows(offsets, 1)[:, 0]

    def u16(self, offsets: np.ndarray, big: bool = True) -> np.ndarray:
        return self.rows(offsets, 2).view(">u2" if big else "<u2")[:, 0].astype(np.int64)

    def u32(self, offsets: np.ndarray, big: bool = True) -> np.ndarray:
        return self.rows(offsets, 4).view(">u4" if big else "<u4")[:, 0].astype(np.int64)


def be16(rows: np.ndarray, at: int) -> np.ndarray:
    """Big-endian 16-bit field at byte ``at`` of each gathered row."""
    return (rows[:, at].astype(np.int64) << 8) | rows[:, at + 1]


def be32(rows: np.ndarray, at: int) -> np.ndarray:
    """Big-endian 32-bit field at byte ``at`` of each gathered row."""
    return np.ascontiguousarray(rows[:, at : at + 4]).view(">u4")[:, 0].astype(np.int64)
