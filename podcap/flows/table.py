"""The flow table: one row per connection with Zeek's state and history, from either backend."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from podcap.decode.strings import as_text
from podcap.flows import compiled as flowpass
from podcap.flows.assign import assign_flows, first_of_code, zero_window
from podcap.flows.groups import ACK, FIN, FLOW_COLUMNS, RST, SYN, TCP, UDP, Groups, proto_names


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
