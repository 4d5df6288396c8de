"""Which segment completes each HTTP message: where Wireshark, reassembling, puts its fields.

The decoder marks the segment whose payload starts a request or response; with
``http_lengths`` it also says how long the message is (head + Content-Length). A message longer
than its first segment is complete at the first later segment of the same connection and
direction that brings its last byte (by TCP sequence number, so retransmissions and
reordering are counted as Wireshark counts them); one never completed in the capture is shown
on no frame, as tshark shows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEQ_SPACE = 1 << 32
FIRST_WINDOW = 64  # segments looked at after a start before looking further


def completing_rows(packets: pd.DataFrame) -> np.ndarray:
    """Per row of ``packets`` (one file's, with the flow columns): the row completing the
    HTTP message that starts in it; the row itself when the message fits, or its length is
    unknown; -1 when the capture ends before the message does."""
    rows = np.arange(len(packets))
    if "http_length" not in packets:
        return rows
    length = packets["http_length"].to_numpy().astype(np.int64)
    longer = np.flatnonzero(length > packets["payload_len"].to_numpy())
    if not len(longer):
        return rows
    side = packets["flow_id"].to_numpy().astype(np.int64) * 2 + packets["c2s"].to_numpy()
    seq = packets["tcp_seq"].to_numpy()
    payload = packets["payload_len"].to_numpy().astype(np.int64)
    order = np.argsort(side, kind="stable")  # each side's rows together, in file order
    sides, first = np.unique(side[order], return_index=True)
    last = np.append(first[1:], len(order))
    for start in longer.tolist():
        at = np.searchsorted(sides, side[start])
        same_side = order[first[at] : last[at]]
        later = same_side[np.searchsorted(same_side, start) + 1 :]
        rows[start] = _completing(later, seq, payload, start, length[start])
    return rows


def _completing(later: np.ndarray, seq, payload, start: int, length: int) -> int:
    """The first of ``later`` whose data reaches byte ``length`` of the message at ``start``."""
    window = FIRST_WINDOW
    done = 0
    while done < len(later):
        part = later[done : done + window]
        offset = (seq[part].astype(np.int64) - int(seq[start])) % SEQ_SPACE
        reach = np.where(offset < SEQ_SPACE // 2, offset + payload[part], 0)
        found = np.flatnonzero(reach >= length)
        if len(found):
            return int(part[found[0]])
        done += window
        window *= 4
    return -1


def started_in_matched(packets: pd.DataFrame, matched: np.ndarray) -> np.ndarray:
    """Bool per row: a message starts in it whose completing row ``matched`` (``packets``
    holding one file or several, one after the other)."""
    found = np.zeros(len(packets), bool)
    if "http_length" not in packets or not (packets["http_length"] > 0).any():
        return found
    files = packets["file"].to_numpy() if "file" in packets else np.zeros(len(packets))
    for file in pd.unique(files):
        at = np.flatnonzero(files == file)
        target = completing_rows(packets.iloc[at])
        completed = target >= 0
        found[at[completed]] = matched[at[target[completed]]]
    return found
