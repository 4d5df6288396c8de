"""Timestamps: the packet table keeps epoch seconds (floats); reports show UTC datetimes."""

from __future__ import annotations

import pandas as pd


def utc_times(seconds) -> pd.Series:
    """Epoch seconds as UTC datetimes, to the microsecond (floats carry ~0.2 us of rounding noise)."""
    micros = (pd.Series(seconds, dtype="float64") * 1e6).round().astype("Int64")
    return pd.to_datetime(micros, unit="us", utc=True)


def as_datetime(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy of ``table`` with the given epoch-second columns as UTC datetimes."""
    table = table.copy()
    for column in columns:
        table[column] = utc_times(table[column])
    return table
