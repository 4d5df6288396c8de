"""Timestamps: the packet table keeps epoch seconds (floats); reports show UTC datetimes."""

from __future__ import annotations

import pandas as pd


def as_datetime(table: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """A copy of ``table`` with the given epoch-second columns as UTC datetimes."""
    table = table.copy()
    for column in columns:
        # Epoch floats carry ~0.2 us of rounding noise: show whole microseconds.
        micros = (table[column].astype("float64") * 1e6).round().astype("Int64")
        table[column] = pd.to_datetime(micros, unit="us", utc=True)
    return table
