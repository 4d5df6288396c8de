"""The per-packet flow columns: flow ids (port reuse split as tcp.stream), client side, other
interfaces' copies and retransmissions, by the backend in use (``podcap.flows.backend``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.flows import backend
from podcap.flows.groups import COPY_WINDOW, Groups
from podcap.pcapfile import LINUX_SLL as SLL
from podcap.pcapfile import LINUX_SLL2 as SLL2


def assign_flows(packets: pd.DataFrame) -> pd.DataFrame:
    """Return ``packets`` with ``flow_id``, ``c2s``, ``retransmission`` and ``dup_of_frame``.

    ``flow_id`` numbers flows from 0 in order of their first packet (across files when the
    table has a ``file`` column); packets outside any flow (no IP header, or a TCP header cut
    short: :func:`without_headerless_tcp`) get -1.
    """
    packets = packets.copy(deep=False)  # copy-on-write: the caller's table keeps its columns
    if packets.empty:
        for name, dtype in (("flow_id", np.int64), ("c2s", bool), ("dup_of_frame", np.int64),
                            ("retransmission", bool)):  # fmt: skip
            packets[name] = np.zeros(0, dtype)
        return packets
    passes = backend.ACTIVE
    flow_ids, packets["c2s"] = passes.flow_ids(packets)
    packets["flow_id"] = without_headerless_tcp(packets, flow_ids)
    packets["dup_of_frame"] = interface_copies(packets)
    original = packets["dup_of_frame"].to_numpy() < 0
    packets["retransmission"] = passes.retransmissions(packets, original)
    return packets


def without_headerless_tcp(packets: pd.DataFrame, flow_ids: np.ndarray) -> np.ndarray:
    """``flow_ids`` where a TCP packet whose fixed header was cut (by the capture, or by its
    own IP length) belongs to no flow, as tshark gives it no tcp.stream; the rest renumbered
    from 0 in the same order."""
    headerless = (packets["ip_proto"].to_numpy() == 6) & (packets["tcp_seq"].to_numpy() < 0)
    if not headerless.any():
        return flow_ids
    flow_ids = np.where(headerless, -1, flow_ids)
    kept = flow_ids >= 0
    flow_ids[kept] = np.unique(flow_ids[kept], return_inverse=True)[1]
    return flow_ids


def interface_copies(p: pd.DataFrame) -> np.ndarray:
    """For each packet, the frame it is a copy of (-1 for an original).

    ``tcpdump -i any`` on a node sees a forwarded packet on each interface it crosses (the
    Pod's veth, the bridge, the NIC). A copy is a packet with the same addresses, ports, IP
    ID, TCP sequence/ack numbers, flags and length as an earlier one, seen within
    ``COPY_WINDOW`` on another interface: another SLL2 interface index, or for SLL (no index)
    another packet type or TTL. A retransmission is sent later (an RTO is 200 ms at least)
    and with a new IP ID, so it is never taken for a copy.
    """
    copy_of = np.full(len(p), -1, np.int64)
    linktype = p["linktype"].to_numpy()
    has_ip = p["ip_version"].to_numpy() != 0
    cooked = np.flatnonzero(((linktype == SLL) | (linktype == SLL2)) & has_ip)
    if len(cooked) < 2:
        return copy_of
    q = p.take(cooked)
    key_columns = ["src", "dst", "sport", "dport", "ip_proto", "ip_id", "tcp_seq", "tcp_ack",
                   "tcp_flags", "payload_len", "icmp_type"]  # fmt: skip
    if "file" in q:
        key_columns.insert(0, "file")
    key = q.groupby(key_columns, sort=False, observed=True).ngroup().to_numpy()
    groups = Groups(key)
    at = groups.order  # sorted by identity, then file order
    ts = q["ts"].to_numpy()[at]
    where_seen = q["if_index"].to_numpy().astype(np.int64)[at] if "if_index" in q else None
    how_seen = q["pkt_type"].to_numpy()[at] if "pkt_type" in q else None
    ttl = q["ttl"].to_numpy()[at]
    same_key = np.zeros(len(at), bool)
    same_key[1:] = key[at][1:] == key[at][:-1]
    close = np.zeros(len(at), bool)
    close[1:] = ts[1:] - ts[:-1] <= COPY_WINDOW
    other_place = np.zeros(len(at), bool)
    if where_seen is not None:
        indexed = (where_seen[1:] >= 0) & (where_seen[:-1] >= 0)
        differs = where_seen[1:] != where_seen[:-1]
        unindexed_differs = ttl[1:] != ttl[:-1]
        if how_seen is not None:
            unindexed_differs |= how_seen[1:] != how_seen[:-1]
        other_place[1:] = np.where(indexed, differs, unindexed_differs)
    is_copy = same_key & close & other_place
    # A copy points at the original that started its run of copies.
    original = np.maximum.accumulate(np.where(is_copy, -1, np.arange(len(at))))
    frames = p["frame"].to_numpy()[cooked][at]
    copy_of[cooked[at[is_copy]]] = frames[original[is_copy]]
    return copy_of
