"""Wireshark display filters over the packet table.

``compile_filter(text)`` parses a filter once; ``DisplayFilter.mask(packets, contains, path)``
gives one bool per packet. The fields and operators podcap knows (see ``fields.FIELDS``) are
evaluated natively and vectorised; any other filter goes to tshark with the same meaning.

Example:
    >>> flt = compile_filter('tcp contains "lbtest" || http.request.uri == "/mytest"')
    >>> flt.needles   # byte strings the decoder must scan payloads for
    frozenset({b'lbtest'})
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from podcap.dfilter.bpf import as_display_filter
from podcap.dfilter.evaluate import check_native, evaluate, needles
from podcap.dfilter.fields import FIELDS
from podcap.dfilter.lexer import NotNative
from podcap.dfilter.nodes import Node
from podcap.dfilter.parser import parse
from podcap.dfilter.tshark_fallback import check_filter, matching_frames
from podcap.errors import FilterError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FIELDS",
    "DisplayFilter",
    "TsharkFrames",
    "compile_filter",
    "contains_filter",
    "uri_filter",
]


# What tshark matched, per (filter text, file): kept by a caller that asks about one file in
# parts (podcap.analysis.buckets: each bucket asks for its own packets), so tshark runs once.
TsharkFrames = dict[tuple[str, str], np.ndarray]


@dataclass(frozen=True)
class DisplayFilter:
    """A compiled display filter. ``node`` is None when only tshark can evaluate it."""

    text: str
    node: Node | None
    needles: frozenset[bytes]

    @property
    def native(self) -> bool:
        return self.node is not None

    def mask(
        self,
        packets: pd.DataFrame,
        contains: dict[bytes, np.ndarray],
        path: str | Path,
        tshark_frames: TsharkFrames | None = None,
    ) -> np.ndarray:
        """One bool per row of ``packets`` (one file's table, ``frame`` numbers from 1).

        ``tshark_frames``: where tshark's answers are kept across calls (see TsharkFrames);
        without it, each call that needs tshark runs it."""
        if self.node is not None:
            try:
                return evaluate(self.node, packets, contains)
            except NotNative as reason:
                # Something only this file has (e.g. an overlay's outer UDP ports).
                check_filter(self.text, str(reason))
        kept = {} if tshark_frames is None else tshark_frames
        key = (self.text, str(path))
        if key not in kept:
            kept[key] = matching_frames(path, self.text)
        return np.isin(packets["frame"].to_numpy(), kept[key])


def compile_filter(text: str) -> DisplayFilter:
    """Parse ``text``; raise FilterError if neither podcap nor tshark can evaluate it (with
    the display filter to type instead when ``text`` is a capture filter, ``tcp port 80``)."""
    try:
        return _compile(text.strip())
    except FilterError as exc:
        meant = as_display_filter(text)
        if meant is None or exc.hint:
            raise
        raise FilterError(
            f"display filter {text.strip()!r} is a capture filter (BPF, as tcpdump and "
            "podcap capture -f take)",
            hint=f"as a display filter: -Y '{meant}'",
        ) from exc


def _compile(text: str) -> DisplayFilter:
    try:
        node = parse(text)
        check_native(node)
    except NotNative as reason:
        check_filter(text, str(reason))
        return DisplayFilter(text, None, frozenset())
    except RecursionError as exc:
        # Evaluation walks the same depth, so refuse here rather than fail half-way.
        raise FilterError(f"display filter nested too deeply ({len(text)} characters)") from exc
    return DisplayFilter(text, node, frozenset(needles(node)))


def contains_filter(marker: str) -> str:
    """``--contains TEXT``: the guide's marker test, ``tcp contains "TEXT"``."""
    return f"tcp contains {_quote(marker)}"


def uri_filter(uri: str) -> str:
    """``--uri PATH``: ``http.request.uri == "PATH"``."""
    return f"http.request.uri == {_quote(uri)}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
