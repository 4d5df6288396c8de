"""String columns stored as small integer codes while decoding.

A capture holds millions of packets but only a few thousand distinct addresses, URIs and
hosts. Each distinct string gets a code once; the columns hold codes and become pandas
string columns in one Arrow ``take`` at the end (no Python string per packet).
"""

from collections.abc import Iterable

import numpy as np
import pyarrow as pa


class Interner:
    """Maps strings to dense int32 codes; code 0 is the empty string (the 'missing' sentinel)."""

    def __init__(self) -> None:
        self.values: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def code(self, value: str) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found

    def codes(self, values: Iterable[str]) -> np.ndarray:
        return np.array([self.code(v) for v in values], dtype=np.int32)

    def column(self, codes: np.ndarray) -> pa.Array:
        """The Arrow string array for these codes (pandas turns it into its ``str`` dtype)."""
        if not codes.any():  # all empty (no overlay, HTTP not parsed...): no take needed
            offsets = pa.py_buffer(np.zeros(len(codes) + 1, np.int32))
            return pa.StringArray.from_buffers(len(codes), offsets, pa.py_buffer(b""))
        return pa.array(self.values, type=pa.string()).take(pa.array(codes, type=pa.int32()))
