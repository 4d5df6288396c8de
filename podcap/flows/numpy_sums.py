"""Per-flow sums, handshake times and first history events in numpy: the reference and the
fallback.

Per-flow values come from ``np.*.reduceat`` over one stable sort by flow (``Groups``), and
first-event positions from ``np.minimum.at`` on the sparse positions of each event;
flowpass_sums.c computes the same in one loop.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.schema import ACK, FIN, RST, SYN, TCP
from podcap.flows.groups import Groups, zero_window
from podcap.flows.sums import EVENTS, LETTERS, FlowSums


def flow_sums(packets: pd.DataFrame) -> FlowSums | None:
    """One entry per flow of ``packets`` (None when no packet is in a flow)."""
    flow = packets["flow_id"].to_numpy()
    in_flow = flow >= 0
    p = packets if in_flow.all() else packets[in_flow]
    if p.empty:
        return None
    col = _Cols(p)
    groups = Groups(col.flow)
    c2s = col.c2s
    packets_c2s = groups.sum(c2s.astype(np.int64))
    bytes_c2s, bytes_s2c = groups.sum_by_side(col.length, c2s)
    payload_c2s, payload_s2c = groups.sum_by_side(col.payload, c2s)
    columns = {
        "flow_id": groups.keys,
        "first_ts": groups.min(col.ts),
        "last_ts": groups.max(col.ts),
        "packets_c2s": packets_c2s,
        "bytes_c2s": bytes_c2s,
        "bytes_s2c": bytes_s2c,
        "payload_c2s": payload_c2s,
        "payload_s2c": payload_s2c,
        "retransmissions": groups.sum(col.retransmission.astype(np.int64)),
        "resets": groups.sum(((col.flags & RST) != 0).astype(np.int64)),
        "zero_windows": groups.sum(col.zero_window.astype(np.int64)),
    }
    firsts = _first_events(groups, col)
    syn_ts, ack_ts = _handshake_times(groups, col)
    return FlowSums(
        packets=p,
        first_at=groups.first_position(),
        sizes=groups.sizes,
        columns=columns,
        syn_ts=syn_ts,
        ack_ts=ack_ts,
        first_events=firsts,
        history_order=_history_order(firsts, len(p)),
    )


class _Cols:
    """The packet columns the flow table reads, as numpy arrays."""

    def __init__(self, p: pd.DataFrame):
        self.flow = p["flow_id"].to_numpy()
        self.ts = p["ts"].to_numpy()
        self.c2s = p["c2s"].to_numpy().astype(bool)
        self.flags = p["tcp_flags"].to_numpy()
        self.proto = p["ip_proto"].to_numpy()
        self.tcp = self.proto == TCP
        self.length = p["length"].to_numpy().astype(np.int64)
        self.payload = p["payload_len"].to_numpy().astype(np.int64)
        self.retransmission = p["retransmission"].to_numpy().astype(bool)
        self.zero_window = zero_window(p)


# Which packets show each of LETTERS' events.
HISTORY_TESTS = {
    "S": lambda c: c.tcp & ((c.flags & (SYN | ACK)) == SYN),
    "H": lambda c: c.tcp & ((c.flags & (SYN | ACK)) == (SYN | ACK)),
    "A": lambda c: c.tcp & ((c.flags & (SYN | FIN | RST | ACK)) == ACK) & (c.payload == 0),
    "D": lambda c: c.payload > 0,
    "F": lambda c: c.tcp & ((c.flags & FIN) != 0),
    "R": lambda c: c.tcp & ((c.flags & RST) != 0),
    "T": lambda c: c.retransmission & (c.payload > 0),
    "W": lambda c: c.zero_window,
}


def _first_events(groups: Groups, col: _Cols) -> np.ndarray:
    """(flows, len(EVENTS)) array: where each history event first happened in each flow
    (packet position; len(packets) when it never did). Upper case: sent by the client."""
    never = len(col.flow)
    firsts = np.full((len(groups.starts), len(EVENTS)), never, np.int64)
    for index, letter in enumerate(LETTERS):
        test = HISTORY_TESTS[letter]
        # Split the (sparse) positions by side, not the whole mask twice.
        seen = np.flatnonzero(test(col))
        if len(seen):
            by_client = col.c2s[seen]
            firsts[:, 2 * index] = groups.first_of(seen[by_client])
            firsts[:, 2 * index + 1] = groups.first_of(seen[~by_client])
    return firsts


def _history_order(firsts: np.ndarray, never: int) -> np.ndarray:
    """Each flow's events (indexes into ``EVENTS``) in the order they first happened, ties in
    the order of ``EVENTS``, then ``len(EVENTS)`` for the events that never did."""
    order = np.argsort(firsts, axis=1, kind="stable")
    # Events that happened sort first: a row's first `count` entries are its letters.
    count = (firsts < never).sum(axis=1)
    happened = np.arange(len(EVENTS)) < count[:, None]
    return np.where(happened, order, len(EVENTS))


def _handshake_times(groups: Groups, col: _Cols) -> tuple[np.ndarray, np.ndarray]:
    """Wireshark's iRTT ends: the client's first SYN, and its first ACK from the server's
    SYN-ACK on (inf where there is none)."""
    pure = col.flags & (SYN | ACK)
    syn_ts = groups.min(col.ts, col.tcp & col.c2s & (pure == SYN))
    synack_ts = groups.min(col.ts, col.tcp & ~col.c2s & (pure == (SYN | ACK)))
    acks = col.tcp & col.c2s & ((col.flags & (SYN | ACK | RST)) == ACK)
    # An ACK counts from the SYN-ACK on: the synack time of its flow, spread per packet.
    synack_of_packet = np.empty(len(col.ts))
    synack_of_packet[groups.order] = np.repeat(synack_ts, groups.sizes)
    return syn_ts, groups.min(col.ts, acks & (col.ts >= synack_of_packet))
