"""The flows report: one row per connection, from the flows stage (``podcap.flows``)."""

from __future__ import annotations

import pandas as pd

from podcap.decode.times import as_datetime
from podcap.reports.missing import with_na


def flows_report(analysis) -> pd.DataFrame:
    flows = with_na(analysis.flows, texts=("encap", "outer_src", "outer_dst"))
    return analysis.without_file_column(as_datetime(flows, "first_ts", "last_ts"))
