"""The flows report: one row per connection, from the flows stage (``podcap.flows``)."""

from __future__ import annotations

import pandas as pd

from podcap.decode.times import as_datetime


def flows_report(analysis) -> pd.DataFrame:
    return analysis.without_file_column(as_datetime(analysis.flows, "first_ts", "last_ts"))
