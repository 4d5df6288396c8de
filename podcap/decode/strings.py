"""String columns stored as small integer codes while decoding.

A capture holds millions of packets but only a few thousand distinct addresses, URIs and
hosts. Each distinct string gets a code once; the columns hold codes and become pandas
string columns in one Arrow ``take`` at the end (no Python string per packet).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


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

    def column(self, codes: np.ndarray) -> pa.Array:
        """The Arrow string array for these codes (pandas turns it into its ``str`` dtype).

        Built as ``large_string``, the type pandas' ``str`` dtype stores: a plain ``string``
        array would be cast (copied) again by pandas, 30-40 ms per column of a million rows.
        """
        import pyarrow as pa  # here, not at the top: the decoding itself needs only numpy

        if not codes.any():  # all empty (no overlay, HTTP not parsed...): no take needed
            offsets = pa.py_buffer(np.zeros(len(codes) + 1, np.int64))
            return pa.LargeStringArray.from_buffers(len(codes), offsets, pa.py_buffer(b""))
        values = pa.array(self.values, type=pa.large_string())
        return values.take(pa.array(codes, type=pa.int32()))
