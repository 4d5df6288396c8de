"""Flow ids, client sides and retransmissions in numpy: the reference and the fallback.

Packets are grouped by hashing their keys (``pd.factorize``, numbered in order of first
appearance) or by one stable sort per grouping; the only Python loop runs over the few SYNs
that might start a new connection on a reused 4-tuple. flowpass_packets.c computes the same in
one loop each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.schema import ACK, FIN, RST, SYN, TCP
from podcap.flows.groups import SEQ_SPACE, Groups, address_codes, first_of_code


def flow_ids(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``flow_id`` and ``c2s`` per packet (see ``podcap.flows.assign_flows``)."""
    conv, forward = _conversations(p)
    stream = _split_reused_ports(p, conv, forward)
    flow_id = _number_by_first_packet(conv, stream)
    return flow_id, _client_to_server(p, flow_id, forward)


def _conversations(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Conversation number per packet (address/port pair, either direction; -1 without an IP
    header) and whether the packet goes from the conversation's "a" endpoint to its "b"."""
    # Integer codes for addresses make every step below integer work; which endpoint is
    # "a" only has to be consistent, not meaningful.
    src, dst = address_codes(p["src"], p["dst"])
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


def retransmissions(p: pd.DataFrame, original: np.ndarray) -> np.ndarray:
    """A segment carrying data, SYN or FIN that starts before the highest sequence number
    already sent in its direction (keep-alives excepted, and the packets that are another
    interface's copy: where ``original`` is false)."""
    flags = p["tcp_flags"].to_numpy()
    flow = p["flow_id"].to_numpy()
    tcp = (p["ip_proto"].to_numpy() == TCP) & (flow >= 0) & original
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
