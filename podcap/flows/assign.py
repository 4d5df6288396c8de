"""Per-packet flow columns: flow ids (port reuse split as tcp.stream), client side, other
interfaces' copies and retransmissions, in C when built and in numpy otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.flows import compiled as flowpass
from podcap.flows.groups import ACK, COPY_WINDOW, FIN, RST, SEQ_SPACE, SLL, SLL2, SYN, TCP, Groups


def assign_flows(packets: pd.DataFrame) -> pd.DataFrame:
    """Return ``packets`` with ``flow_id``, ``c2s``, ``retransmission`` and ``dup_of_frame``.

    ``flow_id`` numbers flows from 0 in order of their first packet (across files when the
    table has a ``file`` column); packets outside any flow (no IP header) get -1.
    """
    packets = packets.copy(deep=False)  # copy-on-write: the caller's table keeps its columns
    if packets.empty:
        for name, dtype in (("flow_id", np.int64), ("c2s", bool), ("dup_of_frame", np.int64),
                            ("retransmission", bool)):  # fmt: skip
            packets[name] = np.zeros(0, dtype)
        return packets
    if flowpass.LIBRARY is not None:
        flow_id, c2s = _compiled_flow_ids(packets)
    else:
        conv, forward = _conversations(packets)
        stream = _split_reused_ports(packets, conv, forward)
        flow_id = _number_by_first_packet(conv, stream)
        c2s = _client_to_server(packets, flow_id, forward)
    packets["flow_id"] = flow_id
    packets["c2s"] = c2s
    packets["dup_of_frame"] = interface_copies(packets)
    packets["retransmission"] = _retransmissions(packets)
    return packets


def _conversations(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Conversation number per packet (address/port pair, either direction; -1 without an IP
    header) and whether the packet goes from the conversation's "a" endpoint to its "b"."""
    # Integer codes for addresses make every step below integer work; which endpoint is
    # "a" only has to be consistent, not meaningful.
    src, dst = _address_codes(p["src"], p["dst"])
    sport = p["sport"].to_numpy().astype(np.int64) + 1  # -1 (no port) becomes 0
    dport = p["dport"].to_numpy().astype(np.int64) + 1
    src_end, dst_end = src << 17 | sport, dst << 17 | dport
    forward = src_end <= dst_end
    low, high = np.where(forward, src_end, dst_end), np.where(forward, dst_end, src_end)
    files = pd.factorize(p["file"])[0].astype(np.int64) if "file" in p else np.zeros(len(p), int)
    end_bits = int(max(src.max(initial=0), dst.max(initial=0))).bit_length() + 17
    file_bits = int(files.max(initial=0)).bit_length()
    if 2 * end_bits + 8 + file_bits <= 63:
        # Few addresses (the usual case): both endpoints, protocol and file fit one integer.
        key = (
            ((files << 8 | (p["ip_proto"].to_numpy() & 0xFF)) << end_bits | low) << end_bits
        ) | high
    else:
        a = pd.factorize(low)[0].astype(np.int64)
        b, b_values = pd.factorize(high)
        key = (a * len(b_values) + b) * 256 + (p["ip_proto"].to_numpy().astype(np.int64) & 0xFF)
        key = pd.factorize(key)[0].astype(np.int64) * (files.max(initial=0) + 1) + files
    has_ip = p["ip_version"].to_numpy() != 0
    conv = np.full(len(p), -1, np.int64)
    conv[has_ip] = pd.factorize(key[has_ip])[0]
    return conv, forward


