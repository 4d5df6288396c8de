"""The Wireshark fields podcap evaluates natively, mapped onto packet-table columns.

A field gives zero or more *occurrences* per packet, as Wireshark does: ``ip.addr`` is both
``ip.src`` and ``ip.dst``, and of an encapsulated packet also the outer (node) addresses,
because Wireshark dissects both IP headers. Each occurrence is ``(values, present)``: two
arrays over the packets.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from podcap.decode.schema import ACK, FIN, ICMP, ICMPV6, PSH, RST, SYN, TCP, UDP, URG
from podcap.dfilter.lexer import NotNative

if TYPE_CHECKING:
    import pandas as pd

# Overlays carried in UDP: their outer UDP header is not in the packet table.
UDP_OVERLAYS = ("vxlan", "geneve")
FLAG_BITS = {"fin": FIN, "syn": SYN, "reset": RST, "push": PSH, "ack": ACK, "urg": URG}

Occurrence = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Field:
    kind: str  # "ipv4", "ipv6", "int", "str", "proto"
    occurrences: Callable[[pd.DataFrame], list[Occurrence]]


def _inner_addr(column: str, version: int) -> Callable[[pd.DataFrame], Occurrence]:
    def get(p: pd.DataFrame) -> Occurrence:
        return p[column].to_numpy(), (p["ip_version"] == version).to_numpy()

    return get


def _outer_addr(column: str, version: int) -> Callable[[pd.DataFrame], Occurrence]:
    def get(p: pd.DataFrame) -> Occurrence:
        values = p[column]
        has_colon = values.str.contains(":", regex=False)
        present = (values != "") & (has_colon if version == 6 else ~has_colon)
        return values.to_numpy(), present.to_numpy()

    return get


def _addr(version: int, *sides: str) -> Field:
    getters = [_inner_addr(s, version) for s in sides]
    getters += [_outer_addr(f"outer_{s}", version) for s in sides]
    return Field(f"ipv{version}", lambda p: [g(p) for g in getters])


def _is_proto(p: pd.DataFrame, number: int) -> np.ndarray:
    return (p["ip_proto"] == number).to_numpy()


def _port(proto: int, *columns: str) -> Field:
    def get(p: pd.DataFrame) -> list[Occurrence]:
        if proto == UDP and p["encap"].isin(UDP_OVERLAYS).any():
            # Wireshark also matches the outer UDP ports of VXLAN/Geneve, which podcap
            # does not keep: tshark answers for this file.
            raise NotNative("udp ports of an overlay's outer header")
        present = _is_proto(p, proto)
        return [(p[c].to_numpy(), present) for c in columns]

    return Field("int", get)


def _flag(bit: int) -> Field:
    def get(p: pd.DataFrame) -> list[Occurrence]:
        values = (p["tcp_flags"].to_numpy() & bit) != 0
        return [(values.astype(np.int64), _is_proto(p, TCP))]

    return Field("int", get)


def _http(column: str, missing: object) -> Field:
    def get(p: pd.DataFrame) -> list[Occurrence]:
        if "flow_id" not in p:  # no connections followed: as the decoder saw each segment
            present = (p[column] != missing).to_numpy()
            if "retransmission" in p:
                present &= ~p["retransmission"].to_numpy()
            return [(p[column].to_numpy(), present)]
        return on_completing_segments(len(p), http_messages(p), HTTP_FIELDS[column], missing)

    return Field("str" if missing == "" else "int", get)


# The packet table's HTTP columns and the message table's (``podcap.flows.messages``).
HTTP_FIELDS = {"http_method": "method", "http_uri": "uri", "http_host": "host",
               "http_status": "status"}  # fmt: skip
_LAST_WALK: list = [None, None]  # (a weak reference to packets, their message table)


def http_messages(p: pd.DataFrame) -> pd.DataFrame:
    """The message table of ``p``: the HTTP fields of one filter read the same walk."""
    from podcap.flows.messages import message_table

    seen, table = _LAST_WALK
    if seen is None or seen() is not p:
        table = message_table(p)
        _LAST_WALK[:] = [weakref.ref(p), table]
    return table


def on_completing_segments(n: int, messages: pd.DataFrame, name: str, missing) -> list[Occurrence]:
    """A message field on the segment completing its message, where Wireshark's reassembly
    shows it: one occurrence per message completed there (pipelined requests end together)."""
    shown = messages[(messages[name] != missing) & (messages["end_row"] >= 0)]
    rows = shown["end_row"].to_numpy()
    nth = shown.groupby("end_row").cumcount().to_numpy()
    values = shown[name].to_numpy()
    occurrences = []
    for k in range(int(nth.max()) + 1 if len(nth) else 1):
        at = nth == k
        column = np.full(n, missing, dtype=object if missing == "" else np.int64)
        present = np.zeros(n, bool)
        column[rows[at]], present[rows[at]] = values[at], True
        occurrences.append((column, present))
    return occurrences


def _column(column: str, proto: int | None = None) -> Field:
    def get(p: pd.DataFrame) -> list[Occurrence]:
        present = np.ones(len(p), bool) if proto is None else _is_proto(p, proto)
        return [(p[column].to_numpy(), present)]

    return Field("int", get)


def _protocol(test: Callable[[pd.DataFrame], np.ndarray]) -> Field:
    return Field("proto", lambda p: [(np.zeros(len(p)), test(p))])


def _udp_present(p: pd.DataFrame) -> np.ndarray:
    return _is_proto(p, UDP) | p["encap"].isin(UDP_OVERLAYS).to_numpy()


def _ipv4_present(p: pd.DataFrame) -> np.ndarray:
    return np.logical_or.reduce([present for _, present in FIELDS["ip.addr"].occurrences(p)])


def _ipv6_present(p: pd.DataFrame) -> np.ndarray:
    return np.logical_or.reduce([present for _, present in FIELDS["ipv6.addr"].occurrences(p)])


FIELDS: dict[str, Field] = {
    "ip.addr": _addr(4, "src", "dst"),
    "ip.src": _addr(4, "src"),
    "ip.dst": _addr(4, "dst"),
    "ipv6.addr": _addr(6, "src", "dst"),
    "ipv6.src": _addr(6, "src"),
    "ipv6.dst": _addr(6, "dst"),
    "tcp.port": _port(TCP, "sport", "dport"),
    "tcp.srcport": _port(TCP, "sport"),
    "tcp.dstport": _port(TCP, "dport"),
    "udp.port": _port(UDP, "sport", "dport"),
    "udp.srcport": _port(UDP, "sport"),
    "udp.dstport": _port(UDP, "dport"),
    "tcp.len": _column("payload_len", TCP),
    "frame.number": _column("frame"),
    "frame.len": _column("length"),
    "http.request.method": _http("http_method", ""),
    "http.request.uri": _http("http_uri", ""),
    "http.host": _http("http_host", ""),
    "http.response.code": _http("http_status", -1),
    "tcp": _protocol(lambda p: _is_proto(p, TCP)),
    "udp": _protocol(_udp_present),
    "icmp": _protocol(lambda p: _is_proto(p, ICMP)),
    "icmpv6": _protocol(lambda p: _is_proto(p, ICMPV6)),
    "ip": _protocol(_ipv4_present),
    "ipv6": _protocol(_ipv6_present),
    **{f"tcp.flags.{name}": _flag(bit) for name, bit in FLAG_BITS.items()},
}
