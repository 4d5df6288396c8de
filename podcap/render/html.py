"""The ``html`` format: one self-contained page a person can open, mail or attach to a ticket.

Order follows what an operator asks first: the key numbers, then the problems with their
hints, a timeline of packets per flow, the flow table, the HTTP requests and the SNAT
verdicts, then any other report asked for, and the files last. The sections, their titles and
plots are the reports' records (``podcap.reports.registry``: ``Section``). The page lays out
what it is given and builds no report: for a result of :func:`podcap.analysis.run.analyze`,
``result.page`` (``podcap.analysis.page``) holds also the sections not asked for with
``--report`` and the timeline's packets, so ``podcap analyze x.pcap --format html`` gives the
whole page; a plain ``{name: DataFrame}`` gives its tables alone.

Self-contained: styles inline, the plot an inline base64 PNG, and a Content-Security-Policy
that forbids the browser any fetch, so opening the page never touches the network.
"""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import pandas as pd

from podcap.render.files import write_text_output
from podcap.reports.registry import REPORTS, Section

DEFAULT_MAX_ROWS = 200
# The reports without a section of their own come after the sections placed before this.
OTHER_REPORTS_PLACE = 50
# Key numbers shown as cards: (summary column, label).
KEY_NUMBERS = [
    ("packets", "packets"),
    ("matched", "matched the filter"),
    ("flows", "flows"),
    ("http_requests", "HTTP requests"),
    ("unanswered_connections", "unanswered connections"),
    ("refused_connections", "refused connections"),
    ("reset_connections", "reset connections"),
    ("retransmitted_packets", "retransmitted packets"),
    ("zero_window_packets", "zero-window packets"),
]
PROBLEM_NUMBERS = {
    "unanswered_connections", "refused_connections", "reset_connections",
    "retransmitted_packets", "zero_window_packets",
}  # fmt: skip
# The plots a section may name (``Section.plots``): heading, caption, alternative text.
PLOTS = {
    "timeline": (
        "Timeline",
        "One row per flow, one dot per packet; red labels: SYNs never answered, orange: refused.",
        "timeline of packets per flow",
    ),
}
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 1em 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.5em 0.9em; min-width: 7em; }
.card .number { font-size: 1.6em; font-weight: bold; }
.card.bad { border-color: #d62728; background: #fdecea; }
.card.bad .number { color: #b71c1c; }
table.report { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
table.report th, table.report td { border: 1px solid #ddd; padding: 0.25em 0.5em;
  text-align: left; vertical-align: top; }
table.report th { background: #f3f3f3; }
section.problems table.report td { background: #fff8f7; }
.ok { color: #1b5e20; } .more { color: #555; font-style: italic; }
img.plot { max-width: 100%; border: 1px solid #eee; }
"""


def write_html(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    """Renderer entry (``RENDERERS["html"]``): the page to ``output``, or stdout."""
    max_rows = options.get("max_rows", DEFAULT_MAX_ROWS)
    return write_text_output(html_report(reports, max_rows=max_rows), output, stdout)


def html_report(
    reports: dict[str, pd.DataFrame], max_rows: int | None = DEFAULT_MAX_ROWS, title: str = ""
) -> str:
    """The whole page as text. ``max_rows`` caps each table (None: every row)."""
    page = getattr(reports, "page", None)
    tables = dict(page.tables if page is not None else reports)
    files = page.files if page is not None else []
    title = title or _default_title(files)
    body = [
        f"<h1>{_text(title)}</h1>",
        _meta(page),
        _key_numbers(tables),
        *(
            _section(name, section, tables, page, max_rows)
            for name, section in _layout(tables, page)
        ),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">\n"
        f"<title>{_text(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _layout(tables: dict[str, pd.DataFrame], page) -> list[tuple[str, Section]]:
    """(name, section) of each table to show, in the page's order; a report without a
    section of its own gets a plain one."""
    missing = page.not_built if page is not None else {}
    shown = []
    for name in [*tables, *(n for n in missing if n not in tables)]:
        record = REPORTS.get(name)
        section = record.section if record is not None else None
        shown.append((name, section or Section(name, "No rows.", OTHER_REPORTS_PLACE)))
    return sorted(shown, key=lambda item: item[1].place)


def _default_title(files: list[str]) -> str:
    if not files:
        return "podcap report"
    if len(files) > 3:
        return f"podcap report: {len(files)} captures"
    return "podcap report: " + ", ".join(Path(f).name for f in files)


def _meta(page) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"generated by podcap at {generated}"]
    if page is not None and page.files:
        lines.append("files: " + ", ".join(_text(f) for f in page.files))
        if page.filter_text:
            lines.append(f"display filter: <code>{_text(page.filter_text)}</code>")
    return "<p class='meta'>" + "<br>".join(lines) + "</p>"


def _key_numbers(tables: dict[str, pd.DataFrame]) -> str:
    summary = tables.get("summary")
    if summary is None or summary.empty:
        return ""
    cards = []
    for column, label in KEY_NUMBERS:
        if column not in summary or (column == "matched" and _no_filter(summary)):
            continue
        value = int(summary[column].sum())
        bad = column in PROBLEM_NUMBERS and value > 0
        cards.append(_card(column, value, label, bad))
    snat = tables.get("snat")
    if snat is not None and not snat.empty:
        for verdict, count in snat["verdict"].value_counts().items():
            cards.append(
                _card(f"snat_{verdict}", int(count), f"SNAT: {verdict}", verdict == "snat")
            )
    return "<div class='cards'>" + "".join(cards) + "</div>"


def _no_filter(summary: pd.DataFrame) -> bool:
    return bool((summary["matched"] == summary["packets"]).all())


def _card(key: str, value: int, label: str, bad: bool) -> str:
    css = "card bad" if bad else "card"
    return (
        f"<div class='{css}' data-key='{_text(key)}'><div class='number'>{value}</div>"
        f"<div class='label'>{_text(label)}</div></div>"
    )


def _section(
    name: str, section: Section, tables: dict[str, pd.DataFrame], page, max_rows: int | None
) -> str:
    """The report's section, then its plots."""
    css_attr = f" class='{section.css}'" if section.css else ""
    opening = f"<section id='{_text(name)}'{css_attr}><h2>{_text(section.title)}"
    if name not in tables:  # a section the run could not build
        return f"{opening}</h2><p class='more'>{_text(page.not_built[name])}</p></section>"
    table = tables[name]
    opening += f" ({len(table)})</h2>"
    if table.empty:
        text = f"{opening}<p class='ok'>{_text(section.empty)}</p></section>"
    else:
        text = opening + table_html(table, max_rows) + "</section>"
    inputs = page.plots if page is not None else {}
    return "\n".join(
        [text, *(_plot(plot, inputs[plot]) for plot in section.plots if plot in inputs)]
    )


def table_html(table: pd.DataFrame, max_rows: int | None = DEFAULT_MAX_ROWS) -> str:
    """One report as an HTML table, cells escaped, at most ``max_rows`` rows."""
    shown = table if max_rows is None else table.head(max_rows)
    text = shown.to_html(
        index=False,
        escape=True,
        na_rep="",
        border=0,
        classes="report",
        float_format=lambda value: f"{value:.3f}",
    )
    if len(shown) < len(table):
        text += (
            f"<p class='more'>{len(table) - len(shown)} more rows not shown "
            "(--max-rows 0 shows all)</p>"
        )
    return text


def _plot(name: str, timeline) -> str:
    from podcap.render import plots

    heading, caption, alt = PLOTS[name]
    figure = plots.packet_timeline(timeline.packets, timeline.flows, timeline.max_flows)
    encoded = base64.b64encode(plots.figure_png(figure)).decode("ascii")
    return (
        f"<section id='{name}'><h2>{_text(heading)}</h2><p class='meta'>{_text(caption)}</p>"
        f"<img class='plot' alt='{_text(alt)}' src='data:image/png;base64,{encoded}'>"
        "</section>"
    )


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)
