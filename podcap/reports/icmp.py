"""The ``icmp`` report: one row per ICMP or ICMPv6 error, tied to the connection it quotes
(``podcap.flows.icmp``): unreachable with its code, fragmentation needed and packet too big
with the next hop's MTU, time exceeded."""

from __future__ import annotations

import pandas as pd

from podcap.decode.times import as_datetime


def icmp_report(analysis) -> pd.DataFrame:
    table = analysis.icmp_errors
    return analysis.without_file_column(as_datetime(table, "ts")).reset_index(drop=True)
