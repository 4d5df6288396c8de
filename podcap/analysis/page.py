"""What the html page shows: its sections' reports and its plots' inputs, in either strategy.

The page (``podcap.render.html``) lays out a :class:`Page` and draws its plots from the
DataFrames here; it builds no report. In memory, the sections not asked for with ``--report``
are built from the shared Analysis; in buckets, the run builds them bucket by bucket beside the
reports asked for (``podcap.analysis.buckets``), so both give the same page, but for the sections
that need every packet at once (snat), which a capture too large to hold cannot have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from podcap.reports.registry import page_sections

if TYPE_CHECKING:
    import pandas as pd

    from podcap.analysis.context import Analysis

TIMELINE_MAX_FLOWS = 40
# What the timeline draws from each packet (``podcap.render.plots.packet_timeline``), with the
# columns that put the packets in the whole-capture order.
TIMELINE_COLUMNS = [
    "file", "frame", "ts", "flow_id", "ip_proto", "tcp_flags", "payload_len", "retransmission",
]  # fmt: skip
TIMELINE_ORDER = ("_file", "frame")  # as ``Report.row_order``: the buckets' parts joined so
NOT_IN_BUCKETS = (
    "Not built: the capture was analyzed in buckets of conversations (--in-memory-limit) and "
    "this report needs every packet at once; ask for it with --report to hold the capture whole."
)


@dataclass
class Timeline:
    """The timeline's inputs: the first flows and every packet of theirs (also with a filter:
    the packets around a match tell what happened to it)."""

    packets: pd.DataFrame
    flows: pd.DataFrame  # the flows report
    max_flows: int = TIMELINE_MAX_FLOWS


@dataclass
class Page:
    """Every table and plot input of the page."""

    tables: dict[str, pd.DataFrame]  # the reports asked for, then the sections not asked for
    files: list[str] = field(default_factory=list)
    filter_text: str | None = None
    plots: dict[str, Timeline] = field(default_factory=dict)  # by ``Section.plots`` name
    not_built: dict[str, str] = field(default_factory=dict)  # section -> why it is missing


def page_of(tables: dict[str, pd.DataFrame], analysis: Analysis | None) -> Page:
    """The page of an analysis held in memory: ``tables`` and the sections missing from it;
    without an analysis (captures analyzed in buckets), ``tables`` alone."""
    if analysis is None:
        return Page(dict(tables))
    tables = dict(tables)
    for section in page_sections(len(analysis.files)):
        if section.name not in tables:
            tables[section.name] = section.build(analysis)
    return Page(
        tables,
        files=analysis.files,
        filter_text=analysis.filter_text,
        plots=_plots(timeline_of(analysis.all_packets, tables["flows"])),
    )


def bucket_page(
    tables: dict[str, pd.DataFrame], files: list[str], filter_text, timeline_packets
) -> Page:
    """The page of captures analyzed in buckets: ``tables`` hold the reports asked for and the
    sections that run per bucket; ``timeline_packets`` the buckets' parts of it."""
    return Page(
        tables,
        files=files,
        filter_text=filter_text,
        plots=_plots(timeline_of(timeline_packets, tables["flows"])),
        not_built={
            r.name: NOT_IN_BUCKETS for r in page_sections(len(files)) if r.name not in tables
        },
    )


def bucket_sections(reports: list[str]) -> list[str]:
    """``reports`` and the page's sections that can be built bucket by bucket."""
    extra = [r.name for r in page_sections() if r.per_bucket and r.name not in reports]
    return [*reports, *extra]


def timeline_of(packets: pd.DataFrame, flows: pd.DataFrame) -> Timeline | None:
    """The timeline's inputs, or None without flows to draw."""
    if flows.empty:
        return None
    return Timeline(timeline_packets(packets, flows), flows)


def timeline_packets(packets: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """The packets of the flows the timeline shows (``flows``: a flows report): the first
    flows by their first packet, as the plot orders them. One bucket's are its part."""
    shown = flows.sort_values("first_ts", kind="stable").head(TIMELINE_MAX_FLOWS)["flow_id"]
    chosen = packets["flow_id"].isin(shown.to_numpy()).to_numpy()
    return packets.loc[chosen, TIMELINE_COLUMNS].reset_index(drop=True)


def _plots(timeline: Timeline | None) -> dict[str, Timeline]:
    return {"timeline": timeline} if timeline is not None else {}
