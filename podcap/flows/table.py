"""The flow table: one row per connection, with Zeek's state and history, from the backend's
per-flow sums."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from podcap.decode.schema import TCP, UDP
from podcap.decode.strings import as_text
from podcap.flows import backend
from podcap.flows.assign import assign_flows
from podcap.flows.groups import first_of_code, proto_names
from podcap.flows.sums import EVENTS

FLOW_COLUMNS = [
    "flow_id", "proto", "client_ip", "client_port", "server_ip", "server_port",
    "first_ts", "last_ts", "duration", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c",
    "payload_c2s", "payload_s2c", "state", "history", "handshake_rtt_ms", "retransmissions",
    "resets", "zero_windows", "encap", "outer_src", "outer_dst",
]  # fmt: skip


def flow_table(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per flow (columns ``FLOW_COLUMNS``, plus ``file`` when the table has one)."""
    if "flow_id" not in packets:
        packets = assign_flows(packets)
    sums = backend.ACTIVE.flow_sums(packets)
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


def _spell_history(spelled: np.ndarray) -> np.ndarray:
    """Zeek history letters from ``FlowSums.history_order``'s rows. Few distinct orders exist: each
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


def _rtt_ms(syn_ts: np.ndarray, ack_ts: np.ndarray) -> np.ndarray:
    rtt = np.full(len(syn_ts), np.nan)
    both = np.isfinite(ack_ts) & np.isfinite(syn_ts)
    rtt[both] = np.round((ack_ts[both] - syn_ts[both]) * 1000.0, 3)
    return rtt
