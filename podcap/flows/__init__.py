"""The flows stage: which packets belong together, and what happened to each connection.

``assign_flows(packets)`` adds four per-packet columns: ``flow_id``, ``c2s`` (sent by the
client), ``retransmission`` and ``dup_of_frame`` (the frame this packet is another
interface's copy of, ``tcpdump -i any``; -1 for an original). ``flow_table(packets)`` gives
one row per flow.

TCP streams split as Wireshark's ``tcp.stream`` splits them: a pure SYN whose sequence number
differs from the first one seen in its direction starts a new stream (port reuse). UDP and
other protocols have one flow per address/port pair, without idle time-outs. States and
history letters follow Zeek's conn.log.

The modules: ``assign`` (the per-packet columns) and ``table`` (the flow table, Zeek's states
and history spelling) call the passes over every packet through one seam, ``backend``: the C
extension (``compiled`` over ``_flowpass.c``, ``flowpass_packets.c``, ``flowpass_sums.c``)
when it was built, else the numpy code (``numpy_packets``, ``numpy_sums``), which is also the
reference the tests hold the C to. What both share is in ``groups`` (address codes, first
positions, zero windows) and ``sums`` (the per-flow record, the history events).
"""

from podcap.decode.schema import ACK, FIN, PROTO_NAMES, RST, SYN, TCP, UDP
from podcap.flows.assign import assign_flows, interface_copies
from podcap.flows.groups import (
    COPY_WINDOW,
    SEQ_SPACE,
    Groups,
    first_of_code,
    proto_names,
    zero_window,
)
from podcap.flows.table import FLOW_COLUMNS, flow_table
from podcap.pcapfile import LINUX_SLL as SLL
from podcap.pcapfile import LINUX_SLL2 as SLL2

__all__ = [
    "ACK", "COPY_WINDOW", "FIN", "FLOW_COLUMNS", "PROTO_NAMES", "RST", "SEQ_SPACE", "SLL",
    "SLL2", "SYN", "TCP", "UDP", "Groups", "assign_flows", "first_of_code", "flow_table",
    "interface_copies", "proto_names", "zero_window",
]  # fmt: skip
