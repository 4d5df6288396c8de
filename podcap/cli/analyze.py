"""``podcap analyze``: flags in, ``podcap.analysis.run.analyze`` called, reports rendered."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from podcap.cli import ExitStatus, app, end_at_once, error, render_reports, warn
from podcap.cli.options import FORMATS, OutputFormat, ReportOutput
from podcap.errors import UsageError
from podcap.reports.registry import REPORTS as REPORT_RECORDS
from podcap.reports.registry import check_reports

# From the report records, which import no pandas (the help must stay fast).
# tests/test_cli_analyze.py checks both against podcap.render.RENDERERS and the registry.
REPORTS = ", ".join(REPORT_RECORDS)
__all__ = ["FORMATS", "REPORTS", "analyze"]


Files = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="FILE...",
        help="Capture files (pcap, pcapng, or gzip of either), directories of them, or - for "
        "standard input.",
        show_default=False,
    ),
]
ReportNames = Annotated[
    list[str],
    typer.Option("--report", "-r", help=f"Report to build; repeat or comma-separate: {REPORTS}."),
]
DisplayFilter = Annotated[
    str | None,
    typer.Option(
        "--filter",
        "-Y",
        "-f",
        help="Wireshark display filter, e.g. 'tcp contains \"lbtest\"' or "
        "'http.request.uri == \"/mytest\"'. Filters outside the built-in fields run through tshark.",
    ),
]
Contains = Annotated[
    str | None, typer.Option("--contains", help='Shortcut for tcp contains "TEXT".')
]
Uri = Annotated[str | None, typer.Option("--uri", help='Shortcut for http.request.uri == "PATH".')]


EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="native: podcap's fast decoder. tshark: Wireshark's own dissectors (slower; "
        "HTTP only where Wireshark decodes it).",
    ),
]
MaxRows = Annotated[
    int,
    typer.Option(
        "--max-rows", help="Rows shown per report in the table and html formats (0: all)."
    ),
]
Columns = Annotated[
    str | None,
    typer.Option(
        "--columns",
        metavar="A,B,...",
        help="table: show these columns, in this order (default: each report's key columns, "
        "then what fits the width).",
    ),
]
Wide = Annotated[bool, typer.Option("--wide", help="table: show every column.")]
AllRows = Annotated[
    bool,
    typer.Option(
        "--all-rows",
        help="table: one row per problem (tcp), not repeated problems folded into one row "
        "per problem and server.",
    ),
]
InMemoryLimit = Annotated[
    int,
    typer.Option(
        "--in-memory-limit",
        metavar="PACKETS",
        help="Captures estimated above this many packets are analyzed in buckets of "
        "conversations spilled to disk (summary, flows, tcp, http), so memory stays bounded; "
        "0: always in memory.",
    ),
]
DaskFlag = Annotated[
    bool,
    typer.Option(
        "--dask",
        help="Analyze each capture on a worker of a Dask cluster: a local one started for the "
        "run, or the one --scheduler names; the reports of every capture at once (path, "
        "packets, snat...) on one worker. FILE may be a URL (s3://...). Needs "
        "pip install 'podcap[dask]'.",
    ),
]
Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="The scheduler of a running Dask cluster (implies --dask); its workers read the "
        "files at the paths given.",
    ),
]
DaskWorkers = Annotated[
    int | None,
    typer.Option(
        "--dask-workers",
        metavar="N",
        help="Worker processes of the local Dask cluster (implies --dask; default: one per CPU).",
    ),
]
Dataset = Annotated[
    bool,
    typer.Option(
        "--dataset",
        help="With -F parquet -o DIR: each report as a Parquet dataset, DIR/REPORT/"
        "capture=FILE/bucket=N/ (hive partitions, the sidecars' node, pod and point in each "
        "row), for pandas, DuckDB, Dask or Spark.",
    ),
]
# The snat and dnat reports' inputs (podcap.snat.inputs.snat_inputs): read before decoding.
PodCidrs = Annotated[
    list[str], typer.Option("--pod-cidr", help="snat: a Pod CIDR of the cluster (repeatable).")
]
NodeIps = Annotated[list[str], typer.Option("--node-ip", help="snat: a node IP (repeatable).")]
ServiceCidrs = Annotated[
    list[str], typer.Option("--service-cidr", help="snat: the Service CIDR (repeatable).")
]
FactsFile = Annotated[
    Path | None,
    typer.Option(
        "--facts", help="snat: cluster facts, YAML or JSON (pod_cidrs, nodes, pods, ...)."
    ),
]
MasqConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--masq-config", help="snat: the ip-masq-agent ConfigMap (YAML/JSON) of the node."
    ),
]
IptablesFile = Annotated[
    Path | None, typer.Option("--iptables", help="snat: 'iptables-save' output from the node.")
]


@app.command()
def analyze(
    files: Files = None,
    report: ReportNames = ["summary"],  # noqa: B006 - typer reads it, nothing appends
    display_filter: DisplayFilter = None,
    contains: Contains = None,
    uri: Uri = None,
    output_format: OutputFormat = "table",
    output: ReportOutput = None,
    engine: EngineOption = "native",
    max_rows: MaxRows = 50,
    columns: Columns = None,
    wide: Wide = False,
    all_rows: AllRows = False,
    in_memory_limit: InMemoryLimit = 1_500_000,
    pod_cidr: PodCidrs = [],  # noqa: B006
    node_ip: NodeIps = [],  # noqa: B006
    service_cidr: ServiceCidrs = [],  # noqa: B006
    facts: FactsFile = None,
    masq_config: MasqConfigFile = None,
    iptables: IptablesFile = None,
    dask: DaskFlag = False,
    scheduler: Scheduler = None,
    dask_workers: DaskWorkers = None,
    dataset: Dataset = False,
) -> None:
    """Analyze captures: who talked to whom, which connections failed and how, which HTTP
    requests arrived, whether the marker arrived.

    Exit status: 0 when something matched (always, without a filter), 1 when the filter
    matched nothing (as grep), 2 on error. An unreadable file gives one error line and the
    other files are still analyzed (exit 2 at the end).

    A pcap of 32 MiB or more is decoded by two processes when a second CPU is free
    (PODCAP_DECODE_HELPER=0: always one). With --dask each capture is analyzed on a worker
    of a Dask cluster instead, and the results joined here.

    Example: podcap analyze capture.pcap --contains lbtest -r summary -r flows
    """
    from podcap.analysis.allocator import keep_freed_memory
    from podcap.analysis.run import analyze as run_analysis
    from podcap.render import check_format

    keep_freed_memory()  # this process's allocator: before the first array (and the fork)

    # Flag mistakes are caught before the captures are read, not after.
    output_format = check_format(output_format.lower())
    if max_rows < 0:
        raise UsageError(f"--max-rows {max_rows}: must be 0 (every row) or more")
    if in_memory_limit < 0:
        raise UsageError(f"--in-memory-limit {in_memory_limit}: must be 0 (no limit) or more")
    if dataset and (output_format != "parquet" or output in (None, "-")):
        raise UsageError("--dataset writes Parquet into a directory", "add -F parquet -o DIR")
    expression = _combine_filters(display_filter, contains, uri)
    on_dask = _dask_options(dask, scheduler, dask_workers)
    snat = _snat_inputs(pod_cidr, node_ip, service_cidr, facts, masq_config, iptables)
    reports = [name.strip() for item in report for name in item.split(",") if name.strip()]
    if not reports:
        raise UsageError("--report names no report", f"choose from: {REPORTS}")
    check_reports(reports)  # before "no file": `analyze -r FILE` is tshark's habit
    if not files:
        raise UsageError(
            "no capture file given", "give FILE..., a directory of captures, or - for stdin"
        )
    with _progress() as progress:
        result = run_analysis(
            files,
            filter=expression,
            reports=reports,
            engine=engine,
            snat=snat,
            on_progress=progress,
            in_memory_limit=in_memory_limit,
            page=output_format == "html",  # the whole page, also for captures read in buckets
            dask=on_dask,
        )
    for message in result.warnings:
        warn(message)
    shown = result  # html reads the whole analysis (result.page), not only the tables
    if output_format == "table" and not all_rows:
        shown = {name: REPORT_RECORDS[name].folded_view(table) for name, table in result.items()}
    if dataset:
        from podcap.render.dataset import write_dataset

        write_dataset(result, output, list(result.sidecars), result.sidecars)
    else:
        render_reports(
            shown,
            output_format,
            output,
            max_rows=max_rows or None,
            columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
            wide=wide,
        )
    for exc in result.errors:
        error(str(exc))
    # Reports written, files closed, helper processes reaped, the spinner stopped.
    end_at_once()
    if result.errors:
        raise typer.Exit(ExitStatus.ERROR)
    if result.filtered and result.matched == 0:
        raise typer.Exit(ExitStatus.NOTHING_MATCHED)


def _dask_options(dask: bool, scheduler: str | None, workers: int | None):
    """Where the analysis runs: None (this process) or a Dask cluster's options."""
    if workers is not None and workers < 1:
        raise UsageError(f"--dask-workers {workers}: must be 1 or more")
    if scheduler is not None and workers is not None:
        raise UsageError(
            "--dask-workers sizes the local cluster; the one --scheduler names has its own"
        )
    if not (dask or scheduler or workers):
        return None
    from podcap.analysis.on_dask import DaskOptions

    return DaskOptions(scheduler=scheduler, workers=workers)


