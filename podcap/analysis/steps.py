"""The steps both strategies share: read each file, combine the captures, follow the flows,
apply the filter, build the reports.

``podcap.analysis.memory`` (everything at once) and ``podcap.analysis.buckets`` (conversation by
conversation) are siblings over these; ``podcap.analysis.run`` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from podcap import sidecar
from podcap.errors import DecodeError, PodcapError
from podcap.reports.registry import REPORTS, page_sections

if TYPE_CHECKING:
    import pandas as pd

    from podcap.analysis.context import Analysis


@dataclass(frozen=True)
class Request:
    """What one analysis is asked for, checked: report names, the compiled filter, ..."""

    reports: list[str]
    display_filter: Any  # a podcap.dfilter.DisplayFilter, or None
    engine: str = "native"
    snat: Any = None  # a podcap.snat.inputs.SnatInputs the user gave, or None
    files_given: int = 1
    page: bool = False  # also what the html page shows (``podcap.analysis.page``)

    @property
    def needles(self) -> frozenset[bytes]:
        return self.display_filter.needles if self.display_filter else frozenset()

    @property
    def needs_http_lengths(self) -> bool:
        """Whether the decoder measures each HTTP message: wherever HTTP is read, the message
        table (``podcap.flows.messages``) hops from message to message by those lengths."""
        return self.needs_http

    @property
    def needs_preview(self) -> bool:
        """Whether the decoder keeps each payload's first bytes: the packets report's info,
        the path's datagrams matched across the points."""
        return any(REPORTS[name].payloads for name in self._built)

    @property
    def _built(self) -> list[str]:
        """The reports asked for, and the html page's sections when the page is made."""
        shown = page_sections(self.files_given) if self.page else []
        return [*self.reports, *(r.name for r in shown)]

    @property
    def filter_text(self) -> str | None:
        return self.display_filter.text if self.display_filter else None

    @property
    def needs_http(self) -> bool:
        """Whether the decoder must parse HTTP first lines: a report built reads them, or the
        filter may."""
        return any(REPORTS[name].http_fields for name in self._built) or (
            "http" in (self.filter_text or "").lower()
        )


@dataclass
class Outcome:
    """What a strategy gives back: the reports and what happened on the way."""

    tables: dict[str, pd.DataFrame]
    matched: int
    errors: list[PodcapError]
    warnings: list[str]
    analysis: Any = None  # the shared Analysis, when the captures were held whole
    page: Any = None  # a podcap.analysis.page.Page, when asked for
    sidecars: dict[str, dict] = field(default_factory=dict)  # per file read: its sidecar ({})


def start_early(path: str, request: Request):
    """The native reading of ``path`` started (``podcap.decode.start_reading``), or None: for
    the tshark engine, or when the file cannot be opened (reading it again later gives that
    error its place among the files')."""
    if request.engine != "native":
        return None
    from podcap.decode import start_reading

    try:
        return start_reading(path, tuple(request.needles), **_decoder_options(request))
    except DecodeError:
        return None


def read_all(paths: list[str], request: Request, progress, early=None):
    """Each file read whole (``read_each``); the first one's reading may have started early."""

    def read(index: int, path: str):
        progress(f"reading {path}")
        if index == 0 and early is not None:
            return early.finish()
        return read_file(path, request, progress)

    return read_each(paths, read)


def read_each(paths: list[str], read: Callable[[int, str], Any]):
    """``read(index, path)`` (a Capture) for each file: (captures by path, one DecodeError per
    file that could not be read, warnings naming their file). Raises DecodeError when no
    file could be read."""
    captures: dict[str, Any] = {}
    errors: list[PodcapError] = []
    warnings: list[str] = []
    for index, path in enumerate(paths):
        try:
            capture = read(index, path)
        except DecodeError as exc:
            errors.append(exc)
            continue
        captures[path] = capture
        warnings.extend(f"{path}: {w}" if path not in w else w for w in capture.warnings)
    if not captures:
        if len(errors) == 1:
            raise errors[0]
        raise DecodeError(f"none of the {len(paths)} files could be read: {errors[0]}")
    return captures, errors, warnings


def read_file(path: str, request: Request, progress):
    """``path`` decoded whole, as the request needs it (the native decoder, or tshark)."""
    needles = tuple(request.needles)
    if request.engine == "tshark":
        from podcap.decode.tshark_engine import read_capture_tshark

        return read_capture_tshark(
            path, needles=needles, on_progress=progress, preview=request.needs_preview
        )
    from podcap.decode import read_capture

    return read_capture(path, needles=needles, **_decoder_options(request))


