"""Resets that follow a packet conntrack marked INVALID: the Service connection killed by a
packet NAT did not undo.

A client talks to a Service IP; the node's conntrack rewrites the server's packets back to
that IP. One of the server's packets falls outside the TCP window conntrack tracks (a late
retransmission, a window probe after a loss): conntrack marks it INVALID, NAT skips it, and
the packet reaches the client from the server's real address. The client has no connection
with that address, so it answers with a reset; the reset reaches the server, whose socket
accepts it (it carries the expected sequence number), and the Service connection is dead.
Where no rule drops INVALID packets (kube-proxy adds one since 1.15) or conntrack is not
liberal about windows, this is what "connection reset by peer" at random means.

Seen in a capture on the client's side: a flow without a handshake whose first packet comes
from an address the client never connected to, answered by a reset from an address and port
that a live connection of the same capture is using.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.schema import RST, SYN, TCP

INVALID_RESET_COLUMNS = ["flow_id", "stray_flow_id", "local", "stray_from", "peer", "stray_ts"]
# How long after its last packet a connection still counts as live (its late packets).
LIVE_AFTER_S = 2.0


def resets_after_invalid(packets: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """One row per connection hit (columns INVALID_RESET_COLUMNS): the connection's flow,
    the stray packet's flow, the local end that reset it, who sent the stray packet, the
    connection's own peer and when the stray packet came."""
    stray_ids = _stray_candidates(packets)
    if not len(stray_ids):
        return pd.DataFrame(columns=INVALID_RESET_COLUMNS)
    tcp = flows[flows["proto"] == "tcp"]
    rows = []
    for stray_id in stray_ids:
        stray = packets[packets["flow_id"] == stray_id].sort_values("ts", kind="stable")
        found = _victim(stray, tcp)
        if found is not None:
            rows.append(found)
    return pd.DataFrame(rows, columns=INVALID_RESET_COLUMNS)


def _stray_candidates(packets: pd.DataFrame) -> np.ndarray:
    """Flows with a reset and without a SYN: no handshake was ever seen."""
    tcp = packets.loc[
        (packets["ip_proto"] == TCP) & (packets["flow_id"] >= 0), ["flow_id", "tcp_flags"]
    ]
    flags = tcp["tcp_flags"].to_numpy()
    by_flow = pd.DataFrame({
        "flow_id": tcp["flow_id"].to_numpy(),
        "syn": (flags & SYN) != 0,
        "rst": (flags & RST) != 0,
    }).groupby("flow_id").any()  # fmt: skip
    return by_flow.index[by_flow["rst"] & ~by_flow["syn"]].to_numpy()


def _victim(stray: pd.DataFrame, tcp_flows: pd.DataFrame) -> dict | None:
    first = stray.iloc[0]
    if first["tcp_flags"] & RST:
        return None  # a reset first is an answer to something we did not see, not this
    sender = (str(first["src"]), int(first["sport"]))
    local = (str(first["dst"]), int(first["dport"]))
    resets = stray[
        ((stray["tcp_flags"] & RST) != 0)
        & (stray["src"].astype(str) == local[0])
        & (stray["sport"] == local[1])
    ]
    if resets.empty:
        return None
    same_file = tcp_flows
    if "file" in stray and "file" in tcp_flows:
        same_file = tcp_flows[tcp_flows["file"] == first["file"]]
    at = float(first["ts"])
    for flow in same_file.itertuples():
        ends = {(str(flow.client_ip), int(flow.client_port)),
                (str(flow.server_ip), int(flow.server_port))}  # fmt: skip
        if flow.flow_id == first["flow_id"] or local not in ends or sender in ends:
            continue
        if not flow.first_ts <= at <= flow.last_ts + LIVE_AFTER_S:
            continue
        if "S" not in str(flow.history):
            continue  # its own handshake seen: a connection the client really made
        (peer,) = ends - {local}
        return {
            "flow_id": int(flow.flow_id), "stray_flow_id": int(first["flow_id"]),
            "local": _end(local), "stray_from": _end(sender), "peer": _end(peer),
            "stray_ts": at,
        }  # fmt: skip
    return None


def _end(end: tuple[str, int]) -> str:
    address, port = end
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
