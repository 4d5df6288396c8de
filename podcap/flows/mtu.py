"""Path MTU black holes: a connection whose small segments pass and whose large ones never do.

The handshake's small packets pass, the request passes, and the first segment larger than
the path can carry (overlay overhead: VXLAN 50 bytes, Geneve 50 and more, IP-in-IP 20) is
dropped on the way; the ICMP "fragmentation needed" that should have told the sender to send
smaller ones was filtered. Seen from either end: that segment is sent again and again and
never acknowledged, while every segment acknowledged was smaller.

``mtu_black_holes(packets)`` finds them per connection and direction, with numpy over every
data segment at once: a segment is acknowledged when the peer's highest acknowledgement
reaches its end (acknowledgements are cumulative); the direction is a black hole when its
first unacknowledged bytes were sent at least ``MIN_SENDINGS`` times in segments all larger
than the largest segment that was acknowledged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.schema import ACK, TCP
from podcap.flows.groups import SEQ_SPACE

MIN_SENDINGS = 2  # the first sending and at least one retransmission
BLACK_HOLE_COLUMNS = ["flow_id", "sender_c2s", "largest_passed", "smallest_lost", "sendings"]


def mtu_black_holes(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per connection direction that looks like a path MTU black hole (columns
    BLACK_HOLE_COLUMNS): which side sent, the largest payload acknowledged, the size of
    the segments never acknowledged and how many times they were sent."""
    tcp = (packets["ip_proto"] == TCP) & (packets["flow_id"] >= 0)
    if "dup_of_frame" in packets:
        tcp &= packets["dup_of_frame"] < 0
    p = packets.loc[tcp, ["flow_id", "c2s", "tcp_seq", "tcp_ack", "tcp_flags", "payload_len"]]
    if p.empty:
        return pd.DataFrame(columns=BLACK_HOLE_COLUMNS)
    side = p["flow_id"].to_numpy().astype(np.int64) * 2 + p["c2s"].to_numpy()
    data = p["payload_len"].to_numpy() > 0
    base = _first_seq(side[data], p["tcp_seq"].to_numpy()[data])
    highest = _highest_acks(side, p, base)
    seq, size, sides = p["tcp_seq"].to_numpy()[data], p["payload_len"].to_numpy()[data], side[data]
    start = (seq.astype(np.int64) - base.reindex(sides).to_numpy()) % SEQ_SPACE
    end = start + size
    acked = end <= highest.reindex(sides).fillna(-1).to_numpy()
    return _verdicts(pd.DataFrame({"side": sides, "start": start, "size": size, "acked": acked}))


def _first_seq(sides: np.ndarray, seq: np.ndarray) -> pd.Series:
    """Per direction, the sequence number of its first data segment (the origin of its
    relative numbers)."""
    return pd.Series(seq.astype(np.int64)).groupby(sides).first()


def _highest_acks(side: np.ndarray, p: pd.DataFrame, base: pd.Series) -> pd.Series:
    """Per direction, how far the peer acknowledged its data (relative to ``base``)."""
    acks = (p["tcp_flags"].to_numpy() & ACK) != 0
    acked_side = (side ^ 1)[acks]  # an ACK from one side acknowledges the other's data
    known = np.isin(acked_side, base.index.to_numpy())
    origin = base.reindex(acked_side[known]).to_numpy()
    relative = (p["tcp_ack"].to_numpy()[acks][known].astype(np.int64) - origin) % SEQ_SPACE
    relative = np.where(relative < SEQ_SPACE // 2, relative, -1)  # before the origin: nothing
    return pd.Series(relative).groupby(acked_side[known]).max()


def _verdicts(segments: pd.DataFrame) -> pd.DataFrame:
    passed = segments[segments["acked"]].groupby("side")["size"].max()
    lost = segments[~segments["acked"]]
    first_lost = lost.groupby("side")["start"].min()
    stuck = lost[lost["start"] == first_lost.reindex(lost["side"]).to_numpy()]
    sendings = stuck.groupby("side").size()
    smallest = stuck.groupby("side")["size"].min()
    table = pd.DataFrame({"sendings": sendings, "smallest_lost": smallest})
    table["largest_passed"] = passed.reindex(table.index)
    table = table[
        (table["sendings"] >= MIN_SENDINGS)
        & table["largest_passed"].notna()
        & (table["smallest_lost"] > table["largest_passed"])
    ]
    sides = table.index.to_numpy()
    return pd.DataFrame(
        {
            "flow_id": sides // 2,
            "sender_c2s": (sides % 2).astype(bool),
            "largest_passed": table["largest_passed"].astype(np.int64).to_numpy(),
            "smallest_lost": table["smallest_lost"].to_numpy(),
            "sendings": table["sendings"].to_numpy(),
        }
    )


def with_icmp(black_holes: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """``black_holes`` with what the ICMP errors (``podcap.flows.icmp``) said about each:
    ``mtu_errors`` (fragmentation needed / packet too big quoting it) and the smallest
    ``next_hop_mtu`` they gave (-1 without one)."""
    said = errors[(errors["next_hop_mtu"] >= 0) & errors["flow_id"].notna()]
    by_flow = said.groupby(said["flow_id"].astype(np.int64))["next_hop_mtu"]
    counts, smallest = by_flow.size(), by_flow.min()
    flows = black_holes["flow_id"]
    return black_holes.assign(
        mtu_errors=counts.reindex(flows).fillna(0).astype(np.int64).to_numpy(),
        next_hop_mtu=smallest.reindex(flows).fillna(-1).astype(np.int64).to_numpy(),
    )
