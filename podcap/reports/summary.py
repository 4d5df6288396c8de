"""The ``summary`` report (the default): one row per file, what a first look in Wireshark shows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.times import as_datetime
from podcap.pcapfile import LINKTYPE_NAMES
from podcap.reports.missing import with_na

# The TCP counts, each named for what it counts, and counted as the flows report does, from
# the same flow rows (so the two, the tcp report, the html page and tshark agree):
# connections by their Zeek state, packets by the flows' per-packet sums.
CONNECTION_STATES = {
    "unanswered_connections": ("S0",),
    "refused_connections": ("REJ",),
    "reset_connections": ("RSTR", "RSTO"),
}
PACKET_SUMS = {"retransmitted_packets": "retransmissions", "zero_window_packets": "zero_windows"}
TCP_COUNTS = [*CONNECTION_STATES, "retransmitted_packets", "connections_with_retransmissions",
              "zero_window_packets"]  # fmt: skip

COUNT_COLUMNS = [
    "packets", "matched", "first_ts", "last_ts", "flows", "http_requests", "interface_copies",
    *TCP_COUNTS, "undecoded_packets",
]  # fmt: skip


def summary_report(analysis) -> pd.DataFrame:
    """Reads only ``files``, ``captures`` (link types), ``sidecars`` and ``file_counts``: the
    counts of a capture analyzed in buckets are merged (``merge_counts``) before this runs."""
    counts = analysis.file_counts
    rows = [_file_row(analysis, path, counts.loc[path]) for path in analysis.files]
    table = with_na(pd.DataFrame(rows), texts=("target", "node"))  # no sidecar: unknown
    return as_datetime(table, "first_ts", "last_ts")


def _file_row(analysis, path: str, counts: pd.Series) -> dict:
    sidecar = analysis.sidecars.get(path, {})
    matched = int(counts["matched"])
    row = {
        "file": path,
        "target": _target(sidecar),
        "node": _node(sidecar),
        "link_types": ",".join(analysis.captures[path].linktypes),
        "packets": int(counts["packets"]),
        "matched": matched,
        "first_ts": counts["first_ts"] if matched else None,
        "last_ts": counts["last_ts"] if matched else None,
        # Microseconds, as the timestamps: no float noise in csv (3.0615599155426025).
        "duration": round(float(counts["last_ts"] - counts["first_ts"]), 6) if matched else 0.0,
    }
    row.update({name: int(counts[name]) for name in COUNT_COLUMNS if name not in row})
    return row


def file_counts(analysis) -> pd.DataFrame:
    """Per file (the index), the numbers of the summary: ``COUNT_COLUMNS``."""
    from podcap.reports.http import http_report

    http = http_report(analysis)  # built once, counted per file
    rows = {path: _counts(analysis, path, http) for path in analysis.files}
    return pd.DataFrame.from_dict(rows, orient="index", columns=COUNT_COLUMNS)


def merge_counts(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """``file_counts`` of parts of the same files (buckets of conversations) as one table."""
    joined = pd.concat(tables)
    by_file = joined.groupby(level=0, sort=False)
    merged = by_file.sum()
    merged["first_ts"] = by_file["first_ts"].min()
    merged["last_ts"] = by_file["last_ts"].max()
    return merged[COUNT_COLUMNS]


def _counts(analysis, path: str, http: pd.DataFrame) -> dict:
    everything = analysis.all_packets[analysis.all_packets["file"] == path]
    matched = analysis.packets[analysis.packets["file"] == path]
    flows = analysis.flows[analysis.flows["file"] == path]
    tcp = flows[flows["proto"] == "tcp"]
    counts = {
        "packets": len(everything),
        "matched": len(matched),
        "first_ts": matched["ts"].min() if len(matched) else np.nan,
        "last_ts": matched["ts"].max() if len(matched) else np.nan,
        "flows": len(flows),
        "http_requests": _http_count(http, path),
        # tcpdump -i any: packets that are another interface's copy of an earlier one (not
        # counted as retransmissions).
        "interface_copies": int((matched["dup_of_frame"] >= 0).sum())
        if "dup_of_frame" in matched
        else 0,
    }
    for column, states in CONNECTION_STATES.items():
        counts[column] = int(tcp["state"].isin(states).sum())
    for column, flow_column in PACKET_SUMS.items():
        counts[column] = int(tcp[flow_column].sum())
    counts["connections_with_retransmissions"] = int((tcp["retransmissions"] > 0).sum())
    # On a link type the decoder does not know: counted and timed, nothing more.
    known = list(LINKTYPE_NAMES)
    counts["undecoded_packets"] = int((~everything["linktype"].isin(known)).sum())
    return counts


def _http_count(http: pd.DataFrame, path: str) -> int:
    # With one file the http report has no ``file`` column: every request is that file's.
    return int((http["file"] == path).sum()) if "file" in http else len(http)


def _target(sidecar: dict) -> str:
    """What was captured, as the sidecar (format 2, see podcap.sidecar) names it."""
    return str((sidecar.get("point") or {}).get("target") or "")


def _node(sidecar: dict) -> str:
    """The node the capture ran on, from the sidecar."""
    return str((sidecar.get("point") or {}).get("node") or "")
