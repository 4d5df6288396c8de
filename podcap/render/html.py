"""The ``html`` format: one self-contained page a person can open, mail or attach to a ticket.

Order follows what an operator asks first: the key numbers, then the problems with their
hints, a timeline of packets per flow, the flow table, the HTTP requests and the SNAT
verdicts, then any other report asked for. When the reports come from
:func:`podcap.analysis.run.analyze` (they carry ``.analysis``), the sections not asked for with
``--report`` are built here, so ``podcap analyze x.pcap --format html`` gives the whole page.

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

DEFAULT_MAX_ROWS = 200
# Sections of the page, in order, with their headings and what an empty table means.
SECTIONS = {
    "tcp": ("Problems", "No TCP problems found: every connection was answered and closed cleanly."),
    "flows": ("Flows", "No flows."),
    "http": ("HTTP requests", "No HTTP requests."),
    "snat": ("SNAT verdicts", "No TCP connections to judge."),
}
# Key numbers shown as cards: (summary column, label).
KEY_NUMBERS = [
    ("packets", "packets"),
    ("matched", "matched the filter"),
    ("flows", "flows"),
    ("http_requests", "HTTP requests"),
    ("unanswered_syn", "unanswered SYNs"),
    ("refused", "refused"),
    ("resets", "resets"),
    ("retransmissions", "retransmissions"),
    ("zero_windows", "zero windows"),
]
PROBLEM_NUMBERS = {"unanswered_syn", "refused", "resets", "retransmissions", "zero_windows"}
TIMELINE_MAX_FLOWS = 40
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
    analysis = getattr(reports, "analysis", None)
    tables = complete_reports(reports, analysis)
    files = list(analysis.files) if analysis is not None else []
    title = title or _default_title(files)
    body = [
        f"<h1>{_text(title)}</h1>",
        _meta(analysis),
        _key_numbers(tables),
        _section("tcp", tables, max_rows, css="problems"),
        _timeline(analysis),
        *(_section(name, tables, max_rows) for name in ("flows", "http", "snat")),
        *(
            _section(name, tables, max_rows)
            for name in tables
            if name not in {*SECTIONS, "summary"}
        ),
        _section("summary", tables, max_rows, heading="Per file"),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CONTENT_SECURITY_POLICY}\">\n"
        f"<title>{_text(title)}</title>\n<style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _default_title(files: list[str]) -> str:
    if not files:
        return "podcap report"
    if len(files) > 3:
        return f"podcap report: {len(files)} captures"
    return "podcap report: " + ", ".join(Path(f).name for f in files)


def complete_reports(reports: dict[str, pd.DataFrame], analysis) -> dict[str, pd.DataFrame]:
    """The reports given, plus the page's own sections built from ``analysis`` when missing."""
    tables = dict(reports)
    if analysis is None:
        return tables
    from podcap.reports import build_report

    for name in ("summary", *SECTIONS):
        if name not in tables:
            tables[name] = build_report(name, analysis)
    return tables


def _meta(analysis) -> str:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"generated by podcap at {generated}"]
    if analysis is not None:
        lines.append("files: " + ", ".join(_text(f) for f in analysis.files))
        if analysis.filter_text:
            lines.append(f"display filter: <code>{_text(analysis.filter_text)}</code>")
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
    name: str, tables: dict[str, pd.DataFrame], max_rows: int | None, css: str = "",
    heading: str = "",
) -> str:  # fmt: skip
    if name not in tables:
        return ""
    default_heading, empty_text = SECTIONS.get(name, (name, "No rows."))
    heading = heading or default_heading
    table = tables[name]
    css_attr = f" class='{css}'" if css else ""
    opening = f"<section id='{_text(name)}'{css_attr}><h2>{_text(heading)} ({len(table)})</h2>"
    if table.empty:
        return f"{opening}<p class='ok'>{_text(empty_text)}</p></section>"
    return opening + table_html(table, max_rows) + "</section>"


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


def _timeline(analysis) -> str:
    if analysis is None or analysis.flows.empty:
        return ""
    from podcap.render import plots

    # Whole flows, also with a filter: the packets around a match tell what happened to it.
    figure = plots.packet_timeline(analysis.all_packets, analysis.flows, TIMELINE_MAX_FLOWS)
    encoded = base64.b64encode(plots.figure_png(figure)).decode("ascii")
    return (
        "<section id='timeline'><h2>Timeline</h2>"
        "<p class='meta'>One row per flow, one dot per packet; red labels: SYNs never "
        "answered, orange: refused.</p>"
        f"<img class='plot' alt='timeline of packets per flow' src='data:image/png;base64,{encoded}'>"
        "</section>"
    )


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)
