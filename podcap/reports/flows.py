"""Connections: which packets belong together, and what happened to each connection.

``assign_flows(packets)`` adds three per-packet columns: ``flow_id``, ``c2s`` (sent by the
client) and ``retransmission``. ``flow_table(packets)`` gives one row per flow. Both are
vectorised with pandas group-bys; the only Python loop runs over the few SYNs that might
start a new connection on a reused 4-tuple.

TCP streams split as Wireshark's ``tcp.stream`` splits them: a pure SYN whose sequence number
differs from the first one seen in its direction starts a new stream (port reuse). UDP and
other protocols have one flow per address/port pair, without idle time-outs. States and
history letters follow Zeek's conn.log.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.reports import report
from podcap.reports.timefmt import as_datetime

TCP, UDP = 6, 17
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
SEQ_SPACE = 1 << 32
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


def assign_flows(packets: pd.DataFrame) -> pd.DataFrame:
    """Return ``packets`` with ``flow_id``, ``c2s`` and ``retransmission`` columns added.

    ``flow_id`` numbers flows from 0 in order of their first packet (across files when the
    table has a ``file`` column); packets outside any flow (no IP header) get -1.
    """
    packets = packets.copy()
    conv, forward = _conversations(packets)
    stream = _split_reused_ports(packets, conv, forward)
    flow_id = _number_by_first_packet(conv, stream)
    packets["flow_id"] = flow_id
    packets["c2s"] = _client_to_server(packets, flow_id, forward)
    packets["retransmission"] = _retransmissions(packets)
    return packets


def flow_table(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per flow (columns ``FLOW_COLUMNS``, plus ``file`` when the table has one)."""
    if "flow_id" not in packets:
        packets = assign_flows(packets)
    p = packets[packets["flow_id"] >= 0]
    if p.empty:
        return pd.DataFrame(columns=(["file"] if "file" in p else []) + FLOW_COLUMNS)
    flags = p["tcp_flags"].to_numpy()
    c2s = p["c2s"].to_numpy()
    f = pd.DataFrame(
        {
            "flow_id": p["flow_id"].to_numpy(),
            "ts": p["ts"].to_numpy(),
            "c2s": c2s,
            "s2c": ~c2s,
            "bytes_c2s": np.where(c2s, p["length"], 0),
            "bytes_s2c": np.where(c2s, 0, p["length"]),
            "payload_c2s": np.where(c2s, p["payload_len"], 0),
            "payload_s2c": np.where(c2s, 0, p["payload_len"]),
            "retransmission": p["retransmission"].to_numpy(),
            "rst": (flags & RST) != 0,
            "zero_window": _zero_window(p),
        }
    )
    by_flow = f.groupby("flow_id", sort=True)
    first = p.groupby("flow_id", sort=True).nth(0).set_index("flow_id")
    table = pd.DataFrame(
        {
            "first_ts": by_flow["ts"].min(),
            "last_ts": by_flow["ts"].max(),
            "packets_c2s": by_flow["c2s"].sum(),
            "packets_s2c": by_flow["s2c"].sum(),
            "bytes_c2s": by_flow["bytes_c2s"].sum(),
            "bytes_s2c": by_flow["bytes_s2c"].sum(),
            "payload_c2s": by_flow["payload_c2s"].sum(),
            "payload_s2c": by_flow["payload_s2c"].sum(),
            "retransmissions": by_flow["retransmission"].sum(),
            "resets": by_flow["rst"].sum(),
            "zero_windows": by_flow["zero_window"].sum(),
        }
    )
    first_c2s = first["c2s"].astype(bool)
    table["proto"] = proto_names(first["ip_proto"])
    table["client_ip"] = np.where(first_c2s, first["src"], first["dst"])
    table["client_port"] = np.where(first_c2s, first["sport"], first["dport"])
    table["server_ip"] = np.where(first_c2s, first["dst"], first["src"])
    table["server_port"] = np.where(first_c2s, first["dport"], first["sport"])
    table["duration"] = (table["last_ts"] - table["first_ts"]).round(6)
    for column in ("encap", "outer_src", "outer_dst"):
        table[column] = first[column]
    if "file" in first:
        table["file"] = first["file"]
    table = table.join(_tcp_states(p))
    table["handshake_rtt_ms"] = _handshake_rtt_ms(p).reindex(table.index)
    table["history"] = _history(p).reindex(table.index).fillna("")
    table["state"] = _states(table, first["ip_proto"])
    columns = (["file"] if "file" in table else []) + FLOW_COLUMNS
    return table.reset_index()[columns]