def _snat_inputs(pod_cidrs, node_ips, service_cidrs, facts, masq_config, iptables):
    """The snat inputs given, read and checked now; None when none is (yaml and the rule
    parsers then stay unimported: 20 ms of every command's start)."""
    if not (pod_cidrs or node_ips or service_cidrs or facts or masq_config or iptables):
        return None
    from podcap.snat.inputs import snat_inputs

    return snat_inputs(pod_cidrs, node_ips, service_cidrs, facts, masq_config, iptables)


def _combine_filters(
    display_filter: str | None, contains: str | None, uri: str | None
) -> str | None:
    """--filter, --contains and --uri together: all must hold."""
    if contains is None and uri is None:
        return display_filter or None  # alone, it needs no parentheses
    from podcap.dfilter import contains_filter, uri_filter

    parts = [f"({display_filter})"] if display_filter else []
    if contains is not None:
        parts.append(contains_filter(contains))
    if uri is not None:
        parts.append(uri_filter(uri))
    return " && ".join(parts)


class _progress:
    """A spinner on stderr naming the current step, only when stderr is a terminal."""

    def __enter__(self):
        self.status = None
        if sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status("podcap analyze")
            self.status.start()
        return self.update

    def update(self, message: str) -> None:
        if self.status is not None:
            self.status.update(message)

    def __exit__(self, *exc_info) -> None:
        if self.status is not None:
            self.status.stop()
