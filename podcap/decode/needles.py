"""``contains``: which packets hold a byte string, one scan of the raw chunk per needle.

A packet's range is its TCP/UDP header and payload (its L4 payload for other protocols).

Instead of copying each payload out, the needle is searched in the whole chunk with
``bytes.find`` (C speed) and each hit is mapped to the packet whose payload range holds it.
Payload ranges increase in file order, so a binary search finds the packet, and the next
search starts at the following payload: at most one hit per packet is ever looked at, so even
a needle that occurs everywhere costs one step per packet.
"""

from bisect import bisect_right

import numpy as np


def payload_matches(buf: bytes, needle: bytes, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Bool per packet: do the captured bytes ``buf[start:end]`` contain ``needle``."""
    found = np.zeros(len(start), dtype=bool)
    with_payload = np.flatnonzero((start >= 0) & (end > start))
    if not needle or not len(with_payload):
        found[with_payload] = not needle  # the empty string is in every payload
        return found
    starts, ends = start[with_payload], end[with_payload]
    last_end = int(ends[-1])
    pos = buf.find(needle, int(starts[0]), last_end)
    if pos < 0:
        return found
    # Python lists + bisect: cheaper per hit than a numpy call on a scalar.
    start_list, end_list = starts.tolist(), ends.tolist()
    size = len(needle)
    while pos >= 0:
        owner = bisect_right(start_list, pos) - 1
        if pos + size <= end_list[owner]:
            found[with_payload[owner]] = True
        if owner + 1 >= len(start_list):
            break
        # Later hits in this payload (or one that runs past it) change nothing: skip ahead.
        pos = buf.find(needle, start_list[owner + 1], last_end)
    return found
