"""The ``path`` and ``hops`` reports: captures of the same traffic at several points, lined up.

``path``: one row per connection (TCP; UDP conversations and pings too, matched by their
payloads: ``podcap.path.datagrams``): how it ended for the client (``outcome``), the last
point its packets reached and the hop where they stopped (``lost_between``), the same for the
server's answer, the addresses rewritten on the way, why, and what to change. ``hops``: one
row per connection and capture point: what that point saw of it. ``ladder``: one row per
packet, one column per point (``podcap.path.ladder``). The work is done in
``podcap.path``; the points' order is said in the table's note.
"""

from __future__ import annotations

import pandas as pd

from podcap.reports.missing import with_na

PATH_COLUMNS = [
    "connection", "protocol", "client_ip", "client_port", "server_ip", "server_port", "outcome",
    "last_seen", "lost_between", "dropped_by", "reply_last_seen", "reply_lost_between", "seen_at",
    "rewrites", "delays", "explanation", "fix", "evidence",
]  # fmt: skip
HOPS_COLUMNS = [
    "connection", "hop", "point", "seen", "client", "server", "history", "state",
    "client_ttl", "ts", "since_previous_ms", "one_way_ms", "clock_offset_ms",
]  # fmt: skip


def path_report(analysis) -> pd.DataFrame:
    from podcap.path.clocks import describe, hop_timings
    from podcap.path.explain import explain, node_facts
    from podcap.path.kernel_drops import dropped_by, kernel_fix

    lined_up = analysis.journeys
    facts = node_facts(analysis.sidecars)
    drops = analysis.kernel_drops
    rows = []
    for number, journey in _chosen(analysis, lined_up.journeys):
        first, verdict = journey.first, explain(journey, facts)
        kernel = dropped_by(journey, drops)
        explanation = (
            f"{verdict.explanation} The kernel says: {kernel}." if kernel else verdict.explanation
        )
        fix = " ".join(f for f in (verdict.fix, kernel_fix(kernel)) if f)
        reply = journey.reply_last_seen
        rows.append({
            "connection": number, "protocol": journey.protocol,
            "client_ip": first.client_ip, "client_port": _port(first.client),
            "server_ip": first.server_ip, "server_port": first.server_port,
            "outcome": journey.outcome,
            "last_seen": str(journey.last_seen.point),
            "lost_between": _hop(journey.lost_between),
            "dropped_by": kernel,
            "reply_last_seen": str(reply.point) if reply else "",
            "reply_lost_between": _hop(journey.reply_lost_between),
            "seen_at": " > ".join(str(s.point) for s in journey.sightings),
            "rewrites": "; ".join(journey.rewrites()),
            "delays": describe(hop_timings(journey)),
            "explanation": explanation, "fix": fix,
            "evidence": ", ".join(journey.evidence),
        })  # fmt: skip
    table = pd.DataFrame(rows, columns=PATH_COLUMNS)
    for port in ("client_port", "server_port"):  # a ping has none
        table[port] = table[port].astype("Int64")
    table = with_na(table, texts=("lost_between", "dropped_by", "reply_last_seen",
                                  "reply_lost_between", "rewrites", "delays", "fix", "evidence"))  # fmt: skip
    table.attrs["note"] = lined_up.note
    return table


def hops_report(analysis) -> pd.DataFrame:
    from podcap.path.clocks import hop_timings

    lined_up = analysis.journeys
    rows = []
    for number, journey in _chosen(analysis, lined_up.journeys):
        at = {s.point: s for s in journey.sightings}
        arriving = {t.after.point: t for t in hop_timings(journey)}
        for hop, point in enumerate(journey.path, start=1):
            seen, timing = at.get(point), arriving.get(point)
            rows.append({
                "connection": number, "hop": hop, "point": str(point), "seen": seen is not None,
                "client": seen.client if seen else "", "server": seen.server if seen else "",
                "history": seen.history if seen else "", "state": seen.state if seen else "",
                "client_ttl": seen.client_ttl if seen else -1,
                "ts": seen.first_ts if seen else float("nan"),
                "since_previous_ms": _ms(timing.since_ms) if timing else None,
                "one_way_ms": _ms(timing.one_way_ms) if timing else None,
                "clock_offset_ms": _ms(timing.offset_ms) if timing else None,
            })  # fmt: skip
    table = pd.DataFrame(rows, columns=HOPS_COLUMNS)
    table["ts"] = pd.to_datetime(table["ts"], unit="s", utc=True)
    for column in ("since_previous_ms", "one_way_ms", "clock_offset_ms"):
        table[column] = table[column].astype("Float64")
    table = with_na(table, numbers=("client_ttl",), texts=("client", "server", "history", "state"))
    table.attrs["note"] = lined_up.note
    return table


def _ms(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN: not known


def ladder_report(analysis) -> pd.DataFrame:
    from podcap.path.ladder import ladder_table

    lined_up = analysis.journeys
    table = ladder_table(lined_up, analysis.all_packets, _chosen(analysis, lined_up.journeys))
    table.attrs["note"] = lined_up.note
    return table


def _chosen(analysis, journeys):
    """(number, journey) of the connections with a packet the filter selected (all without
    a filter); numbers count every connection, so path and hops rows keep theirs."""
    numbered = list(enumerate(journeys, start=1))
    if analysis.filter_text is None:
        return numbered
    chosen = set(analysis.matched_flow_ids.tolist())
    return [(n, j) for n, j in numbered if any(s.flow_id in chosen for s in j.sightings)]


def _port(end: str) -> int | None:
    address, _, port = end.rpartition(":")
    return int(port) if address and port.isdigit() else None


def _hop(pair) -> str:
    return f"{pair[0]} -> {pair[1]}" if pair else ""


def drops_report(analysis) -> pd.DataFrame:
    """The kernel's drops the nodes' watchers recorded (``--drops``), placed."""
    table = analysis.kernel_drops.copy()
    table["ts"] = pd.to_datetime(table["ts"], unit="s", utc=True)
    return table
