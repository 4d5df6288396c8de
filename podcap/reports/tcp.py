"""The ``tcp`` report: one row per problem found on a connection, with a one-line hint.

The hints use the words of the troubleshooting guide (seed/troubleshooting-guide.en.md):
what the symptom means and the check the guide asks for next.
"""

from __future__ import annotations

import pandas as pd

from podcap.decode.times import as_datetime

PROBLEM_COLUMNS = [
    "flow_id", "problem", "client_ip", "client_port", "server_ip", "server_port", "count",
    "first_ts", "state", "hint",
]  # fmt: skip

HINTS = {
    "unanswered_syn": (
        "SYN sent, no SYN-ACK: dropped on the way (check the node security group allows the "
        "Pod CIDR and the peer node's VPC CIDR) or the server's node never got it; capture on "
        "the server's node to see where it stops"
    ),
    "refused": (
        "SYN answered by RST: the packet arrived but nothing listens on {server_ip}:{server_port} "
        "(check the listening ports with `netstat -tunlp` in the Pod's netns, and the Service's "
        "targetPort)"
    ),
    "reset_by_server": (
        "the server reset an established connection: the application aborted it, or a firewall "
        "or NAT on the way lost its state; capture inside the server Pod's netns to see which"
    ),
    "reset_by_client": (
        "the client reset an established connection: it gave up (timeout) or aborted; look at "
        "what it waited for just before"
    ),
    "retransmissions": (
        "segments were sent again: packets are lost on the way (check node-to-node reachability "
        "and that the security groups allow the Pod CIDR) or the peer answers late"
    ),
    "mtu_blackhole": (
        "segments of {smallest_lost} bytes from the {sender} were sent {count} times and "
        "never acknowledged, while every one acknowledged was at most {largest_passed} "
        "bytes: a path MTU black hole (an overlay's overhead: VXLAN 50 bytes, Geneve 50+, "
        "IP-in-IP 20; the ICMP 'fragmentation needed' dropped on the way); set the CNI's MTU "
        "below the path's, or let ICMP type 3 code 4 (ICMPv6 type 2) through"
    ),
    "reset_after_invalid": (
        "a packet from {stray_from} (the server's own address) reached {local} outside the "
        "connection's window and was answered with a reset that killed the connection: "
        "conntrack marked it INVALID and NAT did not rewrite it back; drop INVALID packets "
        "in FORWARD (kube-proxy 1.15+ does) or set net.netfilter.nf_conntrack_tcp_be_liberal=1 "
        "(`-r conntrack` tells more)"
    ),
    "zero_window": (
        "the receiver's buffer is full: the application at {receiver} is not reading fast "
        "enough; this is not a network drop"
    ),
}


