"""HTTP messages where they really are: one row per request or response, found by following
each direction of a connection as Wireshark's reassembly does.

The decoder marks the segments whose payload starts a request or response and measures the
message (head + Content-Length). Where, in a direction, every message ends exactly where the
next marked one starts (or at the end of the data), those marks are the messages, and the
table is built at numpy speed. The other directions (a request pipelined or sent after a body
inside a segment, chunked bodies, a response running to the close) are walked message by
message (``podcap.flows.http_walk``).

A message is shown, as Wireshark shows it, on the segment bringing its last byte
(``end_row``); one never completed in the capture on none (-1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.http import LENGTH_CAP
from podcap.decode.reread import reopen
from podcap.decode.schema import FIN, SYN
from podcap.flows.groups import SEQ_SPACE
from podcap.flows.http_walk import Side, walk

MESSAGE_COLUMNS = {
    "file": "str", "flow_id": "int64", "c2s": "bool", "row": "int64", "end_row": "int64",
    "offset": "int64", "method": "str", "uri": "str", "host": "str", "status": "int64",
    "length": "int64",
}  # fmt: skip
SEGMENT_COLUMNS = ["flow_id", "c2s", "tcp_seq", "payload_len", "payload_off", "caplen",
                   "file_off", "http_status", "http_length"]  # fmt: skip
TEXTS = ("http_method", "http_uri", "http_host")
SIDE_SPAN = 1 << 40  # past any byte offset in one direction: (side, offset) as one number


def message_table(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per HTTP message of ``packets`` (one file's or several's, with the flow
    columns): its ``row`` (where it starts) and ``end_row`` (where it completes) in
    ``packets``, its byte ``offset`` in its direction, the head's fields, and ``length``
    (head and body; -1 when unknown)."""
    paths = list(packets["file"].cat.categories) if "file" in packets else [None]
    seg, texts = _segments(packets)
    regular = _regular_sides(seg)
    tables = [_marked_messages(seg, texts, paths, regular[seg["side_index"]])]
    tables.append(_walked_messages(seg, texts, paths, ~regular[seg["side_index"]]))
    table = pd.concat(tables, ignore_index=True).astype(MESSAGE_COLUMNS)
    return table.sort_values(["row", "offset"], kind="stable", ignore_index=True)


