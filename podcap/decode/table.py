"""The packet table of decoded chunks: their column arrays joined into one DataFrame with
the schema's columns and dtypes (``podcap.decode.schema``), text columns as categoricals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from podcap.decode.schema import PACKET_COLUMNS
from podcap.decode.strings import Interner, categorical

if TYPE_CHECKING:
    import pandas as pd

STRING_COLUMNS = [name for name, (dtype, _, _) in PACKET_COLUMNS.items() if dtype == "str"]


def packet_table(chunks: list[dict[str, np.ndarray]], strings: Interner) -> pd.DataFrame:
    """The packet table of decoded chunks (string columns as codes into ``strings``). Each
    chunk's columns are popped as they are joined: never two full copies of every column."""
    import pandas as pd

    data = {}
    for name, (dtype, _, _) in PACKET_COLUMNS.items():
        parts = [chunk.pop(name) for chunk in chunks]
        if dtype == "str":
            codes = concat_parts(parts, np.int32)
            data[name] = categorical(codes, strings.values)
        else:
            data[name] = concat_parts(parts, dtype)
        del parts
    # copy=False keeps one block per column: no consolidation copy of a million rows.
    return pd.DataFrame(data, columns=list(PACKET_COLUMNS), copy=False)


def concat_parts(parts: list[np.ndarray], dtype) -> np.ndarray:
    """The parts one after the other, as ``dtype`` (an empty array of it for no part)."""
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


def concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The tables one after the other (the same columns), each categorical column over the
    union of their categories: ``pd.concat`` turns categoricals whose categories differ
    (two files' addresses) into text."""
    import pandas as pd
    from pandas.api.types import union_categoricals

    if len(tables) == 1:
        return tables[0]
    columns = {}
    for name in tables[0]:
        values = [table[name] for table in tables]
        if all(isinstance(v.dtype, pd.CategoricalDtype) for v in values):
            columns[name] = union_categoricals([v.array for v in values], ignore_order=True)
        else:
            columns[name] = pd.concat(values, ignore_index=True)
    return pd.DataFrame(columns, copy=False)
