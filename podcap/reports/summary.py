"""The ``summary`` report (the default): one row per file, what a first look in Wireshark shows."""

from __future__ import annotations

import pandas as pd

from podcap.reports import report
from podcap.reports.timefmt import as_datetime

PROBLEM_COUNTS = {
    "unanswered_syn": "unanswered_syn",
    "refused": "refused",
    "resets": ("reset_by_server", "reset_by_client"),
    "retransmissions": "retransmissions",
    "zero_windows": "zero_window",
}


@report(
    "summary", "one row per file: link types, packets, time span, flows, HTTP requests, problems"
)
def summary_report(analysis) -> pd.DataFrame:
    from podcap.reports.http import http_report

    http = http_report(analysis)  # built once, counted per file
    rows = [_file_row(analysis, path, http) for path in analysis.files]
    table = pd.DataFrame(rows)
    return as_datetime(table, "first_ts", "last_ts")


def _file_row(analysis, path: str, http: pd.DataFrame) -> dict:
    capture = analysis.captures[path]
    sidecar = analysis.sidecars.get(path, {})
    everything = analysis.all_packets[analysis.all_packets["file"] == path]
    matched = analysis.packets[analysis.packets["file"] == path]
    flows = analysis.flows[analysis.flows["file"] == path]
    problems = analysis.problems[analysis.problems["file"] == path]["problem"]
    row = {
        "file": path,
        "target": _target(sidecar),
        "node": _node(sidecar),
        "link_types": ",".join(capture.linktypes),
        "packets": len(everything),
        "matched": len(matched),
        "first_ts": matched["ts"].min() if len(matched) else None,
        "last_ts": matched["ts"].max() if len(matched) else None,
        "duration": float(matched["ts"].max() - matched["ts"].min()) if len(matched) else 0.0,
        "flows": len(flows),
        "http_requests": _http_count(http, path),
        # tcpdump -i any: packets that are another interface's copy of an earlier one (not
        # counted as retransmissions).
        "interface_copies": int((matched["dup_of_frame"] >= 0).sum())
        if "dup_of_frame" in matched
        else 0,
    }
    for column, names in PROBLEM_COUNTS.items():
        names = (names,) if isinstance(names, str) else names
        row[column] = int(problems.isin(names).sum())
    return row


def _http_count(http: pd.DataFrame, path: str) -> int:
    # With one file the http report has no ``file`` column: every request is that file's.
    return int((http["file"] == path).sum()) if "file" in http else len(http)


def _target(sidecar: dict) -> str:
    """What was captured, from the sidecar ``podcap capture`` (or the lab) writes next to
    the file: ``target`` (text or an object), else ``captured_at`` (namespace/pod)."""
    for key in ("target", "captured_at"):
        value = sidecar.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            name = value.get("pod") or value.get("name") or value.get("container_id")
            name = name or value.get("host")  # a capture point outside the cluster
            namespace = value.get("namespace")
            if name:
                return f"{namespace}/{name}" if namespace else str(name)
            if value.get("pid"):
                return f"pid {value['pid']}"
    return ""


def _node(sidecar: dict) -> str:
    """The node the capture ran on: ``node``, or inside ``target``/``captured_at``/``cluster``."""
    candidates = [sidecar.get("node")]
    candidates += [sidecar.get(k, {}).get("node") for k in ("target", "captured_at", "cluster")
                   if isinstance(sidecar.get(k), dict)]  # fmt: skip
    for node in candidates:
        if isinstance(node, dict):
            node = node.get("name") or node.get("host") or node.get("ip")
        if node:
            return str(node)
    return ""
