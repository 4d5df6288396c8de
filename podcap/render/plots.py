"""Plots and the small tables behind them, for notebooks and the HTML report.

Every plot function returns a :class:`PodcapFigure`: a matplotlib Figure drawn with the Agg
canvas (no display, no pyplot global state), which Jupyter shows as a PNG and
:func:`figure_png` turns into bytes. The table helpers return pandas DataFrames, so a notebook
can print the numbers the plot shows.

Inputs are podcap's own tables: the packet table of an analysis
(:func:`packets_of`, with ``flow_id``, ``c2s`` and ``retransmission``) and the ``flows``,
``snat`` and ``summary`` reports of :func:`podcap.analysis.run.analyze`.

Example:
    >>> from podcap.analysis.run import analyze
    >>> from podcap.render import plots
    >>> result = analyze(["a.pcap"], reports=["flows"])
    >>> plots.packet_timeline(plots.packets_of(result), result["flows"])
"""

from __future__ import annotations

import functools
import io
from typing import Any

import numpy as np
import pandas as pd

from podcap.decode.times import utc_times
from podcap.flows import ACK, FIN, RST, SEQ_SPACE, SYN, TCP, zero_window

# Drawing order and colours of packet events: the alarming ones last, so they stay visible.
EVENT_COLOURS = {
    "ACK": "#b0b0b0",
    "data": "#1f77b4",
    "SYN": "#2ca02c",
    "SYN-ACK": "#17becf",
    "FIN": "#9467bd",
    "retransmission": "#ff7f0e",
    "RST": "#d62728",
    "other": "#7f7f7f",
}
# Capture points from the client towards the server (sidecar ``captured_at.kind``).
POINT_ORDER = {"pod": 0, "node": 1, "peer": 2}


