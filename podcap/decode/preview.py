"""The first bytes of each packet's L4 payload, kept for the packets report's ``info`` column.

Only asked for when that report is built (``read_capture(..., preview=True)``): PREVIEW_BYTES
a packet, gathered with one numpy index per chunk, no Python object per packet.
"""

import numpy as np

from podcap.decode.bytesview import ByteView

PREVIEW_BYTES = 64  # enough for a request line, a status line or a marker like "lbtest\r\n"
PREVIEW_DTYPE = f"S{PREVIEW_BYTES}"


def payload_heads(view: ByteView, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """One ``S64`` value per packet: the first captured bytes of ``view.buf[start:end]``
    (b"" for a packet without payload). numpy drops trailing NUL bytes from such values,
    which a preview can spare."""
    heads = np.zeros((len(start), PREVIEW_BYTES), np.uint8)
    has = np.flatnonzero((start >= 0) & (end > start))
    if len(has):
        rows = view.rows(start[has], PREVIEW_BYTES)
        inside = np.arange(PREVIEW_BYTES) < (end[has] - start[has])[:, None]
        heads[has] = np.where(inside, rows, 0)
    return heads.view(PREVIEW_DTYPE)[:, 0]


def heads_of(payloads: list[bytes]) -> np.ndarray:
    """The same column from payloads held as bytes (the tshark engine's)."""
    return np.array([p[:PREVIEW_BYTES] for p in payloads], dtype=PREVIEW_DTYPE)
