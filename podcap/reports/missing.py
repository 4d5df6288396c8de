"""Missing values as pandas' NA in what a user reads: the decoder's sentinels (-1, "") stay
inside podcap, where they keep its columns fast and plain; a report says "unknown" as
``pd.NA``/NaN, so ``isna()``, ``dropna()``, csv's empty cell, json's null and parquet's null
all mean the same thing."""

from __future__ import annotations

import pandas as pd


def with_na(table: pd.DataFrame, numbers=(), texts=()) -> pd.DataFrame:
    """``table`` with -1 in ``numbers`` (as nullable Int64) and "" in ``texts`` as missing."""
    table = table.copy(deep=False)  # columns are replaced below, never written into
    for column in numbers:
        if column in table:
            values = table[column].astype("Int64")
            table[column] = values.mask(values < 0)
    for column in texts:
        if column in table:
            table[column] = table[column].mask(table[column] == "")
    return table
