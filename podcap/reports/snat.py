"""The ``snat`` and ``dnat`` reports; the work is done in :mod:`podcap.snat`."""

from __future__ import annotations

import pandas as pd

from podcap.reports.missing import with_na

# What a connection without a rewrite, a second capture or a fix leaves empty.
UNKNOWN_TEXT = ("original_src", "rewritten_by", "dnat", "observed_dst", "fix")
UNKNOWN_NUMBER = ("observed_dport",)


def snat(analysis) -> pd.DataFrame:
    # with_na copies: the cached table stays intact for the dnat report.
    return with_na(analysis.snat, numbers=UNKNOWN_NUMBER, texts=UNKNOWN_TEXT)


def dnat(analysis) -> pd.DataFrame:
    from podcap.snat.report import dnat_report

    return with_na(dnat_report(analysis), numbers=UNKNOWN_NUMBER, texts=UNKNOWN_TEXT)
