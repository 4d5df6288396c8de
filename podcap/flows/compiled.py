"""The flows stage's per-packet passes in C: the extension module ``podcap.flows._flowpass``.

``podcap.flows`` computes flow ids, client sides, retransmissions and per-flow sums with numpy:
a dozen passes and sorts over every packet. The C functions do each in one loop, which takes
the flows step from about 0.65 s to 0.1 s for a million packets. The build compiles them when a
C compiler is there (``setup.py``); without it, or with ``PODCAP_FLOWPASS=0`` in the
environment, ``LIBRARY`` is None and the numpy code runs. The functions here give each array
the type the extension checks (kind, item size, length: a mismatch raises, nothing is read past
an end). The tests check that both backends give the same reports.
"""

from __future__ import annotations

import os

import numpy as np

EVENTS = 16  # history events per flow: flows.table.EVENTS


def _load():
    if os.environ.get("PODCAP_FLOWPASS", "1") == "0":
        return None
    try:
        from podcap.flows import _flowpass
    except ImportError:  # built without a C compiler
        return None
    if _flowpass.EVENTS != EVENTS:
        raise ImportError(f"podcap.flows._flowpass was built for {_flowpass.EVENTS} events")
    return _flowpass


LIBRARY = _load()


def _as(array: np.ndarray | None, dtype) -> np.ndarray | None:
    return None if array is None else np.ascontiguousarray(array, dtype=dtype)


def assign_flows(
    file: np.ndarray | None,
    src: np.ndarray,
    dst: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    proto: np.ndarray,
    ip_version: np.ndarray,
    flags: np.ndarray,
    seq: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``flow_id`` and ``c2s`` per packet (flows.assign_flows); src/dst: integer address codes
    shared by both columns, file: integer file codes (None for one file)."""
    n = len(src)
    flow_id, c2s = np.empty(n, np.int64), np.empty(n, bool)
    LIBRARY.assign_flows(
        n, _as(file, np.int64), _as(src, np.int64), _as(dst, np.int64), _as(sport, np.int32),
        _as(dport, np.int32), _as(proto, np.int16), _as(ip_version, np.int8),
        _as(flags, np.int16), _as(seq, np.int64), flow_id, c2s,
    )  # fmt: skip
    return flow_id, c2s


def retransmissions(
    flow: np.ndarray,
    c2s: np.ndarray,
    proto: np.ndarray,
    original: np.ndarray | None,
    payload: np.ndarray,
    flags: np.ndarray,
    seq: np.ndarray,
) -> np.ndarray:
    """flows._retransmissions per packet; original: not another interface's copy."""
    out = np.empty(len(flow), bool)
    LIBRARY.retransmissions(
        len(flow), _flow_count(flow), _as(flow, np.int64), _as(c2s, bool), _as(proto, np.int16),
        _as(original, bool), _as(payload, np.int32), _as(flags, np.int16), _as(seq, np.int64),
        out,
    )  # fmt: skip
    return out


SUM_NAMES = [
    "first_packet", "packets", "packets_c2s", "bytes_c2s", "bytes_s2c", "payload_c2s",
    "payload_s2c", "retransmissions", "resets", "zero_windows",
]  # fmt: skip
TIME_NAMES = ["first_ts", "last_ts", "syn_ts", "synack_ts", "ack_ts"]


def flow_sums(
    flow: np.ndarray,
    c2s: np.ndarray,
    proto: np.ndarray,
    flags: np.ndarray,
    payload: np.ndarray,
    length: np.ndarray,
    window: np.ndarray,
    retransmission: np.ndarray,
    ts: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per flow id from 0 to the largest: the ``SUM_NAMES`` and ``TIME_NAMES`` arrays, and
    ``first_event`` (flows x EVENTS packet positions; len(flow) for an event never seen).
    An id no packet has gets packets == 0."""
    flows = _flow_count(flow)
    out = {name: np.empty(flows, np.int64) for name in SUM_NAMES}
    out |= {name: np.empty(flows, np.float64) for name in TIME_NAMES}
    out["first_event"] = np.empty((flows, EVENTS), np.int64)
    LIBRARY.flow_sums(
        len(flow), flows, _as(flow, np.int64), _as(c2s, bool), _as(proto, np.int16),
        _as(flags, np.int16), _as(payload, np.int32), _as(length, np.int32),
        _as(window, np.int32), _as(retransmission, bool), _as(ts, np.float64),
        *(out[name] for name in SUM_NAMES + TIME_NAMES + ["first_event"]),
    )  # fmt: skip
    return out


def history_order(first_event: np.ndarray, never: int) -> np.ndarray:
    """Each row's events in the order they first happened, then EVENTS (flows._history)."""
    order = np.empty(first_event.shape, np.int64)
    LIBRARY.history_order(len(first_event), never, _as(first_event, np.int64), order)
    return order


def _flow_count(flow: np.ndarray) -> int:
    return int(flow.max(initial=-1)) + 1
