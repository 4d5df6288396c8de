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

from podcap.flows.assign import assign_flows, first_of_code, interface_copies, zero_window
from podcap.flows.groups import (
    ACK,
    COPY_WINDOW,
    FIN,
    FLOW_COLUMNS,
    PROTO_NAMES,
    RST,
    SEQ_SPACE,
    SLL,
    SLL2,
    SYN,
    TCP,
    UDP,
    Groups,
    proto_names,
)  # fmt: skip
from podcap.flows.table import flow_table

__all__ = [
    "ACK", "COPY_WINDOW", "FIN", "FLOW_COLUMNS", "PROTO_NAMES", "RST", "SEQ_SPACE", "SLL",
    "SLL2", "SYN", "TCP", "UDP", "Groups", "assign_flows", "first_of_code", "flow_table",
    "interface_copies", "proto_names", "zero_window",
]  # fmt: skip
