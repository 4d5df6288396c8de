"""The per-flow record both backends fill for the flow table, and the history events it tracks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# Zeek's history letters, in the order a tie between them is spelled; the client's is the
# upper case one, the server's the lower case (C: flowpass_sums.c's events_of, bit by bit).
LETTERS = {
    "S": "a SYN without ACK",
    "H": "a SYN-ACK",
    "A": "a pure ACK: no SYN, FIN, RST and no payload",
    "D": "data: TCP payload, or any payload of another protocol",
    "F": "a FIN",
    "R": "a RST",
    "T": "a retransmitted payload (a repeated SYN is not a T)",
    "W": "a zero window",
}
EVENTS = [event for letter in LETTERS for event in (letter, letter.lower())]
# What each backend sums per flow, as the flow table's columns of the same names.
SUM_COLUMNS = [
    "first_ts", "last_ts", "packets_c2s", "bytes_c2s", "bytes_s2c", "payload_c2s",
    "payload_s2c", "retransmissions", "resets", "zero_windows",
]  # fmt: skip


@dataclass
class FlowSums:
    """What the flow table needs from every packet of each flow, one entry per flow.

    ``first_at`` and ``first_events`` are positions in ``packets`` (``len(packets)`` for an
    event that never happened); ``history_order`` lists each flow's ``EVENTS`` indexes in the
    order they first happened, then ``len(EVENTS)``.
    """

    packets: pd.DataFrame
    first_at: np.ndarray
    sizes: np.ndarray
    columns: dict[str, np.ndarray]  # flow_id and the SUM_COLUMNS
    syn_ts: np.ndarray
    ack_ts: np.ndarray
    first_events: np.ndarray
    history_order: np.ndarray
