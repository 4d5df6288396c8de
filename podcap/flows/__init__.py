"""Connections: which packets belong together, and what happened to each connection.

``assign_flows(packets)`` adds four per-packet columns: ``flow_id``, ``c2s`` (sent by the
client), ``retransmission`` and ``dup_of_frame`` (the frame this packet is another
interface's copy of, ``tcpdump -i any``; -1 for an original). ``flow_table(packets)`` gives
one row per flow.

Two implementations of the per-packet work give the same result: C passes
(``podcap.flows.compiled``: one loop over the packets each, with a hash table of
conversations), used when they were built, and the numpy code here, the fallback without a C
compiler (and the reference the tests hold the C passes to). In numpy, packets are grouped by
hashing their keys (``pd.factorize``, numbered in order of first appearance) or by one stable
sort per grouping, and per-group values come from ``np.*.reduceat`` on the sorted order; the
only Python loop runs over the few SYNs that might start a new connection on a reused 4-tuple.
What both share (address codes, the per-flow columns, history spelling, states) is written
once.

TCP streams split as Wireshark's ``tcp.stream`` splits them: a pure SYN whose sequence number
differs from the first one seen in its direction starts a new stream (port reuse). UDP and
other protocols have one flow per address/port pair, without idle time-outs. States and
history letters follow Zeek's conn.log.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from podcap.decode.strings import as_text
from podcap.flows import compiled as flowpass

TCP, UDP = 6, 17
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SEQ_SPACE = 1 << 32
SLL, SLL2 = 113, 276  # Linux cooked capture link types (tcpdump -i any)
COPY_WINDOW = 0.005  # seconds: another interface's copy follows within microseconds
FLOW_COLUMNS = [
    "flow_id", "proto", "client_ip", "client_port", "server_ip", "server_port",
    "first_ts", "last_ts", "duration", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c",
    "payload_c2s", "payload_s2c", "state", "history", "handshake_rtt_ms", "retransmissions",
    "resets", "zero_windows", "encap", "outer_src", "outer_dst",
]  # fmt: skip
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp", 47: "gre"}


def proto_names(numbers: pd.Series) -> pd.Series:
    """IP protocol numbers as names (``tcp``, ``udp``...); "" where there is no IP header."""
    names = {n: PROTO_NAMES.get(n, "" if n < 0 else str(n)) for n in numbers.unique()}
    return numbers.map(names)


class Groups:
    """Packets grouped by an integer key, through one stable sort.

    ``order`` lists packet positions group after group (file order inside a group);
    ``starts`` is where each group begins in ``order``; ``keys`` the key of each group.
    """

    def __init__(self, key: np.ndarray):
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        change = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        self.starts = np.concatenate([[0], change]) if len(key) else change
        self.keys = sorted_key[self.starts]
        self.sizes = np.diff(np.append(self.starts, len(key)))
        self.group_of_sorted = np.repeat(np.arange(len(self.starts)), self.sizes)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[self.order], self.starts) if len(self.starts) else values[:0]

    def sum_by_side(self, values: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group sums over the packets where ``side`` is true, and where it is false
        (the second as total minus first: one masked pass instead of two)."""
        ordered = values[self.order]
        on_side = np.add.reduceat(np.where(side[self.order], ordered, 0), self.starts)
        return on_side, np.add.reduceat(ordered, self.starts) - on_side

    def min(self, values: np.ndarray, mask: np.ndarray | None = None, empty=np.inf) -> np.ndarray:
        """Smallest value per group (over ``mask`` only; ``empty`` for a group without one)."""
        if mask is None:
            chosen = values[self.order]
            return np.minimum.reduceat(chosen, self.starts) if len(self.starts) else chosen
        # Only the packets in the mask (handshake packets: a few per flow), not every packet.
        picked = np.flatnonzero(mask)
        smallest = np.full(len(self.starts), empty, np.result_type(values, np.float64))
        np.minimum.at(smallest, self.group_of_packet[picked], values[picked])
        return smallest

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values[self.order], self.starts) if len(self.starts) else values

    def first_position(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Position of each group's first packet (within ``mask``); len(packets) when none."""
        if mask is None:
            return self.order[self.starts]
        # Work in proportion to the packets in the mask (most masks are sparse).
        return self.first_of(np.flatnonzero(mask))

    def first_of(self, positions: np.ndarray) -> np.ndarray:
        """Smallest of ``positions`` in each group; len(packets) for a group with none."""
        first = np.full(len(self.starts), len(self.order), np.int64)
        np.minimum.at(first, self.group_of_packet[positions], positions)
        return first

    @cached_property
    def group_of_packet(self) -> np.ndarray:
        group = np.empty(len(self.order), np.int64)
        group[self.order] = self.group_of_sorted
        return group

    def previous_max(self, values: np.ndarray) -> np.ndarray:
        """For each packet, the largest value among the earlier packets of its group (-1 when
        it is the first), for values in [-1, 2**34)."""
        shift = np.int64(1 << 35)  # lifts each group above every value of the groups before
        lifted = values[self.order] + 1 + self.group_of_sorted * shift
        running = np.maximum.accumulate(lifted) - self.group_of_sorted * shift - 1
        before = np.concatenate([[-1], running[:-1]])
        before[self.starts] = -1
        out = np.empty_like(before)
        out[self.order] = before
        return out


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


def flow_table(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per flow (columns ``FLOW_COLUMNS``, plus ``file`` when the table has one)."""
    if "flow_id" not in packets:
        packets = assign_flows(packets)
    sums = _compiled_sums(packets) if flowpass.LIBRARY is not None else _numpy_sums(packets)
    if sums is None:
        return pd.DataFrame(columns=(["file"] if "file" in packets else []) + FLOW_COLUMNS)
    p, first_at = sums.packets, sums.first_at

    def first(name: str):
        return p[name].take(first_at).array

    def first_text(name: str) -> pd.Series:
        # The packet table's text columns are categoricals; a flow table row is plain text.
        return as_text(p[name].take(first_at).reset_index(drop=True))

    table = dict(sums.columns)
    table["packets_s2c"] = sums.sizes - table["packets_c2s"]
    first_c2s = p["c2s"].to_numpy()[first_at]
    first_proto = p["ip_proto"].to_numpy()[first_at]
    table["proto"] = proto_names(pd.Series(first_proto)).to_numpy()
    # Strings as pandas (Arrow) strings: where() on them never builds Python objects.
    src, dst = first_text("src"), first_text("dst")
    sport, dport = first("sport"), first("dport")
    table["client_ip"] = src.where(first_c2s, dst).array
    table["client_port"] = np.where(first_c2s, sport, dport)
    table["server_ip"] = dst.where(first_c2s, src).array
    table["server_port"] = np.where(first_c2s, dport, sport)
    table["duration"] = (table["last_ts"] - table["first_ts"]).round(6)
    for column in ("encap", "outer_src", "outer_dst"):
        table[column] = first_text(column).array
    if "file" in p:
        table["file"] = p["file"].take(first_at).array
    table["handshake_rtt_ms"] = _rtt_ms(sums.syn_ts, sums.ack_ts)
    table["history"] = _spell_history(sums.history_order)
    both_ways = (table["packets_c2s"] > 0) & (table["packets_s2c"] > 0)
    table["state"] = _states(sums.first_events, len(p), first_proto, both_ways)
    columns = (["file"] if "file" in table else []) + FLOW_COLUMNS
    return pd.DataFrame({name: table[name] for name in columns})


@dataclass
class _FlowSums:
    """What the flow table needs from every packet of each flow, one entry per flow.

    ``first_at`` and ``first_events`` are positions in ``packets`` (``len(packets)`` for an
    event that never happened); ``history_order`` lists each flow's ``EVENTS`` indexes in the
    order they first happened, then ``len(EVENTS)``.
    """

    packets: pd.DataFrame
    first_at: np.ndarray
    sizes: np.ndarray
    columns: dict[str, np.ndarray]  # flow_id, first_ts, last_ts, sums: FLOW_COLUMNS names
    syn_ts: np.ndarray
    ack_ts: np.ndarray
    first_events: np.ndarray
    history_order: np.ndarray


def _compiled_sums(packets: pd.DataFrame) -> _FlowSums | None:
    flow = packets["flow_id"].to_numpy()
    sums = flowpass.flow_sums(
        flow, packets["c2s"].to_numpy(), packets["ip_proto"].to_numpy(),
        packets["tcp_flags"].to_numpy(), packets["payload_len"].to_numpy(),
        packets["length"].to_numpy(), packets["tcp_win"].to_numpy(),
        packets["retransmission"].to_numpy(), packets["ts"].to_numpy(),
    )  # fmt: skip
    present = sums["packets"] > 0
    if not present.any():
        return None
    if not present.all():  # a table of some flows' packets only
        sums = {name: values[present] for name, values in sums.items()}
    names = ["first_ts", "last_ts", "packets_c2s", "bytes_c2s", "bytes_s2c", "payload_c2s",
             "payload_s2c", "retransmissions", "resets", "zero_windows"]  # fmt: skip
    columns = {"flow_id": np.flatnonzero(present)} | {name: sums[name] for name in names}
    return _FlowSums(
        packets=packets,
        first_at=sums["first_packet"],
        sizes=sums["packets"],
        columns=columns,
        syn_ts=sums["syn_ts"],
        ack_ts=sums["ack_ts"],
        first_events=sums["first_event"],
        history_order=flowpass.history_order(sums["first_event"], len(packets)),
    )


def _numpy_sums(packets: pd.DataFrame) -> _FlowSums | None:
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
    return _FlowSums(
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


# --- which packets belong together -------------------------------------------------------


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

HISTORY_LETTERS = {
    # letter: which packets show it (client's letters are upper case, server's lower case)
    "S": lambda c: c.tcp & ((c.flags & (SYN | ACK)) == SYN),
    "H": lambda c: c.tcp & ((c.flags & (SYN | ACK)) == (SYN | ACK)),
    "A": lambda c: c.tcp & ((c.flags & (SYN | FIN | RST | ACK)) == ACK) & (c.payload == 0),
    # Data: TCP payload, or any payload of another protocol.
    "D": lambda c: c.payload > 0,
    "F": lambda c: c.tcp & ((c.flags & FIN) != 0),
    "R": lambda c: c.tcp & ((c.flags & RST) != 0),
    # Zeek's T: a retransmitted payload (a repeated SYN is not a T).
    "T": lambda c: c.retransmission & (c.payload > 0),
    "W": lambda c: c.zero_window,
}
EVENTS = [e for letter in HISTORY_LETTERS for e in (letter, letter.lower())]


def _first_events(groups: Groups, col: _Cols) -> np.ndarray:
    """(flows, len(EVENTS)) array: where each history event first happened in each flow
    (packet position; len(packets) when it never did). Upper case: sent by the client."""
    never = len(col.flow)
    firsts = np.full((len(groups.starts), len(EVENTS)), never, np.int64)
    for index, test in enumerate(HISTORY_LETTERS.values()):
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


def _spell_history(spelled: np.ndarray) -> np.ndarray:
    """Zeek history letters from ``_history_order``'s rows. Few distinct orders exist: each
    is spelled out once."""
    # One integer per distinct spelling (hashing, not np.unique's row sort): each half of
    # the row as a base-17 number, then the pair of halves.
    half = len(EVENTS) // 2
    weights = (len(EVENTS) + 1) ** np.arange(half, dtype=np.int64)
    high, _ = pd.factorize(spelled[:, :half] @ weights)
    low, low_values = pd.factorize(spelled[:, half:] @ weights)
    which, first_rows = _factorize_with_first(high.astype(np.int64) * len(low_values) + low)
    letters = EVENTS + [""]
    words = ["".join(letters[i] for i in row) for row in spelled[first_rows].tolist()]
    return _strings(words, which)


def _strings(words: list[str], which: np.ndarray):
    """A pandas string array of ``words[which]``, built without a Python object per row."""
    return pd.array(pa.array(words, pa.string()).take(pa.array(which)), dtype="str")


def _factorize_with_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pd.factorize codes, plus the position of each code's first occurrence."""
    codes = pd.factorize(values)[0]
    return codes, first_of_code(codes)


def _states(firsts: np.ndarray, never: int, proto: np.ndarray, both_ways: np.ndarray) -> np.ndarray:
    """Zeek conn_state from the first time each event was seen in the flow."""

    def at(event: str) -> np.ndarray:
        return firsts[:, EVENTS.index(event)]

    seen = {name: at(event) < never for name, event in
            (("syn", "S"), ("synack", "h"), ("fin_o", "F"), ("fin_r", "f"),
             ("rst_o", "R"), ("rst_r", "r"))}  # fmt: skip
    rst_o_first = at("R") <= at("r")
    established = seen["synack"]
    names = ["RSTO", "RSTR", "SF", "S2", "S3", "S1", "REJ", "RSTOS0", "SH", "S0", "OTH"]
    # Integer codes into ``names`` (first matching condition wins), spelled at the end.
    states = np.select(
        [
            established & seen["rst_o"] & rst_o_first,
            established & seen["rst_r"],
            established & seen["fin_o"] & seen["fin_r"],
            established & seen["fin_o"],
            established & seen["fin_r"],
            established,
            seen["syn"] & seen["rst_r"],
            seen["syn"] & seen["rst_o"],
            seen["syn"] & seen["fin_o"],
            seen["syn"],
        ],
        range(10),
        default=names.index("OTH"),
    )
    other = np.where((proto == UDP) & both_ways, names.index("SF"), names.index("S0"))
    other = np.where(proto == UDP, other, names.index("OTH"))
    return _strings(names, np.where(proto != TCP, other, states))


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


def _rtt_ms(syn_ts: np.ndarray, ack_ts: np.ndarray) -> np.ndarray:
    rtt = np.full(len(syn_ts), np.nan)
    both = np.isfinite(ack_ts) & np.isfinite(syn_ts)
    rtt[both] = np.round((ack_ts[both] - syn_ts[both]) * 1000.0, 3)
    return rtt