@report("flows", "one row per connection: endpoints, volumes, Zeek state and history, problems")
def flows_report(analysis) -> pd.DataFrame:
    return analysis.without_file_column(as_datetime(analysis.flows, "first_ts", "last_ts"))


# --- which packets belong together -------------------------------------------------------


def _conversations(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Conversation number per packet (address/port pair, either direction) and whether the
    packet goes from the conversation's "a" endpoint to its "b" endpoint."""
    # Integer codes for addresses make every step below integer work; which endpoint is
    # "a" only has to be consistent, not meaningful.
    src, dst = _address_codes(p["src"], p["dst"])
    sport = p["sport"].to_numpy().astype(np.int64) + 1  # -1 (no port) becomes 0
    dport = p["dport"].to_numpy().astype(np.int64) + 1
    src_end, dst_end = src << 17 | sport, dst << 17 | dport
    forward = src_end <= dst_end
    file_codes = pd.factorize(p["file"])[0] if "file" in p else np.zeros(len(p), np.int64)
    keys = pd.DataFrame(
        {
            "file": file_codes,
            "proto": p["ip_proto"].to_numpy(),
            "a": np.where(forward, src_end, dst_end),
            "b": np.where(forward, dst_end, src_end),
        }
    )
    conv = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy().copy()
    conv[p["ip_version"].to_numpy() == 0] = -1
    return conv, forward


def _address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct address, shared by both columns."""
    src_codes, src_uniques = pd.factorize(src)
    dst_codes, dst_uniques = pd.factorize(dst)
    in_src = pd.Index(src_uniques).get_indexer(dst_uniques)
    new = in_src < 0
    in_src[new] = len(src_uniques) + np.arange(new.sum())
    return src_codes.astype(np.int64), in_src[dst_codes].astype(np.int64)


def _split_reused_ports(p: pd.DataFrame, conv: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Stream number inside each conversation: 0, then +1 at each SYN that reuses the ports."""
    flags = p["tcp_flags"].to_numpy()
    seq = p["tcp_seq"].to_numpy()
    tcp = (p["ip_proto"].to_numpy() == TCP) & (conv >= 0)
    pure_syn = tcp & ((flags & (SYN | ACK)) == SYN)
    direction_key = conv * 2 + forward
    # The sequence number a direction starts from, as Wireshark's base_seq.
    base = np.where(flags & SYN, seq, (seq - 1) % SEQ_SPACE)
    first_base = pd.Series(base).where(tcp).groupby(direction_key).transform("first").to_numpy()
    rank = pd.Series(direction_key).groupby(direction_key).cumcount().to_numpy()
    # A SYN that is its direction's first packet, or repeats its first sequence number
    # (a retransmitted SYN), starts nothing, unless an earlier split moved the base: only
    # conversations with at least one SYN on a new sequence number need the exact walk.
    candidates = pure_syn & (rank > 0)
    suspicious = np.unique(conv[candidates & (seq != first_base)])
    stream = np.zeros(len(p), np.int64)
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
    return pd.Series(marks).groupby(conv).cumsum().to_numpy()


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
    key = pd.DataFrame({"conv": conv, "stream": stream})
    codes = key.groupby(["conv", "stream"], sort=False).ngroup().to_numpy().copy()
    # groupby(sort=False) numbers groups in order of first appearance: flow 0 is the first.
    codes[conv < 0] = -1
    return codes


def _client_to_server(p: pd.DataFrame, flow_id: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """The client sends the first SYN; else receives the first SYN-ACK; else it is the end
    with the higher port (ephemeral versus service port); else it sent the first packet."""
    flags = p["tcp_flags"].to_numpy()
    tcp = p["ip_proto"].to_numpy() == TCP
    sport, dport = p["sport"].to_numpy(), p["dport"].to_numpy()
    # Port of the lower endpoint ("a") and of the higher one, whatever the packet direction.
    a_port, b_port = np.where(forward, sport, dport), np.where(forward, dport, sport)
    frame = pd.DataFrame(
        {
            "flow": flow_id,
            "by_first_packet": forward,
            "by_port": np.where(a_port != b_port, a_port > b_port, forward),
            "by_synack": np.where(tcp & ((flags & (SYN | ACK)) == (SYN | ACK)), ~forward, np.nan),
            "by_syn": np.where(tcp & ((flags & (SYN | ACK)) == SYN), forward, np.nan),
        }
    )
    firsts = frame.groupby("flow").first()  # first non-missing value of each column
    client_is_a = (
        firsts["by_syn"]
        .combine_first(firsts["by_synack"])
        .combine_first(firsts["by_port"].astype(float))
    )
    return forward == client_is_a.astype(bool).reindex(flow_id).to_numpy()


def _retransmissions(p: pd.DataFrame) -> np.ndarray:
    """A segment carrying data, SYN or FIN that starts before the highest sequence number
    already sent in its direction (keep-alives excepted)."""
    flags = p["tcp_flags"].to_numpy()
    tcp = (p["ip_proto"].to_numpy() == TCP) & (p["flow_id"].to_numpy() >= 0)
    length = p["payload_len"].to_numpy().astype(np.int64)
    syn_fin = ((flags & (SYN | FIN)) != 0) & ((flags & RST) == 0)
    key = p["flow_id"].to_numpy() * 2 + p["c2s"].to_numpy()
    seq = p["tcp_seq"].to_numpy()
    first_seq = pd.Series(seq).where(tcp).groupby(key).transform("first").to_numpy()
    relative = (seq - np.nan_to_num(first_seq).astype(np.int64)) % SEQ_SPACE
    end = np.where(tcp, relative + length + syn_fin, -1)
    previous_max = pd.Series(end).groupby(key).cummax().groupby(key).shift(1).fillna(-1)
    previous_max = previous_max.to_numpy().astype(np.int64)
    carries = tcp & ((length > 0) | syn_fin)
    keep_alive = (length <= 1) & ~syn_fin & (relative == previous_max - 1)
    return carries & (relative < previous_max) & ~keep_alive


def _zero_window(p: pd.DataFrame) -> np.ndarray:
    # As Wireshark's tcp.analysis.zero_window: window 0 on a segment without SYN/FIN/RST.
    flags = p["tcp_flags"].to_numpy()
    return (
        (p["ip_proto"].to_numpy() == TCP)
        & (p["tcp_win"].to_numpy() == 0)
        & ((flags & (SYN | FIN | RST)) == 0)
    )


# --- what happened to each connection ----------------------------------------------------


def _tcp_states(p: pd.DataFrame) -> pd.DataFrame:
    flags = p["tcp_flags"].to_numpy()
    c2s = p["c2s"].to_numpy()
    tcp = p["ip_proto"].to_numpy() == TCP
    events = {
        "syn": tcp & c2s & ((flags & (SYN | ACK)) == SYN),
        "synack": tcp & ~c2s & ((flags & (SYN | ACK)) == (SYN | ACK)),
        "fin_o": tcp & c2s & ((flags & FIN) != 0),
        "fin_r": tcp & ~c2s & ((flags & FIN) != 0),
        "rst_o": tcp & c2s & ((flags & RST) != 0),
        "rst_r": tcp & ~c2s & ((flags & RST) != 0),
    }
    order = np.arange(len(p), dtype=np.float64)
    first_seen = (
        pd.DataFrame({name: np.where(mask, order, np.inf) for name, mask in events.items()})
        .groupby(p["flow_id"].to_numpy())
        .min()
    )
    first_seen["both_ways"] = pd.Series(c2s).groupby(p["flow_id"].to_numpy()).nunique() > 1
    return first_seen


def _states(table: pd.DataFrame, proto: pd.Series) -> pd.Series:
    """Zeek conn_state from the first time each event was seen in the flow."""
    seen = {name: np.isfinite(table[name].to_numpy()) for name in
            ("syn", "synack", "fin_o", "fin_r", "rst_o", "rst_r")}  # fmt: skip
    rst_o_first = table["rst_o"].to_numpy() <= table["rst_r"].to_numpy()
    established = seen["synack"]
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
        ["RSTO", "RSTR", "SF", "S2", "S3", "S1", "REJ", "RSTOS0", "SH", "S0"],
        default="OTH",
    )
    not_tcp = (proto != TCP).to_numpy()
    other = np.where((proto == UDP).to_numpy() & table["both_ways"].to_numpy(), "SF", "S0")
    other = np.where((proto == UDP).to_numpy(), other, "OTH")
    return pd.Series(np.where(not_tcp, other, states), index=table.index)


def _handshake_rtt_ms(p: pd.DataFrame) -> pd.Series:
    """Wireshark's iRTT: from the client's first SYN to its ACK of the server's SYN-ACK."""
    flags = p["tcp_flags"].to_numpy()
    c2s = p["c2s"].to_numpy()
    tcp = p["ip_proto"].to_numpy() == TCP
    flow = p["flow_id"].to_numpy()
    ts = pd.Series(p["ts"].to_numpy())

    def first_time(mask: np.ndarray) -> pd.Series:
        return ts[mask].groupby(flow[mask]).min()

    syn_ts = first_time(tcp & c2s & ((flags & (SYN | ACK)) == SYN))
    synack_ts = first_time(tcp & ~c2s & ((flags & (SYN | ACK)) == (SYN | ACK)))
    acks = tcp & c2s & ((flags & (SYN | ACK | RST)) == ACK)
    acks[acks] = ts[acks].to_numpy() >= synack_ts.reindex(flow[acks]).to_numpy()
    return ((first_time(acks) - syn_ts).dropna() * 1000.0).round(3)


HISTORY_LETTERS = {
    # letter: which packets show it (client's letters are upper case, server's lower case)
    "S": lambda f, n: (f & (SYN | ACK)) == SYN,
    "H": lambda f, n: (f & (SYN | ACK)) == (SYN | ACK),
    "A": lambda f, n: ((f & (SYN | FIN | RST | ACK)) == ACK) & (n == 0),
    "D": lambda f, n: n > 0,
    "F": lambda f, n: (f & FIN) != 0,
    "R": lambda f, n: (f & RST) != 0,
}


def _history(p: pd.DataFrame) -> pd.Series:
    """Zeek history letters, each in the order it first happened in the flow."""
    flags = p["tcp_flags"].to_numpy()
    length = p["payload_len"].to_numpy()
    c2s = p["c2s"].to_numpy()
    flow = p["flow_id"].to_numpy()
    tcp = p["ip_proto"].to_numpy() == TCP
    masks = {letter: tcp & test(flags, length) for letter, test in HISTORY_LETTERS.items()}
    # Zeek's T: a retransmitted payload (a repeated SYN is not a T).
    masks["T"] = p["retransmission"].to_numpy() & (length > 0)
    masks["W"] = _zero_window(p)
    masks["D"] = masks["D"] | (~tcp & (length > 0))
    pieces = []
    order = np.arange(len(p))
    for letter, mask in masks.items():
        for client_side, text in ((True, letter), (False, letter.lower())):
            chosen = mask & (c2s == client_side)
            if chosen.any():
                first = pd.Series(order[chosen]).groupby(flow[chosen]).min()
                pieces.append(pd.DataFrame({"flow": first.index, "at": first.values, "l": text}))
    if not pieces:
        return pd.Series(dtype=str)
    events = pd.concat(pieces).sort_values(["flow", "at"], kind="stable")
    return _join_letters(events["flow"].to_numpy(), events["l"].to_numpy())


def _join_letters(flow: np.ndarray, letters: np.ndarray) -> pd.Series:
    """Concatenate each flow's letters (rows sorted by flow) column by column, not per flow:
    a grid of one letter per cell, then at most a dozen vectorised string additions."""
    flows, position = np.unique(flow, return_inverse=True)
    rank = pd.Series(position).groupby(position).cumcount().to_numpy()
    grid = np.full((len(flows), rank.max() + 1), "", dtype="<U1")
    grid[position, rank] = letters.astype("<U1")
    joined = grid[:, 0]
    for column in range(1, grid.shape[1]):
        joined = np.char.add(joined, grid[:, column])
    return pd.Series(joined, index=flows)
