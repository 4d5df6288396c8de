"""The per-chunk column arrays the protocol layers fill in place, one array per column."""

import numpy as np

from podcap.decode.schema import PACKET_COLUMNS
from podcap.decode.strings import Interner

# The packet-table columns the layers fill, with the schema's dtype and sentinel (text columns
# as int32 codes into the Interner, 0 being ""). The inner ones are the headers after any overlay.
INNER_COLUMNS = ("ip_version", "src", "dst", "ip_proto", "ip_id", "ttl", "sport", "dport",
                 "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win", "tcp_tsval", "icmp_type",
                 "icmp_id", "payload_len")  # fmt: skip
OVERLAY_COLUMNS = ("encap", "outer_src", "outer_dst")
EXTRA_COLUMNS = {
    "payload_start": (np.int64, -1),  # absolute offset of the payload in the chunk
    "payload_end": (np.int64, -1),  # absolute end of the *captured* payload
    # Absolute offset of the TCP/UDP header: Wireshark's `tcp contains` and `udp contains`
    # search the header bytes too, so the needle scan starts here.
    "l4_start": (np.int64, -1),
    # Linux cooked captures (tcpdump -i any) say which interface saw the packet: SLL2 its
    # ifindex, SLL1 only the packet type (to us, outgoing...). -1 on other link types.
    "if_index": (np.int32, -1),
    "pkt_type": (np.int16, -1),
}


def _layer_columns() -> dict[str, tuple[object, int]]:
    columns = {}
    for name in INNER_COLUMNS + OVERLAY_COLUMNS:
        dtype, sentinel, _ = PACKET_COLUMNS[name]
        columns[name] = (np.int32, 0) if dtype == "str" else (np.dtype(dtype), sentinel)
    return columns | EXTRA_COLUMNS


LAYER_COLUMNS = _layer_columns()
# What an outer header wrote and its payload's own headers must not inherit.
RESET_ON_INNER = INNER_COLUMNS + ("payload_start", "payload_end", "l4_start")


class Columns:
    """Per-packet column arrays of one chunk, filled in place by the layer functions."""

    def __init__(self, n: int, interner: Interner):
        self.strings = interner
        for name, (dtype, sentinel) in LAYER_COLUMNS.items():
            setattr(self, name, np.full(n, sentinel, dtype))

    def reset_inner(self, idx: np.ndarray) -> None:
        """Forget what the outer headers wrote before their payload is decoded as a packet."""
        for name in RESET_ON_INNER:
            getattr(self, name)[idx] = LAYER_COLUMNS[name][1]
