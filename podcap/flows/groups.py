"""What the flow passes share: sequence space, address codes, first-of-code positions, zero
windows, protocol names and the sorted-groups helper of the numpy code."""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from podcap.decode.schema import FIN, PROTO_NAMES, RST, SYN, TCP

SEQ_SPACE = 1 << 32
COPY_WINDOW = 0.005  # seconds: another interface's copy follows within microseconds


def proto_names(numbers: pd.Series) -> pd.Series:
    """IP protocol numbers as names (``tcp``, ``udp``...); "" where there is no IP header."""
    names = {n: PROTO_NAMES.get(n, "" if n < 0 else str(n)) for n in numbers.unique()}
    return numbers.map(names)


def address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One integer per distinct address, shared by both columns."""
    src_codes, src_uniques = pd.factorize(src)
    dst_codes, dst_uniques = pd.factorize(dst)
    in_src = pd.Index(src_uniques).get_indexer(dst_uniques)
    new = in_src < 0
    in_src[new] = len(src_uniques) + np.arange(new.sum())
    return src_codes.astype(np.int64), in_src[dst_codes].astype(np.int64)


def first_of_code(codes: np.ndarray) -> np.ndarray:
    """Position of the first packet of each code, for codes numbered by first appearance
    (``flow_id``: the first packet of each flow, in flow id order)."""
    running = np.maximum.accumulate(codes)
    new = np.concatenate([[True], running[1:] > running[:-1]]) if len(codes) else codes > 0
    return np.flatnonzero(new & (codes >= 0))


def zero_window(p: pd.DataFrame) -> np.ndarray:
    """Wireshark's ``tcp.analysis.zero_window``: window 0 on a TCP segment without SYN/FIN/RST."""
    flags = p["tcp_flags"].to_numpy()
    return (
        (p["ip_proto"].to_numpy() == TCP)
        & (p["tcp_win"].to_numpy() == 0)
        & ((flags & (SYN | FIN | RST)) == 0)
    )


class Groups:
    """Packets grouped by an integer key, through one stable sort.

    ``order`` lists packet positions group after group (file order inside a group);
    ``starts`` is where each group begins in ``order``; ``keys`` the key of each group.
    """

    def __init__(self, key: np.ndarray):
        self.order = np.argsort(key, kind="stable")
        sorted_key = key[self.order]
        change = np.flatnonzero(sorted_key[1:] != sorted_key[:-1]) + 1
        self.starts = np.concatenate([[0], change]) if len(key) else change
        self.keys = sorted_key[self.starts]
        self.sizes = np.diff(np.append(self.starts, len(key)))
        self.group_of_sorted = np.repeat(np.arange(len(self.starts)), self.sizes)

    def sum(self, values: np.ndarray) -> np.ndarray:
        return np.add.reduceat(values[self.order], self.starts) if len(self.starts) else values[:0]

    def sum_by_side(self, values: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-group sums over the packets where ``side`` is true, and where it is false
        (the second as total minus first: one masked pass instead of two)."""
        ordered = values[self.order]
        on_side = np.add.reduceat(np.where(side[self.order], ordered, 0), self.starts)
        return on_side, np.add.reduceat(ordered, self.starts) - on_side

    def min(self, values: np.ndarray, mask: np.ndarray | None = None, empty=np.inf) -> np.ndarray:
        """Smallest value per group (over ``mask`` only; ``empty`` for a group without one)."""
        if mask is None:
            chosen = values[self.order]
            return np.minimum.reduceat(chosen, self.starts) if len(self.starts) else chosen
        # Only the packets in the mask (handshake packets: a few per flow), not every packet.
        picked = np.flatnonzero(mask)
        smallest = np.full(len(self.starts), empty, np.result_type(values, np.float64))
        np.minimum.at(smallest, self.group_of_packet[picked], values[picked])
        return smallest

    def max(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values[self.order], self.starts) if len(self.starts) else values

    def first_position(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Position of each group's first packet (within ``mask``); len(packets) when none."""
        if mask is None:
            return self.order[self.starts]
        # Work in proportion to the packets in the mask (most masks are sparse).
        return self.first_of(np.flatnonzero(mask))

    def first_of(self, positions: np.ndarray) -> np.ndarray:
        """Smallest of ``positions`` in each group; len(packets) for a group with none."""
        first = np.full(len(self.starts), len(self.order), np.int64)
        np.minimum.at(first, self.group_of_packet[positions], positions)
        return first

    @cached_property
    def group_of_packet(self) -> np.ndarray:
        group = np.empty(len(self.order), np.int64)
        group[self.order] = self.group_of_sorted
        return group

    def previous_max(self, values: np.ndarray) -> np.ndarray:
        """For each packet, the largest value among the earlier packets of its group (-1 when
        it is the first), for values in [-1, 2**34)."""
        shift = np.int64(1 << 35)  # lifts each group above every value of the groups before
        lifted = values[self.order] + 1 + self.group_of_sorted * shift
        running = np.maximum.accumulate(lifted) - self.group_of_sorted * shift - 1
        before = np.concatenate([[-1], running[:-1]])
        before[self.starts] = -1
        out = np.empty_like(before)
        out[self.order] = before
        return out
