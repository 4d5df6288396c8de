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
    connection's own peer and when the stray packet came. The candidates are found with
    numpy over every TCP packet at once; Python looks only at the few that fit."""
    tcp = _tcp_in_flow_order(packets)
    rows = [_inside_row(tcp.iloc[at]) for at in _resets_inside(tcp)]
    firsts = _stray_firsts(tcp)
    ends = _ends_of(flows, tcp["dport"].to_numpy()[firsts]) if len(firsts) else {}
    for at in firsts:
        found = _victim(tcp.iloc[at], ends)
        if found is not None:
            rows.append(found)
    return pd.DataFrame(rows, columns=INVALID_RESET_COLUMNS)


def _tcp_in_flow_order(packets: pd.DataFrame) -> pd.DataFrame:
    columns = ["file", "flow_id", "ts", "c2s", "tcp_flags", "tcp_seq", "tcp_ack", "payload_len",
               "src", "dst", "sport", "dport"]  # fmt: skip
    keep = (packets["ip_proto"] == TCP) & (packets["flow_id"] >= 0)
    tcp = packets.loc[keep, [c for c in columns if c in packets]]
    order = np.lexsort((tcp["ts"].to_numpy(), tcp["flow_id"].to_numpy()))
    return tcp.take(order).reset_index(drop=True)


def _resets_inside(tcp: pd.DataFrame) -> np.ndarray:
    """Rows of server segments far outside where the server's bytes were, answered at once
    by the client's reset carrying their acknowledgement number (what a host does for a
    segment of no connection it knows): the INVALID packet past the Service's NAT."""
    flow, c2s = tcp["flow_id"].to_numpy(), tcp["c2s"].to_numpy().astype(bool)
    flags, seq = tcp["tcp_flags"].to_numpy(), tcp["tcp_seq"].to_numpy().astype(np.int64)
    ack, length = tcp["tcp_ack"].to_numpy().astype(np.int64), tcp["payload_len"].to_numpy()
    n = len(tcp)
    reset = np.flatnonzero(c2s & ((flags & RST) != 0))
    reset = reset[reset >= 2]
    stray = reset - 1  # the server segment just before the reset, in the same flow
    fits = (flow[stray] == flow[reset]) & ~c2s[stray] & (seq[reset] == ack[stray])
    stray = stray[fits]
    # The server's segment before that one, in the same flow: where its bytes had reached.
    last_server = np.maximum.accumulate(np.where(~c2s, np.arange(n), -1))
    earlier = last_server[np.maximum(stray - 1, 0)]
    stray, earlier = stray[earlier >= 0], earlier[earlier >= 0]
    stray, earlier = stray[flow[earlier] == flow[stray]], earlier[flow[earlier] == flow[stray]]
    reached = seq[earlier] + length[earlier] + ((flags[earlier] & SYN) != 0)
    gap = (seq[stray] - reached) % SEQ_SPACE
    return stray[(gap >= FAR_OUT) & (gap <= SEQ_SPACE - FAR_OUT)]


def _inside_row(row) -> dict:
    local, sender = (
        _end((str(row["dst"]), int(row["dport"]))),
        _end((str(row["src"]), int(row["sport"]))),
    )
    return {"flow_id": int(row["flow_id"]), "stray_flow_id": int(row["flow_id"]), "local": local,
            "stray_from": sender, "peer": sender, "stray_ts": float(row["ts"])}  # fmt: skip


def _stray_firsts(tcp: pd.DataFrame) -> np.ndarray:
    """The first row of each flow with no SYN, not itself a reset, and later reset by the
    end it was sent to."""
    flow, flags = tcp["flow_id"].to_numpy(), tcp["tcp_flags"].to_numpy()
    if not len(flow):
        return np.zeros(0, np.int64)
    c2s = tcp["c2s"].to_numpy().astype(bool)
    starts = np.flatnonzero(np.r_[True, flow[1:] != flow[:-1]])
    answering = c2s != np.repeat(c2s[starts], np.diff(np.r_[starts, len(flow)]))
    syn = np.logical_or.reduceat((flags & SYN) != 0, starts)
    rst = np.logical_or.reduceat(((flags & RST) != 0) & answering, starts)  # from the other end
    first = starts[~syn & rst]
    return first[(flags[first] & RST) == 0]  # a reset first answers what we did not see


def _ends_of(flows: pd.DataFrame, ports: np.ndarray) -> dict[tuple, list]:
    """TCP flows with a handshake of their own and a client port among ``ports``, by (file,
    client address, client port): a stray packet reaches a client's own port, which only
    its connection uses (a server's port is every connection's)."""
    on_port = np.isin(flows["client_port"].to_numpy(), ports)
    tcp = flows[on_port & (flows["proto"] == "tcp").to_numpy()]
    tcp = tcp[tcp["history"].astype(str).str.contains("S")]
    files = tcp["file"].astype(str) if "file" in tcp else pd.Series("", index=tcp.index)
    ends: dict[tuple, list] = {}
    for file, flow in zip(files, tcp.itertuples(), strict=True):
        ends.setdefault((file, str(flow.client_ip), int(flow.client_port)), []).append(flow)
    return ends


def _victim(first, ends: dict) -> dict | None:
    """The live connection whose client end ``first`` (the first packet of a flow without a
    handshake) reached from another address than its server's."""
    sender = (str(first["src"]), int(first["sport"]))
    local = (str(first["dst"]), int(first["dport"]))
    file = str(first["file"]) if "file" in first else ""
    at = float(first["ts"])
    for flow in ends.get((file, *local), []):
        peer = (str(flow.server_ip), int(flow.server_port))
        if flow.flow_id == first["flow_id"] or peer == sender:
            continue
        if flow.first_ts <= at <= flow.last_ts + LIVE_AFTER_S:
            return {
                "flow_id": int(flow.flow_id), "stray_flow_id": int(first["flow_id"]),
                "local": _end(local), "stray_from": _end(sender), "peer": _end(peer),
                "stray_ts": at,
            }  # fmt: skip
    return None


def _end(end: tuple[str, int]) -> str:
    address, port = end
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