def _segments(packets: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Column arrays of the TCP segments with data (retransmissions and other interfaces'
    copies left out) of the directions where the decoder marked a message start, each
    direction's together in file order; and the categories the http_* text codes index."""
    keep = (packets["flow_id"] >= 0) & (packets["payload_len"] > 0) & ~packets["retransmission"]
    keep &= packets["ip_proto"] == 6
    if "dup_of_frame" in packets:
        keep &= packets["dup_of_frame"] < 0
    keep = keep.to_numpy().copy()  # copy-on-write pandas hands out read-only arrays
    side = packets["flow_id"].to_numpy() * 2 + packets["c2s"].to_numpy()
    marked = ((packets["http_method"] != "") | (packets["http_status"] >= 0)).to_numpy()
    with_marks = np.zeros(int(side.max(initial=0)) + 1, bool)
    with_marks[side[keep & marked]] = True
    keep &= with_marks[np.maximum(side, 0)]
    rows = np.flatnonzero(keep)
    files = packets["file"].cat.codes.to_numpy()[rows] if "file" in packets else rows * 0
    order = np.lexsort((rows, side[rows], files))
    rows = rows[order]
    seg = {name: packets[name].to_numpy()[rows] for name in SEGMENT_COLUMNS}
    texts = {}
    for name in TEXTS:
        column = packets[name].astype("category")
        seg[name] = column.cat.codes.to_numpy()[rows]
        texts[name] = column.cat.categories.to_numpy(dtype=object)
    seg |= {"row": rows, "file": files[order], "marked": marked[rows]}
    seg["fin_row"] = _first_fins(packets, side, len(with_marks))[side[rows]]
    new_side = np.r_[True, np.diff(side[rows]) != 0] if len(rows) else np.zeros(0, bool)
    seg["side_index"] = np.cumsum(new_side) - 1
    first = np.flatnonzero(new_side)[seg["side_index"]]
    # Data on a SYN (TCP Fast Open) starts after the SYN's own sequence number.
    seg["tcp_seq"] = seg["tcp_seq"] + ((packets["tcp_flags"].to_numpy()[rows] & SYN) != 0)
    seg["rel"] = (seg["tcp_seq"].astype(np.int64) - seg["tcp_seq"][first]) % SEQ_SPACE
    return seg, texts


def _first_fins(packets: pd.DataFrame, side: np.ndarray, sides: int) -> np.ndarray:
    """Per direction (flow_id * 2 + c2s), the row of its first FIN; -1 without one. A
    response running to the close completes there, as in Wireshark."""
    fin = (packets["tcp_flags"].to_numpy() & FIN) != 0
    fin &= (packets["flow_id"].to_numpy() >= 0) & ~packets["retransmission"].to_numpy()
    fin &= side < sides
    rows = np.flatnonzero(fin)[::-1]  # assigned last to first: the first one stays
    first = np.full(sides, -1, np.int64)
    first[side[rows]] = rows
    return first


def _regular_sides(seg: dict[str, np.ndarray]) -> np.ndarray:
    """Per direction: whether its marks are its messages. Every marked message is measured
    and ends where the next marked one starts; the last ends at the end of the direction's
    data, past it, or where a segment starts (one the decoder did not mark: no message)."""
    sides = int(seg["side_index"][-1]) + 1 if len(seg["row"]) else 0
    regular = np.ones(sides, bool)
    marks = np.flatnonzero(seg["marked"])
    if not len(marks):
        return regular
    side, rel = seg["side_index"][marks], seg["rel"][marks]
    length = seg["http_length"][marks].astype(np.int64)
    regular[side[(length < 0) | (length >= LENGTH_CAP)]] = False
    end = rel + length
    followed = np.r_[side[1:] == side[:-1], False]
    chained = end[:-1] == rel[1:]
    regular[side[:-1][followed[:-1] & ~chained]] = False
    last = ~followed
    data_end = np.zeros(sides, np.int64)
    np.maximum.at(data_end, seg["side_index"], seg["rel"] + seg["payload_len"])
    starts = np.sort(seg["side_index"] * SIDE_SPAN + seg["rel"])
    wanted = side[last] * SIDE_SPAN + end[last]
    found = np.minimum(np.searchsorted(starts, wanted), len(starts) - 1)
    at_a_start = starts[found] == wanted if len(starts) else np.zeros(0, bool)
    regular[side[last][~(at_a_start | (end[last] >= data_end[side[last]]))]] = False
    return regular


def _marked_messages(seg, texts, paths, chosen: np.ndarray) -> pd.DataFrame:
    """The messages of the regular directions: their marks, each completed by the first
    segment from it on whose data reaches its end."""
    reach = np.maximum.accumulate(seg["side_index"] * SIDE_SPAN + seg["rel"] + seg["payload_len"])
    at = np.flatnonzero(seg["marked"] & chosen)
    side = seg["side_index"][at]
    length = seg["http_length"][at].astype(np.int64)
    end = np.searchsorted(reach, side * SIDE_SPAN + seg["rel"][at] + length)
    end = np.maximum(end, at)
    completed = end < len(reach)
    completed[completed] &= seg["side_index"][end[completed]] == side[completed]
    file_codes = seg["file"][at]
    return pd.DataFrame(
        {
            "file": np.asarray(paths, dtype=object)[file_codes] if len(at) else [],
            "flow_id": seg["flow_id"][at],
            "c2s": seg["c2s"][at],
            "row": seg["row"][at],
            "end_row": np.where(completed, seg["row"][np.minimum(end, len(reach) - 1)], -1),
            "offset": seg["rel"][at],
            **{name[5:]: texts[name][seg[name][at]] for name in TEXTS},
            "status": seg["http_status"][at],
            "length": length,
        }
    )


def _walked_messages(seg, texts, paths, chosen: np.ndarray) -> pd.DataFrame:
    """The messages of the other directions, walked one by one (``http_walk.walk``)."""
    rows: list[tuple] = []
    picked = {name: values[chosen] for name, values in seg.items()}
    for lo, hi in _bounds(picked["file"]):
        path = paths[picked["file"][lo]]
        with reopen(path) as source:
            for a, b in _bounds(picked["side_index"][lo:hi]):
                side = Side({n: v[lo + a : lo + b] for n, v in picked.items()}, texts)
                rows.extend((path, *message) for message in walk(side, source))
    return pd.DataFrame(rows, columns=list(MESSAGE_COLUMNS))


def _bounds(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal ``keys``."""
    if not len(keys):
        return []
    cuts = (np.flatnonzero(np.diff(keys)) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(keys)], strict=True))
