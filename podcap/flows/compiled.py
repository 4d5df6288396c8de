"""The flows report's per-packet passes in C (``_flowpass.c``), called through ctypes.

``podcap.flows`` computes flow ids, client sides, retransmissions and per-flow sums
with numpy: a dozen passes and sorts over every packet. The C functions do each in one loop,
which takes the flows step from about 0.65 s to 0.1 s for a million packets. The build
compiles them when a C compiler is there (``setup.py``); without it, or with
``PODCAP_FLOWPASS=0`` in the environment, ``LIBRARY`` is None and flows.py uses numpy. The
tests check that both give the same reports.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

EVENTS = 16  # history events per flow: flows.EVENTS

# name: argument types (p: an array, i: an integer), result type
_SIGNATURES = {
    "podcap_assign_flows": ("i" + "p" * 11, ctypes.c_int64),
    "podcap_retransmissions": ("ii" + "p" * 8, ctypes.c_int64),
    "podcap_flow_sums": ("ii" + "p" * 25, None),
    "podcap_history_order": ("iipp", None),
}


def _load() -> ctypes.CDLL | None:
    if os.environ.get("PODCAP_FLOWPASS", "1") == "0":
        return None
    try:
        from podcap.flows import _flowpass
    except ImportError:  # built without a C compiler
        return None
    try:
        library = ctypes.CDLL(_flowpass.__file__)
        kinds = {"i": ctypes.c_int64, "p": ctypes.c_void_p}
        for name, (arguments, result) in _SIGNATURES.items():
            function = getattr(library, name)
            function.argtypes = [kinds[kind] for kind in arguments]
            function.restype = result
    except (OSError, AttributeError):  # a platform whose loader hides the functions (Windows)
        return None
    return library


LIBRARY = _load()


class _Pointers:
    """Arrays as C pointers, converted to the dtype C reads, and kept alive until the call."""

    def __init__(self):
        self._kept: list[np.ndarray] = []

    def __call__(self, array: np.ndarray | None, dtype) -> int | None:
        if array is None:
            return None
        converted = np.ascontiguousarray(array, dtype=dtype)
        self._kept.append(converted)
        return converted.ctypes.data


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
    p = _Pointers()
    flows = LIBRARY.podcap_assign_flows(
        n, p(file, np.int64), p(src, np.int64), p(dst, np.int64), p(sport, np.int32),
        p(dport, np.int32), p(proto, np.int16), p(ip_version, np.int8), p(flags, np.int16),
        p(seq, np.int64), p(flow_id, np.int64), p(c2s, bool),
    )  # fmt: skip
    _check(flows)
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
    p = _Pointers()
    status = LIBRARY.podcap_retransmissions(
        len(flow), _flow_count(flow), p(flow, np.int64), p(c2s, bool), p(proto, np.int16),
        p(original, bool), p(payload, np.int32), p(flags, np.int16), p(seq, np.int64),
        p(out, bool),
    )  # fmt: skip
    _check(status)
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
    p = _Pointers()
    LIBRARY.podcap_flow_sums(
        len(flow), flows, p(flow, np.int64), p(c2s, bool), p(proto, np.int16),
        p(flags, np.int16), p(payload, np.int32), p(length, np.int32), p(window, np.int32),
        p(retransmission, bool), p(ts, np.float64),
        *(out[name].ctypes.data for name in SUM_NAMES + TIME_NAMES + ["first_event"]),
    )  # fmt: skip
    return out


def history_order(first_event: np.ndarray, never: int) -> np.ndarray:
    """Each row's events in the order they first happened, then EVENTS (flows._history)."""
    order = np.empty(first_event.shape, np.int64)
    p = _Pointers()
    LIBRARY.podcap_history_order(
        len(first_event), never, p(first_event, np.int64), p(order, np.int64)
    )
    return order


def _flow_count(flow: np.ndarray) -> int:
    return int(flow.max(initial=-1)) + 1


def _check(status: int) -> None:
    if status < 0:
        raise MemoryError("podcap's flow pass ran out of memory")
