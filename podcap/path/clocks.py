"""One-way delays between adjacent capture points, and how far apart their clocks are.

Two points on different nodes time-stamp with different clocks, so the time between the
client's packet passing the first and passing the second is the one-way delay plus the clocks'
offset. The server's answer crosses the same two points the other way, which gives the delay
minus the offset. As NTP does, assuming the way there and the way back take as long:

    there = t_b(client's first packet) - t_a(client's first packet) = delay + offset
    back  = t_a(server's first answer) - t_b(server's first answer) = delay - offset
    delay = (there + back) / 2            offset = (there - back) / 2  (b's clock minus a's)

Two points on one node (a Pod's netns and its node's NIC) read the same clock: there the time
between them is the delay, answer or not. Elsewhere a connection without an answer seen at
both points gives no estimate; the time between them is still shown (``since_ms``), with the
offset inside it. Over many connections the median of each pair of points is the estimate
(``pair_offsets``).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from podcap.path.journey import Journey, Sighting


@dataclass(frozen=True)
class HopTiming:
    """The client's first packet from one point that saw it to the next one."""

    before: Sighting
    after: Sighting
    since_ms: float  # as the two clocks say: delay plus their offset
    one_way_ms: float  # NaN when the answer was not seen at both
    offset_ms: float  # ``after``'s clock minus ``before``'s; NaN likewise

    @property
    def estimated(self) -> bool:
        return not math.isnan(self.one_way_ms)


def hop_timings(journey: Journey) -> list[HopTiming]:
    """Between each two consecutive points that saw ``journey``, in path order."""
    timings = []
    for before, after in zip(journey.sightings, journey.sightings[1:], strict=False):
        there = after.first_ts - before.first_ts
        back = before.answer_ts - after.answer_ts
        delay = offset = math.nan
        if _same_clock(before, after):
            delay, offset = there, 0.0
        elif not math.isnan(back):
            delay, offset = (there + back) / 2, (there - back) / 2
        timings.append(HopTiming(before, after, there * 1e3, delay * 1e3, offset * 1e3))
    return timings


def _same_clock(before: Sighting, after: Sighting) -> bool:
    return before.point.node is not None and before.point.node == after.point.node


def pair_offsets(journeys) -> dict[tuple[str, str], tuple[float, int]]:
    """Per pair of consecutive points (names), the median clock offset over the journeys
    that gave one, and how many did."""
    found: dict[tuple[str, str], list[float]] = defaultdict(list)
    for journey in journeys:
        for timing in hop_timings(journey):
            if timing.estimated:
                found[(str(timing.before.point), str(timing.after.point))].append(timing.offset_ms)
    return {pair: (statistics.median(values), len(values)) for pair, values in found.items()}


def describe(timings: list[HopTiming]) -> str:
    """``a -> b 0.042 ms; b -> c 0.210 ms (clock +5000.123 ms)``: each hop's one-way delay,
    its clock offset when it is 0.1 ms or more, the raw time when the clocks could not be
    compared."""
    parts = []
    for timing in timings:
        hop = f"{timing.before.point} -> {timing.after.point}"
        if not timing.estimated:
            parts.append(f"{hop} {timing.since_ms:.3f} ms (clocks not compared)")
            continue
        clock = f" (clock {timing.offset_ms:+.3f} ms)" if abs(timing.offset_ms) >= 0.1 else ""
        parts.append(f"{hop} {timing.one_way_ms:.3f} ms{clock}")
    return "; ".join(parts)
