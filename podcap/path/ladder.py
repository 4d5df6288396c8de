"""The ``ladder`` report: each connection's packets down the rows, the capture points across,
an arrow where a point saw the packet and a cross where it did not: where a row's arrows stop
is where that packet was lost. The html page shows it as the path's ladder.

A packet is the same at every point by what NAT leaves alone: its direction, TCP flags,
sequence and acknowledgement numbers and payload length. A cell holds the arrow and the time
in milliseconds since that point saw the connection's first packet (each point's own clock:
clocks of different nodes need not agree).
"""

from __future__ import annotations

import pandas as pd

from podcap.reports.packet_info import flag_names

MAX_PACKETS = 40  # rows per connection
MAX_CONNECTIONS = 50  # connections drawn (the path report has them all)
UNSEEN = "✗"
COLUMNS = ["file", "flow_id", "ts", "c2s", "tcp_flags", "tcp_seq", "tcp_ack", "payload_len"]


def ladder_table(lined_up, packets: pd.DataFrame, chosen) -> pd.DataFrame:
    """Rows of the first chosen ``(number, journey)`` s: connection, packet, then one column
    per capture point (``lined_up.path``)."""
    names = [str(p) for p in lined_up.path]
    chosen = list(chosen)[:MAX_CONNECTIONS]
    wanted = {(s.point.file, s.flow_id) for _, j in chosen for s in j.sightings}
    flows = packets["flow_id"].isin({flow for _, flow in wanted})
    few = packets.loc[flows, COLUMNS].assign(file=lambda t: t["file"].astype(str))
    by_flow = {key: rows for key, rows in few.groupby(["file", "flow_id"], sort=False)}
    rows = []
    for number, journey in chosen:
        rows += _rows(number, journey, by_flow, names)
    return pd.DataFrame(rows, columns=["connection", "packet", *names])


def _rows(number: int, journey, by_flow: dict, names: list[str]) -> list[dict]:
    seen: dict[tuple, dict[str, str]] = {}
    order: list[tuple] = []
    for sighting in journey.sightings:
        at_point = by_flow.get(
            (sighting.point.file, sighting.flow_id), pd.DataFrame(columns=COLUMNS)
        )
        start = float(at_point["ts"].iloc[0]) if len(at_point) else 0.0
        times: dict[tuple, int] = {}  # a retransmission is a row of its own: the n-th copy
        for row in at_point.itertuples(index=False):
            same = (bool(row.c2s), int(row.tcp_flags), int(row.tcp_seq), int(row.tcp_ack),
                    int(row.payload_len))  # fmt: skip
            times[same] = times.get(same, 0) + 1
            key = (*same, times[same])
            if key not in seen:
                seen[key] = {}
                order.append(key)
            arrow = "→" if row.c2s else "←"
            seen[key].setdefault(str(sighting.point), f"{arrow} {(row.ts - start) * 1000:.1f}")
    rows = []
    for key in order[:MAX_PACKETS]:
        cells = {name: seen[key].get(name, UNSEEN) for name in names}
        rows.append({"connection": number, "packet": _describe(key), **cells})
    return rows


def _describe(key: tuple) -> str:
    c2s, flags, _, _, length, copy = key
    who = "client" if c2s else "server"
    what = flag_names(flags)
    text = f"{who} {what}" + (f" {length} B" if length else "")
    return text + (f" (again, #{copy})" if copy > 1 else "")
