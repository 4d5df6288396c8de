"""The ``ladder`` report: each connection's packets down the rows, the capture points across,
an arrow where a point saw the packet and a cross where it did not (blank: the point is not on
its way, another Pod's or host's): where a row's arrows stop is where that packet was lost. The html page shows it as the path's ladder.

A packet is the same at every point by what NAT leaves alone: its direction, TCP flags,
sequence and acknowledgement numbers and payload length; a datagram's (UDP, ping), its payload. A cell holds the arrow and the time
in milliseconds since that point saw the connection's first packet (each point's own clock:
clocks of different nodes need not agree).
"""

from __future__ import annotations

import pandas as pd

from podcap.path.datagrams import ECHO_REPLY, ECHO_REQUEST, UNREACHABLE, quoted_header
from podcap.reports.packet_info import flag_names

MAX_PACKETS = 40  # rows per connection
MAX_CONNECTIONS = 50  # connections drawn (the path report has them all)
UNSEEN = "✗"
ELSEWHERE = ""  # a point not on the connection's way (another Pod's or host's capture)
COLUMNS = ["file", "flow_id", "ts", "c2s", "tcp_flags", "tcp_seq", "tcp_ack", "payload_len"]
DATAGRAM_COLUMNS = ["src", "dst", "ip_proto", "icmp_type", "icmp_id", "payload_head"]


def ladder_table(lined_up, packets: pd.DataFrame, chosen) -> pd.DataFrame:
    """Rows of the first chosen ``(number, journey)`` s: connection, packet, then one column
    per capture point (``lined_up.path``)."""
    names = [str(p) for p in lined_up.path]
    chosen = list(chosen)[:MAX_CONNECTIONS]
    wanted = {(s.point.file, s.flow_id) for _, j in chosen for s in j.sightings}
    rows = packets["flow_id"].isin({flow for _, flow in wanted})
    datagrams = any(j.protocol != "tcp" for _, j in chosen) and "payload_head" in packets
    if datagrams:  # and every ICMP error, which may quote a datagram of theirs
        rows |= packets["icmp_type"].eq(packets["ip_proto"].map(UNREACHABLE))
    columns = COLUMNS + (DATAGRAM_COLUMNS if datagrams else [])
    few = packets.loc[rows, columns].assign(file=lambda t: t["file"].astype(str))
    by_file = {file: table for file, table in few.groupby("file", sort=False)}
    empty = few.iloc[:0]
    table = []
    for number, journey in chosen:
        moments = tcp_moments if journey.protocol == "tcp" else datagram_moments
        at = {s: moments(s, by_file.get(s.point.file, empty)) for s in journey.sightings}
        table += _rows(number, journey, at, names)
    return pd.DataFrame(table, columns=["connection", "packet", *names])


def tcp_moments(sighting, packets: pd.DataFrame) -> list[tuple[tuple, bool, float]]:
    """(what the packet is, sent by the client, time) of each packet of ``sighting``'s flow:
    a TCP segment is its flags, numbers and length, which NAT leaves alone."""
    flow = packets[packets["flow_id"] == sighting.flow_id]
    columns = [flow[c].to_numpy().tolist() for c in COLUMNS[2:]]
    return [
        ((bool(c2s), flag_names(int(flags)), int(seq), int(ack), int(length)), bool(c2s), ts)
        for ts, c2s, flags, seq, ack, length in zip(*columns, strict=True)
    ]


def datagram_moments(sighting, packets: pd.DataFrame) -> list[tuple[tuple, bool, float]]:
    """The same for a UDP conversation or a ping: its datagrams, known by their payload, and
    the ICMP errors quoting them."""
    if packets.empty or "payload_head" not in packets:
        return []
    client, server = sighting.client_ip, sighting.server_ip
    mine = packets["flow_id"] == sighting.flow_id
    if sighting.protocol == "icmp":
        echo = packets["icmp_type"].isin([*ECHO_REQUEST.values(), *ECHO_REPLY.values()])
        ends = packets["src"].astype(str).isin([client, server])
        mine &= echo & ends & packets["dst"].astype(str).isin([client, server])
        mine &= packets["icmp_id"] == sighting.echo_id
    moments = []
    for row in packets[mine | _errors_quoting(packets, sighting)].itertuples(index=False):
        from_client = str(row.src) == client
        what = _datagram_kind(row)
        key = (from_client, what, hash(bytes(row.payload_head)), int(row.payload_len))
        moments.append((key, from_client, float(row.ts)))
    return moments


def _errors_quoting(packets: pd.DataFrame, sighting) -> pd.Series:
    errors = packets["icmp_type"].eq(packets["ip_proto"].map(UNREACHABLE))
    if not errors.any():
        return errors
    quoted = [
        quoted_header(bytes(head)) == sighting.ends
        for head in packets.loc[errors, "payload_head"].tolist()
    ]
    errors.loc[errors] = quoted
    return errors


def _datagram_kind(row) -> str:
    if row.icmp_type == UNREACHABLE.get(row.ip_proto):
        return "ICMP unreachable"
    if row.icmp_type == ECHO_REQUEST.get(row.ip_proto):
        return "echo request"
    if row.icmp_type == ECHO_REPLY.get(row.ip_proto):
        return "echo reply"
    return "datagram"


def _rows(number: int, journey, at: dict, names: list[str]) -> list[dict]:
    seen: dict[tuple, dict[str, str]] = {}
    order: list[tuple] = []
    for sighting in journey.sightings:
        moments = at[sighting]
        start = min((ts for _, _, ts in moments), default=0.0)
        times: dict[tuple, int] = {}  # a retransmission is a row of its own: the n-th copy
        for same, from_client, ts in moments:
            times[same] = times.get(same, 0) + 1
            key = (*same, times[same])
            if key not in seen:
                seen[key] = {}
                order.append(key)
            arrow = "→" if from_client else "←"
            seen[key].setdefault(str(sighting.point), f"{arrow} {(ts - start) * 1000:.1f}")
    missing = {str(p): UNSEEN if journey.on_its_way(p) else ELSEWHERE for p in journey.path}
    rows = []
    for key in order[:MAX_PACKETS]:
        cells = {name: seen[key].get(name, missing[name]) for name in names}
        rows.append({"connection": number, "packet": _describe(key), **cells})
    return rows


def _describe(key: tuple) -> str:
    from_client, what, *_, length, copy = key
    who = "client" if from_client else "server"
    text = f"{who} {what}" + (f" {length} B" if length else "")
    return text + (f" (again, #{copy})" if copy > 1 else "")
