"""The report registry: one ``Report`` record per report, every fact about it in one place.

The CLI's help, ``analyze``'s check of the names asked for, the bucket planner and the html
page all read these records. Light on purpose: it imports no pandas or numpy (``podcap
analyze --help`` lists the reports from it); a builder is named ``"module:function"`` and
imported when the report is first built.

Example, a report of one's own (``builder`` may also be the function itself):
    >>> from podcap.reports import report
    >>> @report("talkers", "bytes per source address")
    ... def talkers(analysis):
    ...     return analysis.packets.groupby("src")["length"].sum().reset_index()
"""

from __future__ import annotations

from collections.abc import Callable

from podcap.errors import UsageError
from podcap.reports.record import BucketJoin, Report, Section

_SNAT_DESCRIPTION = (
    "per TCP connection: did the peer see the Pod's address (preserved) or another (snat), "
    "who rewrote it, why, and the fix"
)

# In the order ``--help`` lists them.
REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report(
            "summary",
            "one row per file: link types, packets, time span, flows, HTTP requests, problems",
            "podcap.reports.summary:summary_report",
            per_bucket=BucketJoin.file_counts,
            section=Section("Per file", "No rows.", place=90),
            key_columns=(
                "file",
                "packets",
                "flows",
                "unanswered_connections",
                "refused_connections",
                "reset_connections",
                "retransmitted_packets",
            ),  # fmt: skip
            more_columns=(
                "connections_with_retransmissions",
                "zero_window_packets",
                "http_requests",
                "target",
                "node",
                "matched",
                "duration",
                "link_types",
            ),  # fmt: skip  # fmt: skip
            shown_when_nonzero=("undecoded_packets",),
        ),
        Report(
            "packets",
            "one row per packet: addresses, ports, protocol, lengths, TCP flags, flow, info "
            "(Wireshark's, with the payload's first bytes)",
            "podcap.reports.packets:packets_report",
            http_fields=False,
            payloads=True,  # its info column
            key_columns=("frame", "src", "dst", "proto", "info"),
            more_columns=("length", "ts", "flow_id", "encap", "file"),
        ),
        Report(
            "flows",
            "one row per connection: endpoints, volumes, Zeek state and history, problems",
            "podcap.reports.flows:flows_report",
            per_bucket=BucketJoin.rows,
            row_order=("flow_id",),
            http_fields=False,
            section=Section("Flows", "No flows.", place=20),
            key_columns=(
                "client_ip",
                "client_port",
                "server_ip",
                "server_port",
                "state",
                "history",
            ),  # fmt: skip
            more_columns=(
                "proto",
                "handshake_rtt_ms",
                "bytes_c2s",
                "bytes_s2c",
                "retransmissions",
                "duration",
                "packets_c2s",
                "packets_s2c",
                "flow_id",
                "file",
                "encap",
            ),  # fmt: skip
        ),
        Report(
            "http",
            "one row per HTTP request (any port): method, host, uri, status, latency",
            "podcap.reports.http:http_report",
            per_bucket=BucketJoin.rows,
            row_order=("_file", "frame"),
            section=Section("HTTP requests", "No HTTP requests.", place=30),
            key_columns=("client_ip", "server_ip", "server_port", "method", "uri", "status"),
            more_columns=("latency_ms", "host", "ts", "client_port", "flow_id", "file"),
        ),
        Report(
            "dns",
            "one row per DNS lookup as the application asked it (search-domain queries "
            "folded): verdict (timeout, conntrack race, nxdomain, servfail, truncated, ndots "
            "expansion) and the fix",
            "podcap.reports.dns:dns_report",
            per_capture=True,
            row_order=("ts",),
            http_fields=False,
            section=Section("DNS lookups", "No DNS lookups.", place=35),
            key_columns=("client_ip", "name", "verdict", "rcode", "answer"),
            more_columns=(
                "client_pod",
                "wasted_queries",
                "unanswered",
                "latency_ms",
                "queries",
                "types",
                "servers",
                "final_name",
                "ts",
                "explanation",
                "file",
            ),  # fmt: skip
        ),
        Report(
            "dns_servers",
            "one row per DNS server: queries, answered, unanswered, NXDOMAIN, SERVFAIL, "
            "latency percentiles, clients",
            "podcap.reports.dns_servers:dns_servers_report",
            per_capture=True,
            row_order=("file", "server_ip", "server_port"),
            http_fields=False,
            key_columns=("server_ip", "queries", "unanswered", "p50_ms", "p99_ms"),
            more_columns=(
                "answered",
                "nxdomain",
                "servfail",
                "p90_ms",
                "max_ms",
                "clients",
                "server_port",
                "file",
            ),  # fmt: skip
        ),
        Report(
            "icmp",
            "one row per ICMP/ICMPv6 error (unreachable, fragmentation needed / packet too big "
            "with the next hop's MTU, time exceeded), tied to the connection it quotes",
            "podcap.reports.icmp:icmp_report",
            http_fields=False,
            section=Section("ICMP errors", "No ICMP errors.", place=37),
            key_columns=("sender", "error", "code", "next_hop_mtu", "flow_id", "explanation"),
            more_columns=(
                "to",
                "quoted_proto",
                "quoted_src",
                "quoted_sport",
                "quoted_dst",
                "quoted_dport",
                "ts",
                "frame",
                "file",
            ),  # fmt: skip
        ),
        Report(
            "conntrack",
            "connections conntrack and NAT broke: SNAT port collisions between Pods, SYNs lost "
            "at conntrack insert (both need Pod and node captures), resets after INVALID packets",
            "podcap.reports.conntrack:conntrack_report",
            http_fields=False,
            payloads=True,  # UDP conversations are matched across the points by their payloads
            # On the page for two captures and more: one capture's resets are in the problems.
            section=Section(
                "Conntrack and NAT", "No conntrack or NAT failures found.", place=12, min_files=2
            ),
            key_columns=(
                "verdict",
                "client_ip",
                "client_port",
                "server_ip",
                "server_port",
                "other",
                "explanation",
            ),
            more_columns=(
                "protocol",
                "shared_end",
                "lost",
                "delay_ms",
                "where",
                "fix",
                "ts",
            ),
        ),
        Report(
            "tcp",
            "one row per TCP problem (unanswered SYN, refused, reset, retransmission, zero "
            "window, MTU black hole)",
            "podcap.reports.tcp:tcp_report",
            per_bucket=BucketJoin.rows,
            row_order=("flow_id", "problem"),
            http_fields=False,
            section=Section(
                "Problems",
                "No TCP problems found: every connection was answered and closed cleanly.",
                place=10,
                css="problems",
                plots=("timeline",),
            ),
            key_columns=(
                "problem",
                "client_ip",
                "server_ip",
                "server_port",
                "connections",
                "count",
            ),  # fmt: skip
            more_columns=(
                "hint",
                "first_ts",
                "last_ts",
                "clients",
                "state",
                "client_port",
                "flow_id",
                "file",
            ),  # fmt: skip
            folded="podcap.reports.tcp:grouped_problems",
        ),
        Report(
            "snat",
            _SNAT_DESCRIPTION,
            "podcap.reports.snat:snat",  # matches connections across the captures
            section=Section("SNAT verdicts", "No TCP connections to judge.", place=40),
            key_columns=("client_ip", "server_ip", "server_port", "verdict", "rewritten_by", "fix"),
            more_columns=("observed_src", "dnat", "captures", "explanation"),
        ),
        Report(
            "path",
            "per connection (TCP, UDP, ping) across capture points: outcome, where its packets "
            "(or the answer) stopped, addresses rewritten on the way, why, and the fix",
            "podcap.reports.path:path_report",
            http_fields=False,
            payloads=True,  # UDP and pings are matched across the points by their payloads
            section=Section("Path", "No connections to follow.", place=5, min_files=2),
            key_columns=(
                "protocol",
                "client_ip",
                "server_ip",
                "server_port",
                "outcome",
                "lost_between",
                "explanation",
            ),  # fmt: skip
            more_columns=("fix", "last_seen", "reply_lost_between", "rewrites", "seen_at"),
        ),
        Report(
            "ladder",
            "per packet of each connection: which capture points saw it (arrows) and which "
            "did not (crosses), points as columns",
            "podcap.reports.path:ladder_report",
            http_fields=False,
            payloads=True,
            section=Section("Ladder", "No connections to follow.", place=6, min_files=2),
            # Then the points, named after themselves, in path order while they fit.
            key_columns=("connection", "packet"),
        ),
        Report(
            "hops",
            "per connection and capture point: seen or not, addresses there, history, TTL",
            "podcap.reports.path:hops_report",
            http_fields=False,
            payloads=True,
            key_columns=("connection", "point", "seen", "client", "server", "history"),
            more_columns=("client_ttl", "since_previous_ms", "state", "ts", "hop"),
        ),
        Report(
            "drops",
            "the kernel's drops of the captured Pods' packets on their nodes (capture --drops, "
            "diagnose): reason, function, the namespace it happened in",
            "podcap.reports.path:drops_report",
            http_fields=False,
            key_columns=("ts", "reason", "function", "where", "src", "dst", "dport"),
            more_columns=("sport", "proto", "tcp_flags", "length", "interface", "node"),
        ),
        Report(
            "dnat",
            "connections whose destination was rewritten (Service ClusterIP/NodePort)",
            "podcap.reports.snat:dnat",
            key_columns=("client_ip", "server_ip", "server_port", "dnat", "verdict"),
            more_columns=("observed_dst", "observed_dport", "captures", "explanation"),
        ),
    )
}