def tcp_problems(
    flows: pd.DataFrame,
    black_holes: pd.DataFrame | None = None,
    invalid_resets: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Problem rows for a flow table (``podcap.flows.flow_table``); ``black_holes``: the
    MTU black holes among its flows (``podcap.flows.mtu``), ``invalid_resets`` the
    connections reset after a packet NAT skipped (``podcap.flows.invalid_resets``), when
    looked for."""
    tcp = flows[flows["proto"] == "tcp"]
    found = [
        _rows(tcp[tcp["state"] == "S0"], "unanswered_syn", tcp["packets_c2s"]),
        _rows(tcp[tcp["state"] == "REJ"], "refused", 1),
        _rows(tcp[tcp["state"] == "RSTR"], "reset_by_server", tcp["resets"]),
        _rows(tcp[tcp["state"] == "RSTO"], "reset_by_client", tcp["resets"]),
        # Repeated SYNs of an unanswered or refused connection are that problem, not this one.
        _rows(
            tcp[(tcp["retransmissions"] > 0) & ~tcp["state"].isin(["S0", "REJ"])],
            "retransmissions",
            tcp["retransmissions"],
        ),
        _rows(tcp[tcp["zero_windows"] > 0], "zero_window", tcp["zero_windows"]),
        _black_hole_rows(tcp, black_holes),
        _invalid_reset_rows(tcp, invalid_resets),
    ]
    table = pd.concat([f for f in found if not f.empty] or [_rows(tcp.iloc[:0], "", 0)])
    columns = (["file"] if "file" in flows else []) + PROBLEM_COLUMNS
    return table.sort_values(["flow_id", "problem"], kind="stable")[columns].reset_index(drop=True)


def _rows(flows: pd.DataFrame, problem: str, count) -> pd.DataFrame:
    rows = flows.copy()
    rows["problem"] = problem
    rows["count"] = count if isinstance(count, int) else count.reindex(rows.index)
    rows["hint"] = [
        HINTS.get(problem, "").format(
            server_ip=r.server_ip,
            server_port=r.server_port,
            receiver=_zero_window_receiver(r),
        )
        for r in rows.itertuples()
    ]
    return rows


def _black_hole_rows(tcp: pd.DataFrame, black_holes: pd.DataFrame | None) -> pd.DataFrame:
    if black_holes is None or black_holes.empty:
        return tcp.iloc[:0]
    rows = tcp.merge(black_holes, on="flow_id")
    rows["problem"], rows["count"] = "mtu_blackhole", rows["sendings"]
    rows["hint"] = [
        HINTS["mtu_blackhole"].format(
            smallest_lost=r.smallest_lost, largest_passed=r.largest_passed, count=r.sendings,
            sender=f"{'client' if r.sender_c2s else 'server'} "
            f"{r.client_ip if r.sender_c2s else r.server_ip}",
        ) + _icmp_said(r) + _headers_said(r)
        for r in rows.itertuples()
    ]  # fmt: skip
    return rows.drop(columns=list(black_holes.columns.drop("flow_id")))


def _invalid_reset_rows(tcp: pd.DataFrame, resets: pd.DataFrame | None) -> pd.DataFrame:
    if resets is None or resets.empty:
        return tcp.iloc[:0]
    rows = tcp.merge(resets, on="flow_id")
    rows["problem"], rows["count"] = "reset_after_invalid", 1
    rows["hint"] = [
        HINTS["reset_after_invalid"].format(stray_from=r.stray_from, local=r.local)
        for r in rows.itertuples()
    ]
    return rows.drop(columns=list(resets.columns.drop("flow_id")))


def _headers_said(row) -> str:
    """The MSS, DF, size and overlay of a black hole, when its headers were read."""
    from podcap.flows.mtu_headers import header_words

    if getattr(row, "mss_client", None) is None:
        return ""
    said = header_words(row.mss_client, row.mss_server, row.df, row.lost_packet_size, row.overlay)
    return f"; {said}" if said else ""


def _icmp_said(row) -> str:
    """What the ICMP errors seen here said about a black hole, when they were looked for."""
    errors = getattr(row, "mtu_errors", None)
    if errors is None:
        return ""
    if not errors:
        return "; no ICMP 'fragmentation needed' or 'packet too big' reached this capture point"
    return (f"; {errors} ICMP 'fragmentation needed' (next hop MTU {row.next_hop_mtu}) reached "
            "this point, yet the sender kept its size: they are lost after it, or ignored")  # fmt: skip


def _zero_window_receiver(flow) -> str:
    # The history's W/w letter says which side advertised the zero window.
    if "w" in str(getattr(flow, "history", "")):
        return f"the server {flow.server_ip}:{flow.server_port}"
    return f"the client {flow.client_ip}:{flow.client_port}"


def tcp_report(analysis) -> pd.DataFrame:
    return analysis.without_file_column(as_datetime(analysis.problems, "first_ts"))


GROUP_KEYS = ["problem", "server_ip", "server_port"]


def grouped_problems(problems: pd.DataFrame) -> pd.DataFrame:
    """The tcp report with repeated problems folded: one row per problem and server
    (``server_ip:server_port``), with how many connections had it, their count summed, and the
    first and last time; the hint of the first. For a terminal, where 500 refused connections
    to one port are one finding, not 500 rows."""
    if problems.empty:
        return problems
    keys = (["file"] if "file" in problems else []) + GROUP_KEYS
    by = problems.groupby(keys, sort=False, observed=True)
    grouped = by.agg(
        connections=("problem", "size"),
        count=("count", "sum"),
        first_ts=("first_ts", "min"),
        last_ts=("first_ts", "max"),
        clients=("client_ip", "nunique"),
        hint=("hint", "first"),
    ).reset_index()
    # The widest problems first; ties in order of first appearance.
    grouped = grouped.sort_values("first_ts", kind="stable")
    grouped = grouped.sort_values("connections", ascending=False, kind="stable")
    grouped = grouped.reset_index(drop=True)
    grouped.attrs["folded_from"] = len(problems)  # for the table's caption
    return grouped
