"""The ``snat`` and ``dnat`` reports; the work is done in :mod:`podcap.snat`."""

from __future__ import annotations

import pandas as pd

from podcap.reports.registry import report


@report(
    "snat",
    "per TCP connection: did the peer see the Pod's address (preserved) or another (snat), "
    "who rewrote it, why, and the fix",
)
def snat(analysis) -> pd.DataFrame:
    # A copy: the cached table stays intact for the dnat report, whatever callers do with this one.
    return analysis.snat.copy()


@report("dnat", "connections whose destination was rewritten (Service ClusterIP/NodePort)")
def dnat(analysis) -> pd.DataFrame:
    from podcap.snat.report import dnat_report

    return dnat_report(analysis)