def _compiled_flow_ids(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``flow_id`` and ``c2s`` by the C pass: the same rules as the numpy functions below."""
    src, dst = _address_codes(p["src"], p["dst"])
    return flowpass.assign_flows(
        pd.factorize(p["file"])[0] if "file" in p else None, src, dst,
        p["sport"].to_numpy(), p["dport"].to_numpy(), p["ip_proto"].to_numpy(),
        p["ip_version"].to_numpy(), p["tcp_flags"].to_numpy(), p["tcp_seq"].to_numpy(),
    )  # fmt: skip


def _address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct address, shared by both columns."""
    src_codes, src_uniques = pd.factorize(src)
    dst_codes, dst_uniques = pd.factorize(dst)
    in_src = pd.Index(src_uniques).get_indexer(dst_uniques)
    new = in_src < 0
    in_src[new] = len(src_uniques) + np.arange(new.sum())
    return src_codes.astype(np.int64), in_src[dst_codes].astype(np.int64)


def first_of_code(codes: np.ndarray) -> np.ndarray:
    """Position of the first packet of each code, for codes numbered by first appearance
    (``flow_id``: the first packet of each flow, in flow id order)."""
    running = np.maximum.accumulate(codes)
    new = np.concatenate([[True], running[1:] > running[:-1]]) if len(codes) else codes > 0
    return np.flatnonzero(new & (codes >= 0))


def _split_reused_ports(p: pd.DataFrame, conv: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Stream number inside each conversation: 0, then +1 at each SYN that reuses the ports."""
    flags = p["tcp_flags"].to_numpy()
    seq = p["tcp_seq"].to_numpy()
    tcp = (p["ip_proto"].to_numpy() == TCP) & (conv >= 0)
    pure_syn = tcp & ((flags & (SYN | ACK)) == SYN)
    stream = np.zeros(len(p), np.int64)
    if not pure_syn.any():
        return stream
    direction_key = conv * 2 + forward
    direction = pd.factorize(direction_key)[0]
    first_in_direction = first_of_code(direction)[direction]
    # The sequence number a direction starts from, as Wireshark's base_seq.
    base = np.where(flags & SYN, seq, (seq - 1) % SEQ_SPACE)
    # A SYN that is its direction's first packet, or repeats its first sequence number
    # (a retransmitted SYN), starts nothing, unless an earlier split moved the base: only
    # conversations with at least one SYN on a new sequence number need the exact walk.
    candidates = pure_syn & (first_in_direction != np.arange(len(p)))
    suspicious = np.unique(conv[candidates & (seq != base[first_in_direction])])
    if len(suspicious) == 0:
        return stream
    in_walk = tcp & np.isin(conv, suspicious)
    positions = _positions_by_key(direction_key, in_walk)
    splits: list[int] = []
    stream_start: dict[int, int] = {}
    for index in np.flatnonzero(candidates & in_walk):
        start = stream_start.get(conv[index], -1)
        mine = positions[direction_key[index]]
        first = mine[np.searchsorted(mine, start)]
        if first != index and seq[index] != base[first]:
            stream_start[conv[index]] = index
            splits.append(index)
    marks = np.zeros(len(p), np.int64)
    marks[splits] = 1
    # Splits so far within each conversation: a running sum restarted at each group.
    groups = Groups(conv)
    running = np.cumsum(marks[groups.order])
    before_group = running[groups.starts] - marks[groups.order][groups.starts]
    stream[groups.order] = running - np.repeat(before_group, groups.sizes)
    return stream


def _positions_by_key(key: np.ndarray, mask: np.ndarray) -> dict[int, np.ndarray]:
    """Packet positions (ascending) for each key, over the packets in ``mask``."""
    index = np.flatnonzero(mask)
    order = np.argsort(key[index], kind="stable")
    sorted_keys = key[index][order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], bounds])
    return {
        int(sorted_keys[start]): positions
        for start, positions in zip(starts, np.split(index[order], bounds), strict=True)
    }


def _number_by_first_packet(conv: np.ndarray, stream: np.ndarray) -> np.ndarray:
    if not stream.any():
        return conv  # conversations are already numbered by first appearance
    flow = np.full(len(conv), -1, np.int64)
    inside = conv >= 0
    flow[inside] = pd.factorize(conv[inside] * (stream.max() + 1) + stream[inside])[0]
    return flow


def _client_to_server(p: pd.DataFrame, flow_id: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """The client sends the first SYN; else receives the first SYN-ACK; else it is the end
    with the higher port (ephemeral versus service port); else it sent the first packet."""
    flags = p["tcp_flags"].to_numpy()
    tcp = p["ip_proto"].to_numpy() == TCP
    sport, dport = p["sport"].to_numpy(), p["dport"].to_numpy()
    first = first_of_code(flow_id)
    # Port of the lower endpoint ("a") and of the higher one, whatever the packet direction.
    a_port = np.where(forward[first], sport[first], dport[first])
    b_port = np.where(forward[first], dport[first], sport[first])
    client_is_a = np.where(a_port != b_port, a_port > b_port, forward[first])
    pure = flags & (SYN | ACK)
    # Later rules first, so the earlier (stronger) ones overwrite them.
    for mask, says_a in ((tcp & (pure == (SYN | ACK)), ~forward), (tcp & (pure == SYN), forward)):
        chosen = np.flatnonzero(mask & (flow_id >= 0))
        flows, at = np.unique(flow_id[chosen], return_index=True)
        client_is_a[flows] = says_a[chosen[at]]
    inside = flow_id >= 0
    out = np.zeros(len(p), bool)
    out[inside] = forward[inside] == client_is_a[flow_id[inside]]
    return out


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


def _retransmissions(p: pd.DataFrame) -> np.ndarray:
    """A segment carrying data, SYN or FIN that starts before the highest sequence number
    already sent in its direction (keep-alives and other interfaces' copies excepted)."""
    flags = p["tcp_flags"].to_numpy()
    flow = p["flow_id"].to_numpy()
    original = p["dup_of_frame"].to_numpy() < 0 if "dup_of_frame" in p else None
    if flowpass.LIBRARY is not None:
        return flowpass.retransmissions(
            flow, p["c2s"].to_numpy(), p["ip_proto"].to_numpy(), original,
            p["payload_len"].to_numpy(), flags, p["tcp_seq"].to_numpy(),
        )  # fmt: skip
    tcp = (p["ip_proto"].to_numpy() == TCP) & (flow >= 0)
    if original is not None:
        tcp &= original
    length = p["payload_len"].to_numpy().astype(np.int64)
    syn_fin = ((flags & (SYN | FIN)) != 0) & ((flags & RST) == 0)
    # Packets outside TCP go to group -1 and are never retransmissions.
    key = np.where(tcp, flow * 2 + p["c2s"].to_numpy(), -1)
    seq = p["tcp_seq"].to_numpy()
    direction = pd.factorize(key)[0]
    first_seq = seq[first_of_code(direction)][direction]
    relative = (seq - first_seq) % SEQ_SPACE
    end = np.where(tcp, relative + length + syn_fin, -1)
    previous_max = Groups(key).previous_max(end)
    carries = tcp & ((length > 0) | syn_fin)
    keep_alive = (length <= 1) & ~syn_fin & (relative == previous_max - 1)
    return carries & (relative < previous_max) & ~keep_alive


def zero_window(p: pd.DataFrame) -> np.ndarray:
    """Wireshark's ``tcp.analysis.zero_window``: window 0 on a TCP segment without SYN/FIN/RST."""
    flags = p["tcp_flags"].to_numpy()
    return (
        (p["ip_proto"].to_numpy() == TCP)
        & (p["tcp_win"].to_numpy() == 0)
        & ((flags & (SYN | FIN | RST)) == 0)
    )


# --- what happened to each connection ----------------------------------------------------
