"""The ``dns_servers`` report: one row per DNS server, how many queries it got, how it
answered and how fast (latency percentiles of the answered ones): an overloaded CoreDNS, or one
that lost its upstream, shows here. It reads the same exchanges as the ``dns`` report
(``podcap.flows.dns``).
"""

from __future__ import annotations

import pandas as pd

from podcap.reports.dns import unanswered_sendings

SERVER_COLUMNS = [
    "file",
    "server_ip",
    "server_port",
    "queries",
    "answered",
    "unanswered",
    "nxdomain",
    "servfail",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "clients",
]  # fmt: skip  (and ``malformed``: messages to or from it that did not parse)


def dns_servers(exchanges: pd.DataFrame) -> pd.DataFrame:
    """One row per DNS server: how many queries it got, how it answered, and how fast
    (latency percentiles of the answered ones): an overloaded CoreDNS shows here."""
    if not len(exchanges):
        return pd.DataFrame(columns=SERVER_COLUMNS)
    rcode = exchanges["rcode"].to_numpy()
    q = exchanges.assign(
        file=exchanges["file"].astype(str),
        server_ip=exchanges["server_ip"].astype(str),
        answered=rcode >= 0,
        unanswered=unanswered_sendings(exchanges),
        nxdomain=rcode == 3,
        servfail=rcode == 2,
    )
    keys = ["file", "server_ip", "server_port"]
    by = q.groupby(keys, sort=True)
    latency = q[q["answered"]].groupby(keys)["latency_ms"]
    table = by[["tries", "answered", "unanswered", "nxdomain", "servfail"]].sum()
    table = table.rename(columns={"tries": "queries"}).assign(
        p50_ms=latency.quantile(0.5),
        p90_ms=latency.quantile(0.9),
        p99_ms=latency.quantile(0.99),
        max_ms=latency.max(),
        clients=by["client_ip"].nunique(),
    )
    table = table.reset_index()
    return table[SERVER_COLUMNS].round({"p50_ms": 3, "p90_ms": 3, "p99_ms": 3, "max_ms": 3})


def dns_servers_report(analysis) -> pd.DataFrame:
    from podcap.flows.dns import malformed_on_port

    table = dns_servers(analysis.dns_exchanges)
    bad = malformed_on_port(analysis.dns_messages)
    keys = ["file", "server_ip", "server_port"]
    table = table.merge(bad, on=keys, how="outer") if len(bad) else table.assign(malformed=0)
    counts = ["queries", "answered", "unanswered", "nxdomain", "servfail", "clients", "malformed"]
    table[counts] = table[counts].fillna(0).astype("int64")
    return analysis.without_file_column(table).reset_index(drop=True)
