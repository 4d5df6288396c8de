"""The ``snat`` and ``dnat`` reports; the work is done in :mod:`podcap.snat`."""

from __future__ import annotations

import pandas as pd


def snat(analysis) -> pd.DataFrame:
    # A copy: the cached table stays intact for the dnat report, whatever callers do with this one.
    return analysis.snat.copy()


def dnat(analysis) -> pd.DataFrame:
    from podcap.snat.report import dnat_report

    return dnat_report(analysis)