def _decoder_options(request: Request) -> dict[str, bool]:
    return {
        "http": request.needs_http,
        "preview": request.needs_preview,
        "http_lengths": request.needs_http_lengths,
    }


def combine_captures(captures: dict[str, Any]) -> pd.DataFrame:
    """All files' packets in one table, with ``file`` (categorical), the Linux cooked
    capture columns ``if_index`` and ``pkt_type`` (-1 where the decoder has none) and, when
    the captures were read with ``preview``, ``payload_head`` (bytes)."""
    import pandas as pd

    tables = []
    previews = any(getattr(c, "payload_head", None) is not None for c in captures.values())
    for capture in captures.values():
        table = capture.packets.copy(deep=False)  # copy-on-write: no column is copied
        n = len(table)
        for name, dtype in (("if_index", np.int32), ("pkt_type", np.int16)):
            values = getattr(capture, name, None)
            table[name] = (
                values if values is not None and len(values) == n else np.full(n, -1, dtype)
            )
        if previews:
            heads = capture.payload_head
            table["payload_head"] = heads if heads is not None else np.full(n, b"", "S1")
        tables.append(table)
    packets = tables[0] if len(tables) == 1 else _concat_tables(tables)
    sizes = [len(t) for t in tables]
    codes = np.repeat(np.arange(len(tables), dtype=np.int32), sizes)
    packets.insert(0, "file", pd.Categorical.from_codes(codes, categories=list(captures)))
    return packets


def _concat_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Packet tables one after the other; each text column stays a categorical, over the
    union of the files' strings (concat alone would fall back to Python objects)."""
    import pandas as pd

    for name in tables[0].columns:
        if isinstance(tables[0][name].dtype, pd.CategoricalDtype):
            # Every table recoded to the union (integer work), so that concat keeps the dtype.
            union = sorted(set().union(*(t[name].cat.categories for t in tables)))
            categories = pd.Index(union, dtype="str")
            for table in tables:
                table[name] = table[name].cat.set_categories(categories)
    return pd.concat(tables, ignore_index=True)


def filter_mask(
    display_filter, packets: pd.DataFrame, captures, progress, tshark_frames=None
) -> np.ndarray:
    """One bool per row of ``packets`` (the captures' tables one after the other): whether
    the display filter matches it; all true without a filter. ``tshark_frames``: see
    ``podcap.dfilter.TsharkFrames``."""
    if display_filter is None:
        return np.ones(len(packets), bool)
    progress(f"applying the filter {display_filter.text}")
    mask = np.zeros(len(packets), bool)
    start = 0
    for path, capture in captures.items():
        stop = start + len(capture.packets)
        # The whole table when it is one file's: the tables a filter builds for it (the HTTP
        # messages) are then the very ones the reports read.
        rows = packets if stop - start == len(packets) else packets.iloc[start:stop]
        mask[start:stop] = display_filter.mask(rows, capture.contains, path, tshark_frames)
        start = stop
    return mask


def read_sidecar(path: str, warnings: list[str]) -> dict:
    """The capture's sidecar as a dict ({} without one); an unreadable one adds a warning."""
    try:
        return sidecar.read_sidecar(path) or {}
    except DecodeError as exc:
        warnings.append(f"{exc}; sidecar ignored")
        return {}


def analysis_of(
    captures: dict[str, Any], request: Request, sidecars: dict, progress, tshark_frames=None
) -> Analysis:
    """The captures' packets in one table, each with its flow, the filter applied: what
    every report reads."""
    from podcap.analysis.context import Analysis
    from podcap.flows import assign_flows

    packets = combine_captures(captures)
    progress("following connections")
    packets = assign_flows(packets)
    return Analysis(
        all_packets=packets,
        matched=filter_mask(request.display_filter, packets, captures, progress, tshark_frames),
        captures=captures,
        sidecars=sidecars,
        snat_inputs=request.snat,
        filter_text=request.filter_text,
        files_given=request.files_given,
    )


def build_reports(names, analysis: Analysis, progress) -> dict[str, pd.DataFrame]:
    """Report by report, in the order asked."""
    tables = {}
    for name in names:
        progress(f"building the {name} report")
        tables[name] = REPORTS[name].build(analysis)
    return tables