@functools.cache
def _figure_class():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class PodcapFigure(Figure):
        """A Figure on the Agg canvas that Jupyter displays as a PNG."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            FigureCanvasAgg(self)

        def _repr_png_(self) -> bytes:
            return figure_png(self)

    return PodcapFigure


def new_figure(width: float = 9.0, height: float = 4.0):
    """An empty :class:`PodcapFigure` of ``width`` x ``height`` inches."""
    return _figure_class()(figsize=(width, height), layout="constrained")


def figure_png(figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (rendered by Agg)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def packets_of(result) -> pd.DataFrame:
    """The packets a result's filter selected, with the flow columns
    (``flow_id``, ``c2s``, ``retransmission``) the plots need; epoch-second ``ts``."""
    return result.analysis.packets


def all_packets_of(result) -> pd.DataFrame:
    """Every packet of every file of a result (ignoring the filter), with the flow columns."""
    return result.analysis.all_packets


# --- packets per flow over time ------------------------------------------------------------


def packet_events(packets: pd.DataFrame) -> pd.Series:
    """What each packet is, for colouring: SYN, SYN-ACK, RST, FIN, retransmission, data, ACK."""
    flags = packets["tcp_flags"].to_numpy()
    tcp = packets["ip_proto"].to_numpy() == TCP
    retransmission = _column(packets, "retransmission", False).astype(bool)
    labels = np.select(
        [
            ~tcp & (packets["payload_len"].to_numpy() > 0),
            ~tcp,
            (flags & RST) != 0,
            retransmission,
            (flags & (SYN | ACK)) == SYN,
            (flags & (SYN | ACK)) == (SYN | ACK),
            (flags & FIN) != 0,
            packets["payload_len"].to_numpy() > 0,
        ],
        ["data", "other", "RST", "retransmission", "SYN", "SYN-ACK", "FIN", "data"],
        default="ACK",
    )
    return pd.Series(labels, index=packets.index, name="event")


def flow_labels(flows: pd.DataFrame) -> pd.Series:
    """``client:port → server:port`` per flow_id (prefixed by the file when there are several)."""
    labels = (
        flows["client_ip"].astype(str)
        + ":"
        + flows["client_port"].astype(str)
        + " → "
        + flows["server_ip"].astype(str)
        + ":"
        + flows["server_port"].astype(str)
    )
    if "file" in flows and flows["file"].nunique() > 1:
        labels = flows["file"].astype(str).str.rsplit("/", n=1).str[-1] + "  " + labels
    return pd.Series(labels.to_numpy(), index=flows["flow_id"].to_numpy())


def packet_timeline(packets: pd.DataFrame, flows: pd.DataFrame, max_flows: int = 30):
    """One row per flow, one dot per packet, coloured by :func:`packet_events`.

    Rows are flows in order of their first packet (the first ``max_flows``); x is seconds
    since the first packet shown. A flow whose SYNs went unanswered (state S0) has its label
    in red, a refused one (REJ) in orange.
    """
    figure = new_figure(10, max(2.5, 0.32 * min(len(flows), max_flows) + 1.4))
    axes = figure.add_subplot()
    shown = flows.sort_values("first_ts", kind="stable").head(max_flows)
    rows = {flow_id: row for row, flow_id in enumerate(shown["flow_id"])}
    chosen = packets[packets["flow_id"].isin(rows)]
    if chosen.empty:
        axes.text(0.5, 0.5, "no packets", ha="center", va="center", transform=axes.transAxes)
        return figure
    start = float(chosen["ts"].min())
    events = packet_events(chosen)
    y = chosen["flow_id"].map(rows).to_numpy()
    x = chosen["ts"].to_numpy(dtype=float) - start
    for event, colour in EVENT_COLOURS.items():
        mask = (events == event).to_numpy()
        if mask.any():
            axes.scatter(x[mask], y[mask], s=22, color=colour, label=event, zorder=3)
    _label_flow_rows(axes, shown)
    axes.set_xlabel(
        f"seconds since {pd.Timestamp(start, unit='s', tz='UTC'):%Y-%m-%d %H:%M:%S} UTC"
    )
    axes.set_title(f"packets per flow ({len(rows)} of {len(flows)} flows)")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return figure


def _label_flow_rows(axes, flows: pd.DataFrame) -> None:
    labels = flow_labels(flows)
    axes.set_yticks(range(len(flows)), labels.to_numpy(), fontsize="small")
    axes.set_ylim(len(flows) - 0.5, -0.5)
    colours = {"S0": "#d62728", "REJ": "#ff7f0e"}
    for tick, state in zip(axes.get_yticklabels(), flows["state"], strict=True):
        tick.set_color(colours.get(state, "black"))


def unanswered_syns(flows: pd.DataFrame) -> pd.DataFrame:
    """TCP flows whose SYNs got no answer (Zeek state S0), with how many SYNs were sent."""
    chosen = flows[(flows["proto"] == "tcp") & (flows["state"] == "S0")]
    columns = ["client_ip", "client_port", "server_ip", "server_port", "packets_c2s", "first_ts"]
    columns = (["file"] if "file" in flows else []) + columns
    return chosen[columns].rename(columns={"packets_c2s": "syns_sent"}).reset_index(drop=True)


# --- who talks most ----------------------------------------------------------------------


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


# --- where a packet was seen ---------------------------------------------------------------


def capture_points(result) -> pd.DataFrame:
    """Per capture file: where it was taken (from its sidecar), packets, how many matched the
    filter and when the first match was seen; ordered Pod → node → peer."""
    analysis = result.analysis
    packets = analysis.packets
    rows = []
    for path in analysis.files:
        where = analysis.sidecars.get(path, {}).get("captured_at", {})
        mine = packets[packets["file"] == path]
        rows.append(
            {
                "file": path,
                "point": where.get("kind", ""),
                "where": where.get("description", ""),
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


# --- one connection at several capture points (SNAT) ---------------------------------------


def snat_hops(result) -> pd.DataFrame:
    """Each TCP connection at each capture point that saw it, client side first: the
    addresses and ports seen there and whether the source differs from the point before.
    The connections are the ones the snat report matched (``Analysis.tcp_connections``)."""
    analysis = result.analysis
    rows = []
    for number, connection in enumerate(analysis.tcp_connections):
        previous = None
        for hop, seen in enumerate(connection.observations):
            where = analysis.sidecars.get(seen.file, {}).get("captured_at", {})
            source = f"{seen.client_ip}:{seen.client_port}"
            rows.append(
                {
                    "connection": number,
                    "hop": hop,
                    "file": seen.file,
                    "point": where.get("kind", ""),
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


def plot_clock_offsets(offsets: pd.DataFrame):
    """Bars of the clock offset (plus path delay) between pairs of captures, in microseconds
    (the ``snat`` report's ``attrs["clock_offsets"]``)."""
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


# --- TCP health --------------------------------------------------------------------------


def rtt_samples(packets: pd.DataFrame) -> pd.DataFrame:
    """Round-trip times from each segment (data, SYN or FIN) to the first ACK that covers it.

    As Wireshark's ``tcp.analysis.ack_rtt``, retransmitted segments give no sample (Karn's
    rule: which copy the ACK answers is unknown). Columns: ``ts`` (epoch seconds of the
    segment), ``flow_id``, ``c2s`` (segment sent by the client), ``rtt_ms``.
    """
    tcp = packets[(packets["ip_proto"] == TCP) & (packets["flow_id"] >= 0)]
    samples = []
    for flow_id, flow in tcp.groupby("flow_id", sort=True):
        from_client = flow["c2s"].to_numpy().astype(bool)
        for c2s in (True, False):
            sent, acks = flow[from_client == c2s], flow[from_client != c2s]
            samples.append(_direction_rtts(sent, acks, flow_id, c2s))
    samples = [s for s in samples if not s.empty]
    if not samples:
        return pd.DataFrame({"ts": [], "flow_id": [], "c2s": [], "rtt_ms": []})
    return pd.concat(samples, ignore_index=True).sort_values("ts", kind="stable")


def _direction_rtts(sent: pd.DataFrame, acks: pd.DataFrame, flow_id, c2s: bool) -> pd.DataFrame:
    # SYN and FIN take one sequence number each, so an ACK answers them as it answers data.
    syn_fin = ((sent["tcp_flags"].to_numpy() & (SYN | FIN)) != 0).astype(np.int64)
    length = sent["payload_len"].to_numpy().astype(np.int64) + syn_fin
    fresh = (length > 0) & ~sent["retransmission"].to_numpy().astype(bool)
    data = sent[fresh]
    acks = acks[(acks["tcp_flags"].to_numpy() & ACK) != 0]
    if data.empty or acks.empty:
        return pd.DataFrame()
    base = int(sent["tcp_seq"].iloc[0])
    ends = (data["tcp_seq"].to_numpy() - base) % SEQ_SPACE + length[fresh]
    acked = (acks["tcp_ack"].to_numpy() - base) % SEQ_SPACE
    # The highest sequence acknowledged so far only grows, so the first ACK covering a
    # segment is a binary search away; it must also come after the segment was sent.
    acked_so_far = np.maximum.accumulate(acked)
    ack_ts = acks["ts"].to_numpy(dtype=float)
    sent_ts = data["ts"].to_numpy(dtype=float)
    first = np.maximum(
        np.searchsorted(acked_so_far, ends, side="left"),
        np.searchsorted(ack_ts, sent_ts, side="left"),
    )
    answered = first < len(ack_ts)
    rtt = (ack_ts[first[answered]] - sent_ts[answered]) * 1000.0
    return pd.DataFrame(
        {"ts": sent_ts[answered], "flow_id": flow_id, "c2s": c2s, "rtt_ms": rtt.round(3)}
    )


def tcp_health(packets: pd.DataFrame, bin_seconds: float = 1.0) -> pd.DataFrame:
    """Per time bin: TCP packets, retransmissions, zero-window segments, RSTs.

    ``bin_start`` is a UTC datetime; a zero window counts as Wireshark's
    ``tcp.analysis.zero_window`` (window 0 without SYN, FIN or RST).
    """
    tcp = packets[packets["ip_proto"] == TCP]
    flags = tcp["tcp_flags"].to_numpy()
    start = float(tcp["ts"].min()) if len(tcp) else 0.0
    bins = np.floor((tcp["ts"].to_numpy(dtype=float) - start) / bin_seconds)
    counts = pd.DataFrame(
        {
            "bin": bins,
            "packets": 1,
            "retransmissions": _column(tcp, "retransmission", False).astype(int),
            "zero_windows": zero_window(tcp).astype(int),
            "resets": ((flags & RST) != 0).astype(int),
        }
    )  # fmt: skip
    table = counts.groupby("bin", as_index=False).sum()
    table.insert(0, "bin_start", utc_times(start + table["bin"] * bin_seconds))
    return table.drop(columns="bin")


def plot_tcp_health(packets: pd.DataFrame, bin_seconds: float = 1.0):
    """Three panels over one time axis: retransmissions and zero windows per bin, and the
    RTT of each acknowledged data segment (:func:`rtt_samples`)."""
    health = tcp_health(packets, bin_seconds)
    rtts = rtt_samples(packets)
    figure = new_figure(10, 7)
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    start = float(packets.loc[packets["ip_proto"] == TCP, "ts"].min()) if len(health) else 0.0
    x = (health["bin_start"] - pd.Timestamp(start, unit="s", tz="UTC")).dt.total_seconds()
    top.bar(x, health["retransmissions"], width=bin_seconds, align="edge", color="#ff7f0e")
    top.set_ylabel("retransmissions")
    top.set_title(f"TCP health per {bin_seconds:g} s")
    middle.scatter(rtts["ts"] - start, rtts["rtt_ms"], s=14, color="#1f77b4")
    middle.set_ylabel("RTT, ms")
    bottom.bar(x, health["zero_windows"], width=bin_seconds, align="edge", color="#d62728")
    bottom.set_ylabel("zero windows")
    bottom.set_xlabel(f"seconds since {pd.Timestamp(start, unit='s', tz='UTC'):%H:%M:%S} UTC")
    for axes in (top, middle, bottom):
        axes.grid(alpha=0.3)
    for axes in (top, bottom):
        axes.set_ylim(bottom=0, top=max(1, axes.get_ylim()[1]))
        _integer_ticks(axes.yaxis)
    return figure


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _column(table: pd.DataFrame, name: str, default: Any) -> np.ndarray:
    if name in table:
        return table[name].to_numpy()
    return np.full(len(table), default)
