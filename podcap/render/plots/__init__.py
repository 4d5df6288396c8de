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

from podcap.render.plots.figure import EVENT_COLOURS, POINT_ORDER, figure_png, new_figure
from podcap.render.plots.packets import (
    all_packets_of,
    flow_labels,
    packet_events,
    packet_timeline,
    packets_of,
    plot_tcp_health,
    rtt_samples,
    tcp_health,
)
from podcap.render.plots.tables import (
    capture_points,
    plot_capture_points,
    plot_clock_offsets,
    plot_snat_hops,
    plot_top_talkers,
    snat_hops,
    top_talkers,
    unanswered_syns,
)

__all__ = [
    "EVENT_COLOURS",
    "POINT_ORDER",
    "all_packets_of",
    "capture_points",
    "figure_png",
    "flow_labels",
    "new_figure",
    "packet_events",
    "packet_timeline",
    "packets_of",
    "plot_capture_points",
    "plot_clock_offsets",
    "plot_snat_hops",
    "plot_tcp_health",
    "plot_top_talkers",
    "rtt_samples",
    "snat_hops",
    "tcp_health",
    "top_talkers",
    "unanswered_syns",
]
