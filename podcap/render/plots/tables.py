"""Per-flow and per-capture views: unanswered SYNs, top talkers, capture points, SNAT hops, clock offsets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.times import utc_times
from podcap.render.plots.figure import POINT_ORDER, _integer_ticks, new_figure


def unanswered_syns(flows: pd.DataFrame) -> pd.DataFrame:
    """TCP flows whose SYNs got no answer (Zeek state S0), with how many SYNs were sent."""
    chosen = flows[(flows["proto"] == "tcp") & (flows["state"] == "S0")]
    columns = ["client_ip", "client_port", "server_ip", "server_port", "packets_c2s", "first_ts"]
    columns = (["file"] if "file" in flows else []) + columns
    return chosen[columns].rename(columns={"packets_c2s": "syns_sent"}).reset_index(drop=True)


def top_talkers(flows: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """Addresses by bytes sent plus received over all flows, the ``n`` largest first."""
    as_client = pd.DataFrame(
        {
            "address": flows["client_ip"],
            "bytes_sent": flows["bytes_c2s"],
            "bytes_received": flows["bytes_s2c"],
            "packets": flows["packets_c2s"] + flows["packets_s2c"],
        }
    )
    as_server = pd.DataFrame(
        {
            "address": flows["server_ip"],
            "bytes_sent": flows["bytes_s2c"],
            "bytes_received": flows["bytes_c2s"],
            "packets": flows["packets_c2s"] + flows["packets_s2c"],
        }
    )
    both = pd.concat([as_client, as_server], ignore_index=True)
    both["flows"] = 1
    table = both.groupby("address", as_index=False).sum(numeric_only=True)
    table["bytes_total"] = table["bytes_sent"] + table["bytes_received"]
    table = table.sort_values(["bytes_total", "address"], ascending=[False, True], kind="stable")
    columns = ["address", "bytes_total", "bytes_sent", "bytes_received", "packets", "flows"]
    return table[columns].head(n).reset_index(drop=True)


def plot_top_talkers(talkers: pd.DataFrame):
    """Horizontal bars of bytes sent and received per address (a :func:`top_talkers` table)."""
    figure = new_figure(9, max(2.0, 0.4 * len(talkers) + 1.2))
    axes = figure.add_subplot()
    rows = np.arange(len(talkers))
    axes.barh(rows, talkers["bytes_sent"], color="#1f77b4", label="sent")
    axes.barh(
        rows, talkers["bytes_received"], left=talkers["bytes_sent"], color="#aec7e8",
        label="received",
    )  # fmt: skip
    axes.set_yticks(rows, talkers["address"].to_numpy())
    axes.invert_yaxis()
    axes.set_xlabel("bytes")
    axes.set_title("top talkers")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def capture_points(result) -> pd.DataFrame:
    """Per capture file: where it was taken (from its sidecar), packets, how many matched the
    filter and when the first match was seen; ordered Pod → node → peer."""
    analysis = result.analysis
    packets = analysis.packets
    rows = []
    for path in analysis.files:
        where = analysis.sidecars.get(path, {}).get("point") or {}
        mine = packets[packets["file"] == path]
        rows.append(
            {
                "file": path,
                "point": where.get("kind") or "",
                "where": where.get("description") or "",
                "packets": int((analysis.all_packets["file"] == path).sum()),
                "matched": len(mine),
                "first_match_ts": float(mine["ts"].min()) if len(mine) else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    order = table["point"].map(POINT_ORDER).fillna(len(POINT_ORDER))
    table = table.assign(_order=order).sort_values(["_order", "file"], kind="stable")
    table = table.drop(columns="_order").reset_index(drop=True)
    table["first_match_ts"] = utc_times(table["first_match_ts"])
    return table


def plot_capture_points(points: pd.DataFrame, title: str = "matching packets per capture point"):
    """Bars of matching packets per capture point (a :func:`capture_points` table); a point
    where nothing matched is marked "not seen" in red."""
    figure = new_figure(9, max(2.0, 0.5 * len(points) + 1.2))
    axes = figure.add_subplot()
    rows = np.arange(len(points))
    seen = points["matched"].to_numpy() > 0
    axes.barh(rows, points["matched"], color=np.where(seen, "#2ca02c", "#d62728"))
    labels = [
        f"{point or '?'}: {str(file).rsplit('/', 1)[-1]}"
        for point, file in zip(points["point"], points["file"], strict=True)
    ]
    axes.set_yticks(rows, labels)
    axes.invert_yaxis()
    for row, count in zip(rows, points["matched"], strict=True):
        axes.text(
            max(count, 0), row, f"  {count}" if count else "  not seen",
            va="center", color="black" if count else "#d62728",
        )  # fmt: skip
    axes.set_xlabel("packets matching the filter")
    _integer_ticks(axes.xaxis)
    axes.set_xlim(0, max(1, points["matched"].max()) * 1.3)
    axes.set_title(title)
    return figure


def snat_hops(result) -> pd.DataFrame:
    """Each TCP connection at each capture point that saw it, client side first: the
    addresses and ports seen there and whether the source differs from the point before.
    The connections are the ones the snat report matched (``Analysis.tcp_connections``)."""
    analysis = result.analysis
    rows = []
    for number, connection in enumerate(analysis.tcp_connections):
        previous = None
        for hop, seen in enumerate(connection.observations):
            where = analysis.sidecars.get(seen.file, {}).get("point") or {}
            source = f"{seen.client_ip}:{seen.client_port}"
            rows.append(
                {
                    "connection": number,
                    "hop": hop,
                    "file": seen.file,
                    "point": where.get("kind") or "",
                    "source": source,
                    "destination": f"{seen.server_ip}:{seen.server_port}",
                    "source_rewritten": previous is not None and source != previous,
                    "first_ts": seen.first_ts,
                }
            )
            previous = source
    table = pd.DataFrame(
        rows,
        columns=["connection", "hop", "file", "point", "source", "destination",
                 "source_rewritten", "first_ts"],
    )  # fmt: skip
    table["first_ts"] = utc_times(table["first_ts"])
    return table


def plot_snat_hops(hops: pd.DataFrame):
    """A ladder: one row per connection, one column per capture point, the source
    address:port seen there; a rewritten source is red."""
    points = (
        hops.drop_duplicates("file")
        .assign(_order=lambda t: t["point"].map(POINT_ORDER).fillna(len(POINT_ORDER)))
        .sort_values(["_order", "hop"], kind="stable")
    )
    columns = {file: column for column, file in enumerate(points["file"])}
    connections = sorted(hops["connection"].unique())
    figure = new_figure(3.2 * max(1, len(columns)) + 1, 0.7 * max(1, len(connections)) + 1.4)
    axes = figure.add_subplot()
    for row, number in enumerate(connections):
        mine = hops[hops["connection"] == number].sort_values("hop")
        x = mine["file"].map(columns).to_numpy()
        axes.plot(x, [row] * len(x), color="#cccccc", zorder=1)
        for column, source, changed in zip(
            x, mine["source"], mine["source_rewritten"], strict=True
        ):
            colour = "#d62728" if changed else "#1f77b4"
            axes.scatter([column], [row], color=colour, zorder=2)
            axes.annotate(
                source, (column, row), textcoords="offset points", xytext=(0, 7),
                ha="center", fontsize="small", color=colour,
            )  # fmt: skip
    axes.set_xticks(
        range(len(columns)),
        [f"{p or '?'}\n{str(f).rsplit('/', 1)[-1]}" for p, f in zip(points["point"], columns, strict=True)],
    )  # fmt: skip
    axes.set_yticks(range(len(connections)), [f"connection {n}" for n in connections])
    axes.set_xlim(-0.6, max(0, len(columns) - 1) + 0.6)
    axes.set_ylim(len(connections) - 0.4, -0.7)
    axes.set_title("source address:port at each capture point (red: rewritten)")
    return figure


def plot_clock_offsets(offsets):
    """Bars of the clock offset (plus path delay) between pairs of captures, in microseconds
    (the ``snat`` report's ``attrs["clock_offsets"]``: records, or a DataFrame of them)."""
    offsets = pd.DataFrame(offsets)
    figure = new_figure(8, max(2.0, 0.6 * len(offsets) + 1.2))
    axes = figure.add_subplot()
    labels = [
        f"{str(a).rsplit('/', 1)[-1]} → {str(b).rsplit('/', 1)[-1]}"
        for a, b in zip(offsets["file_a"], offsets["file_b"], strict=True)
    ]
    micros = offsets["offset_s"].to_numpy(dtype=float) * 1e6
    rows = np.arange(len(offsets))
    axes.barh(rows, micros, color="#9467bd")
    axes.set_yticks(rows, labels)
    axes.invert_yaxis()
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("median SYN time difference, µs (clock offset + path delay)")
    axes.set_title("clock offset between capture points")
    return figure
