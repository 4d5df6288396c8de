"""String columns stored as small integer codes while decoding.

A capture holds millions of packets but only a few thousand distinct addresses, URIs and
hosts. Each distinct string gets a code once; the columns hold codes and become pandas
categoricals over the strings at the end (no Python string per packet, 4 bytes a row).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Interner:
    """Maps strings to dense int32 codes; code 0 is the empty string (the 'missing' sentinel)."""

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}
        # Address (as an integer) to code, per address family: each chunk meets mostly the
        # addresses of the chunks before, and spelling them again cost 40-50 ms a million packets.
        self.addresses: dict[int, dict[int, int]] = {socket.AF_INET: {}, socket.AF_INET6: {}}

    def code(self, value: str) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found

    def codes(self, values: Iterable[str]) -> np.ndarray:
        return np.array([self.code(v) for v in values], dtype=np.int32)

    def address_codes(self, numbers: Iterable[int], family: int) -> np.ndarray:
        """Codes for IP addresses given as integers; each is spelled only the first time."""
        known = self.addresses[family]
        width = 4 if family == socket.AF_INET else 16
        codes = []
        for number in numbers:
            found = known.get(number)
            if found is None:
                text = socket.inet_ntop(family, number.to_bytes(width, "big"))
                found = known[number] = self.code(text)
            codes.append(found)
        return np.array(codes, dtype=np.int32)


def categorical(codes: np.ndarray, values: list[str]) -> pd.Categorical:
    """``values[codes]`` as a pandas Categorical whose categories are the values used, sorted
    (as ``pd.Categorical`` sorts them): the same column whatever order the strings were met
    in, and no string of another column among its categories."""
    import pandas as pd  # here, not at the top: the decoding itself needs only numpy

    if not codes.any():  # one value throughout (no overlay, HTTP not parsed...): no recoding
        only = pd.Index([values[0] if values else ""], dtype="str")
        return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(only), validate=False)
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)))
    names = [values[i] for i in used]
    order = sorted(range(len(names)), key=names.__getitem__)
    recode = np.zeros(len(values), np.int32)
    recode[used[order]] = np.arange(len(order), dtype=np.int32)
    categories = pd.Index([names[i] for i in order], dtype="str")
    dtype = pd.CategoricalDtype(categories)
    # The codes are valid by construction: from_codes need not check a million of them.
    return pd.Categorical.from_codes(recode[codes], dtype=dtype, validate=False)


def as_text(values: pd.Series) -> pd.Series:
    """A text column (categorical or not) as pandas strings, through one Arrow ``take`` of
    the categories (``astype(str)`` would build a Python string per row)."""
    import pandas as pd
    import pyarrow as pa

    if not isinstance(values.dtype, pd.CategoricalDtype):
        return values.astype("str")
    categories = pa.array(values.cat.categories.astype(str), pa.large_string())
    taken = categories.take(pa.array(values.cat.codes.to_numpy(), pa.int32()))
    return pd.Series(pd.array(taken, dtype="str"), index=values.index, name=values.name)