def report(name: str, description: str = ""):
    """Register the decorated function ``f(analysis) -> DataFrame`` as report ``name``
    (held in memory, its HTTP columns decoded, no html section of its own)."""

    def register(build: Callable) -> Callable:
        REPORTS[name] = Report(name, description or (build.__doc__ or "").strip(), build)
        return build

    return register


def check_reports(names) -> list[str]:
    """``names`` without repeats, in the order given; UsageError for an unknown one."""
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in REPORTS]
    if unknown and _looks_like_a_file(unknown[0]):
        raise UsageError(
            f"-r {unknown[0]}: -r names a report here, unlike tshark's -r FILE",
            f"give the file without a flag: podcap analyze {unknown[0]}; "
            f"reports: {', '.join(REPORTS)}",
        )
    if unknown:
        raise UsageError(f"unknown report {unknown[0]!r}", f"choose from: {', '.join(REPORTS)}")
    return names


def _looks_like_a_file(name: str) -> bool:
    return "/" in name or name.endswith(CAPTURE_SUFFIXES)


# What a capture file's name ends with (a directory given to analyze is read for these).
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz")


def build_report(name: str, analysis):
    """Run report ``name`` on ``analysis``; UsageError for an unknown name."""
    check_reports([name])
    return REPORTS[name].build(analysis)


def page_sections(files: int | None = None) -> list[Report]:
    """The reports with a section on the html page, in the page's order; with ``files``, those
    a page of that many captures shows."""
    shown = [r for r in REPORTS.values() if r.section]
    if files is not None:
        shown = [r for r in shown if files >= r.section.min_files]
    return sorted(shown, key=lambda r: r.section.place)
