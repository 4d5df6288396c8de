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

Seen in a capture in the client Pod: a flow without a handshake whose first packet comes
from an address the client never connected to, answered by a reset from an address and port
that a live connection of the same capture is using. Seen past the Service's NAT (the client
node's NIC), where the connection already has the backend's address: inside the connection, a
server segment far outside its sequence space answered at once by the client's reset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.schema import RST, SYN, TCP

INVALID_RESET_COLUMNS = ["flow_id", "stray_flow_id", "local", "stray_from", "peer", "stray_ts"]
# How long after its last packet a connection still counts as live (its late packets).
LIVE_AFTER_S = 2.0
# A server segment this far from where its bytes were (either way) is outside any window.
FAR_OUT = 1 << 20
SEQ_SPACE = 1 << 32


def resets_after_invalid(packets: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """One row per connection hit (columns INVALID_RESET_COLUMNS): the connection's flow,
    the stray packet's flow, the local end that reset it, who sent the stray packet, the
    connection's own peer and when the stray packet came."""
    stray_ids, reset_ids = _stray_candidates(packets)
    tcp = flows[flows["proto"] == "tcp"]
    rows = []
    for stray_id in stray_ids:
        stray = packets[packets["flow_id"] == stray_id].sort_values("ts", kind="stable")
        found = _victim(stray, tcp)
        if found is not None:
            rows.append(found)
    for flow_id in reset_ids:
        found = _reset_inside(packets[packets["flow_id"] == flow_id].sort_values("ts"))
        if found is not None:
            rows.append(found)
    return pd.DataFrame(rows, columns=INVALID_RESET_COLUMNS)


def _stray_candidates(packets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Flows with a reset and without a SYN (no handshake was ever seen), and flows with a
    handshake and a reset from their client."""
    tcp = packets.loc[
        (packets["ip_proto"] == TCP) & (packets["flow_id"] >= 0), ["flow_id", "tcp_flags", "c2s"]
    ]
    flags = tcp["tcp_flags"].to_numpy()
    rst = (flags & RST) != 0
    by_flow = pd.DataFrame({
        "flow_id": tcp["flow_id"].to_numpy(), "syn": (flags & SYN) != 0, "rst": rst,
        "client_rst": rst & tcp["c2s"].to_numpy().astype(bool),
    }).groupby("flow_id").any()  # fmt: skip
    strays = by_flow.index[by_flow["rst"] & ~by_flow["syn"]].to_numpy()
    return strays, by_flow.index[by_flow["client_rst"] & by_flow["syn"]].to_numpy()


def _reset_inside(flow: pd.DataFrame) -> dict | None:
    """A server segment far outside where the server's bytes were, answered by the client's
    reset carrying its acknowledgement number (what a host does for a segment of no
    connection it knows): the INVALID packet past the Service's NAT."""
    c2s = flow["c2s"].to_numpy().astype(bool)
    flags, seq = flow["tcp_flags"].to_numpy(), flow["tcp_seq"].to_numpy().astype(np.int64)
    ack, length = flow["tcp_ack"].to_numpy().astype(np.int64), flow["payload_len"].to_numpy()
    server = np.flatnonzero(~c2s)
    for at in np.flatnonzero(c2s & ((flags & RST) != 0)):
        before = server[server < at]
        if len(before) < 2 or seq[at] != ack[before[-1]]:
            continue
        stray, earlier = before[-1], before[:-1]
        reached = (seq[earlier] + length[earlier] + ((flags[earlier] & SYN) != 0)) % SEQ_SPACE
        gap = (seq[stray] - reached[-1]) % SEQ_SPACE
        if FAR_OUT <= gap <= SEQ_SPACE - FAR_OUT:
            row = flow.iloc[stray]
            local, sender = (
                (str(row["dst"]), int(row["dport"])),
                (str(row["src"]), int(row["sport"])),
            )
            return {"flow_id": int(row["flow_id"]), "stray_flow_id": int(row["flow_id"]),
                    "local": _end(local), "stray_from": _end(sender), "peer": _end(sender),
                    "stray_ts": float(row["ts"])}  # fmt: skip
    return None


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
