"""Per-packet views: the packets of a result, their events, the timeline, RTT samples, TCP health."""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.times import utc_times
from podcap.flows import ACK, FIN, RST, SEQ_SPACE, SYN, TCP, zero_window
from podcap.render.plots.figure import EVENT_COLOURS, _column, _integer_ticks, new_figure


def packets_of(result) -> pd.DataFrame:
    """The packets a result's filter selected, with the flow columns
    (``flow_id``, ``c2s``, ``retransmission``) the plots need; epoch-second ``ts``."""
    return result.analysis.packets


def all_packets_of(result) -> pd.DataFrame:
    """Every packet of every file of a result (ignoring the filter), with the flow columns."""
    return result.analysis.all_packets


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
