"""ICMP and ICMPv6 errors, each tied to the connection it quotes (the ``icmp`` report's rows).

An error carries the start of the packet that caused it; its addresses and ports name the
connection ("host unreachable from 10.0.0.1" lands on the flow it killed). A "fragmentation
needed" (ICMP 3/4) or "packet too big" (ICMPv6 2) also says the next hop's MTU: the size the
sender must fit, and what a path MTU black hole lacks when a firewall drops these. The bytes
are read again from the capture file (``podcap.decode.reread``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.reread import reopen
from podcap.decode.schema import ICMP, ICMPV6
from podcap.path.datagrams import quoted_header

ICMP_COLUMNS = [
    "file", "frame", "ts", "sender", "to", "error", "code", "next_hop_mtu", "quoted_proto",
    "quoted_src", "quoted_sport", "quoted_dst", "quoted_dport", "flow_id", "explanation",
]  # fmt: skip
# (protocol, type) -> name; the errors, not the echoes and other messages
ERRORS = {
    (ICMP, 3): "unreachable", (ICMP, 4): "source_quench", (ICMP, 5): "redirect",
    (ICMP, 11): "time_exceeded", (ICMP, 12): "parameter_problem",
    (ICMPV6, 1): "unreachable", (ICMPV6, 2): "packet_too_big", (ICMPV6, 3): "time_exceeded",
    (ICMPV6, 4): "parameter_problem",
}  # fmt: skip
UNREACHABLE_CODES = {
    ICMP: {0: "network", 1: "host", 2: "protocol", 3: "port", 4: "fragmentation needed",
           9: "network prohibited", 10: "host prohibited", 13: "administratively prohibited"},
    ICMPV6: {0: "no route", 1: "administratively prohibited", 3: "address", 4: "port"},
}  # fmt: skip
QUOTE_BYTES = 64


def icmp_errors(packets: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """ICMP errors of ``packets`` (with the flow columns), each with the connection of
    ``flows`` it quotes."""
    proto, kind = packets["ip_proto"].to_numpy(), packets["icmp_type"].to_numpy()
    is_error = np.zeros(len(packets), bool)
    for error_proto, error_type in ERRORS:
        is_error |= (proto == error_proto) & (kind == error_type)
    rows = np.flatnonzero(is_error & (packets["file_off"].to_numpy() >= 0))
    found = [_error_row(packets, row, heads) for row, heads in _heads(packets, rows)]
    table = pd.DataFrame(found, columns=ICMP_COLUMNS[:-2])
    table["flow_id"] = _quoted_flows(table, flows)
    table["explanation"] = [_explain(r) for r in table.itertuples()]
    return table[ICMP_COLUMNS]


def _heads(packets: pd.DataFrame, rows: np.ndarray):
    """(row, (ICMP header, quoted bytes)) for each error, read again from its file."""
    files = (
        packets["file"].astype(str).to_numpy() if "file" in packets else np.full(len(packets), "")
    )
    for path in dict.fromkeys(files[rows]):
        mine = rows[files[rows] == path]
        with reopen(path or None) as source:
            if source is None:
                continue
            view = source.view()
            at = packets["file_off"].to_numpy()[mine] + packets["payload_off"].to_numpy()[mine]
            headers, quoted = view.rows(at - 8, 8), view.rows(at, QUOTE_BYTES)
            yield from zip(mine.tolist(), zip(headers, quoted, strict=True), strict=True)


def _error_row(packets: pd.DataFrame, row: int, heads) -> list:
    header, quoted = heads
    proto, kind = int(packets["ip_proto"].iat[row]), int(packets["icmp_type"].iat[row])
    code = int(header[1])
    if (proto, kind, code) == (ICMP, 3, 4):
        mtu = int.from_bytes(bytes(header[6:8]))
    elif (proto, kind) == (ICMPV6, 2):
        mtu = int.from_bytes(bytes(header[4:8]))
    else:
        mtu = -1
    q = quoted_header(bytes(quoted)) or ("", "", -1, "", -1)
    return [
        packets["file"].iat[row] if "file" in packets else "", int(packets["frame"].iat[row]),
        packets["ts"].iat[row], str(packets["src"].iat[row]), str(packets["dst"].iat[row]),
        ERRORS[(proto, kind)], code, mtu, *q,
    ]  # fmt: skip


def _quoted_flows(table: pd.DataFrame, flows: pd.DataFrame) -> list:
    """The flow each error quotes (either way round), or <NA>."""
    keys = {}
    for f in flows.itertuples():
        file = getattr(f, "file", "")
        a, b = (f.client_ip, f.client_port), (f.server_ip, f.server_port)
        keys[(str(file), f.proto, *a, *b)] = keys[(str(file), f.proto, *b, *a)] = f.flow_id
    return pd.array(
        [keys.get((str(r.file), r.quoted_proto, r.quoted_src, r.quoted_sport, r.quoted_dst,
                   r.quoted_dport)) for r in table.itertuples()],
        dtype="Int64",
    )  # fmt: skip


def _explain(r) -> str:
    what = f"{r.sender} says {r.error.replace('_', ' ')}"
    if r.error == "unreachable":
        reason = UNREACHABLE_CODES[ICMP if "." in r.sender else ICMPV6].get(
            r.code, f"code {r.code}"
        )
        what = f"{r.sender} says {reason} unreachable"
    if r.next_hop_mtu >= 0:
        what += f": packets must fit in {r.next_hop_mtu} bytes (the sender lowers its path MTU)"
    if r.quoted_proto:
        what += (f", about {r.quoted_proto} {r.quoted_src}:{r.quoted_sport} -> "
                 f"{r.quoted_dst}:{r.quoted_dport}")  # fmt: skip
    return what
