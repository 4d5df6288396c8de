"""The flow passes in C: the packet columns handed to the extension ``podcap.flows._flowpass``.

The numpy code (``numpy_packets``, ``numpy_sums``) makes a dozen passes and sorts over every
packet; the C functions do each in one loop, which takes the flows step from about 0.65 s to
0.1 s for a million packets. The build compiles them when a C compiler is there (``setup.py``);
``EXTENSION`` is None without one. The functions here give each column the dtype the extension
wants and pass every array by name; the extension checks each one's kind, item size, length
and the flow ids, and raises TypeError or ValueError on a mismatch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.flows.groups import address_codes
from podcap.flows.sums import EVENTS, SUM_COLUMNS, FlowSums

try:
    from podcap.flows import _flowpass as EXTENSION
except ImportError:  # built without a C compiler
    EXTENSION = None

if EXTENSION is not None and EXTENSION.EVENTS != len(EVENTS):
    raise ImportError(f"podcap.flows._flowpass was built for {EXTENSION.EVENTS} history events")


# The extension's name for each packet column it reads: the column, and the dtype it checks.
COLUMNS = {
    "sport": ("sport", np.int32), "dport": ("dport", np.int32), "proto": ("ip_proto", np.int16),
    "ip_version": ("ip_version", np.int8), "flags": ("tcp_flags", np.int16),
    "seq": ("tcp_seq", np.int64), "payload": ("payload_len", np.int32),
    "length": ("length", np.int32), "window": ("tcp_win", np.int32), "ts": ("ts", np.float64),
    "flow_id": ("flow_id", np.int64), "c2s": ("c2s", bool),
    "retransmission": ("retransmission", bool),
}  # fmt: skip


def _columns(p: pd.DataFrame, *names: str) -> dict[str, np.ndarray]:
    return {
        name: np.ascontiguousarray(p[COLUMNS[name][0]].to_numpy(), dtype=COLUMNS[name][1])
        for name in names
    }


def flow_ids(p: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``flow_id`` and ``c2s`` per packet (see ``podcap.flows.assign_flows``)."""
    src, dst = address_codes(p["src"], p["dst"])
    out = {"flow_id": np.empty(len(p), np.int64), "c2s": np.empty(len(p), bool)}
    file = pd.factorize(p["file"])[0].astype(np.int64) if "file" in p else None
    EXTENSION.assign_flows(
        file=file, src=src, dst=dst,
        **_columns(p, "sport", "dport", "proto", "ip_version", "flags", "seq"), **out,
    )  # fmt: skip
    return out["flow_id"], out["c2s"]


def retransmissions(p: pd.DataFrame, original: np.ndarray) -> np.ndarray:
    """Per packet: a retransmission (see ``numpy_packets.retransmissions``)."""
    out = np.empty(len(p), bool)
    EXTENSION.retransmissions(
        original=np.ascontiguousarray(original, bool), out=out,
        **_columns(p, "flow_id", "c2s", "proto", "payload", "flags", "seq"),
    )  # fmt: skip
    return out


def flow_sums(packets: pd.DataFrame) -> FlowSums | None:
    """One entry per flow of ``packets`` (None when no packet is in a flow)."""
    columns = _columns(packets, "flow_id", "c2s", "retransmission", "proto", "flags", "payload",
                       "length", "window", "ts")  # fmt: skip
    flows = int(columns["flow_id"].max(initial=-1)) + 1
    per_flow = ["first_packet", "packets", *SUM_COLUMNS, "syn_ts", "synack_ts", "ack_ts"]
    out = {name: np.empty(flows, float if name.endswith("_ts") else np.int64) for name in per_flow}
    for name in ("first_event", "history_order"):
        out[name] = np.empty((flows, len(EVENTS)), np.int64)
    EXTENSION.flow_sums(**columns, **out)
    present = out["packets"] > 0
    if not present.any():
        return None
    if not present.all():  # a table of some flows' packets only
        out = {name: values[present] for name, values in out.items()}
    return FlowSums(
        packets=packets,
        first_at=out["first_packet"],
        sizes=out["packets"],
        columns={"flow_id": np.flatnonzero(present)} | {name: out[name] for name in SUM_COLUMNS},
        syn_ts=out["syn_ts"],
        ack_ts=out["ack_ts"],
        first_events=out["first_event"],
        history_order=out["history_order"],
    )


def dns_fields(view, start: np.ndarray, end: np.ndarray):
    """``podcap.decode.dns.read_dns``'s columns, read in C (one loop per message): the
    names and addresses then spelled once each by ``podcap.decode.dns``."""
    from podcap.decode import dns

    n = len(start)
    start, end = np.ascontiguousarray(start, np.int64), np.ascontiguousarray(end, np.int64)
    out = {name: np.empty(n, np.int64) for name in (
        "ident", "flags", "questions", "answers", "name_end", "qtype", "qclass", "name_hash",
        "address_at", "address_size")}  # fmt: skip
    out |= {"malformed": np.empty(n, bool), "asked": np.empty(n, bool)}
    EXTENSION.dns_fields(buffer=view.buf, start=start, end=end, **out)
    named = np.flatnonzero(out["asked"] & (out["name_end"] - start - dns.HEADER <= dns.MAX_NAME))
    names = dns.names_of(view, start + dns.HEADER, out["name_end"], named,
                         out["name_hash"][named])  # fmt: skip
    found = np.flatnonzero(out["address_at"] >= 0)
    address = dns.addresses(view, n, found, out["address_at"][found], out["address_size"][found])
    return dns.dns_columns(out["ident"], out["flags"], out["questions"], out["answers"], names,
                           out["qtype"], out["qclass"], address, out["malformed"], out["asked"])  # fmt: skip
