"""The lock-step walk over pcap records: many walkers at once, each started at a plausible header."""

import numpy as np

# The lock-step walk: the chunk is cut into WALKERS pieces, each walked by its own walker, all
# in step with numpy (one gather per step for all walkers instead of one Python iteration per
# record). A walker after the first starts at a record header guessed in the first
# GUESS_WINDOW bytes of its piece; the guess is proven when the walker before lands on it.
WALKERS = 512  # at most; a piece is at least PIECE_BYTES
PIECE_BYTES = 64 * 1024
GUESS_WINDOW = 1536
GUESS_CHAIN = 3  # a guess must be followed by this many more plausible headers
PLAUSIBLE_LENGTH = 256 * 1024  # libpcap's largest snap length
PLAUSIBLE_CLOCK_SPAN = 1 << 24  # seconds (~194 days) from the chunk's first record


def lockstep_offsets(
    buf: bytes, pos: int, endian: str, fraction_limit: int
) -> tuple[np.ndarray, int] | None:
    """Record offsets of a pcap chunk from ``pos``, as the sequential walk finds them, and the
    position after the last one; None when the chunk is small or a guess was not proven
    (corrupt records, odd lengths): the caller then walks record by record."""
    size = len(buf)
    walkers = min(WALKERS, (size - pos) // PIECE_BYTES)
    if walkers < 2:
        return None
    piece = (size - pos) // walkers
    # A 32-bit integer starting at every byte (unaligned, overlapping): one gather per field.
    words = np.ndarray(shape=(size - 3,), dtype=endian + "u4", buffer=buf, strides=(1,))

    def u32(at: np.ndarray) -> np.ndarray:
        return words[np.minimum(at, size - 4)].astype(np.int64)

    guessed = _guess_headers(u32, pos, piece, walkers, size, fraction_limit)
    starts = np.concatenate([[pos], guessed])
    ends = np.append(starts[1:], size - 15)  # the last walker runs to the chunk end
    at, steps, alive = starts.copy(), [], np.ones(len(starts), bool)
    while alive.any():
        steps.append(np.where(alive, at, -1))
        caplen = u32(at + 8)
        at = np.where(alive, at + 16 + caplen, at)
        alive &= at < ends
    if not (at[:-1] == ends[:-1]).all():
        return None  # a guessed start was inside a record: walk sequentially
    walked = np.stack(steps).T.ravel()  # walker after walker, each in record order
    return walked[walked >= 0], int(at[-1])


def _guess_headers(
    u32, pos: int, piece: int, walkers: int, size: int, fraction_limit: int
) -> np.ndarray:
    """For each piece after the first, the first offset in its window where GUESS_CHAIN + 1
    chained record headers look plausible (pieces without one are left to their neighbour)."""
    first_clock = u32(np.array([pos]))[0]
    window = pos + piece * np.arange(1, walkers)[:, None] + np.arange(GUESS_WINDOW)
    at = _plausible_chains(u32, window.ravel(), size, fraction_limit, first_clock)
    if not len(at):
        return at
    piece_of = (at - pos) // piece
    first = np.flatnonzero(np.diff(piece_of, prepend=-1) > 0)
    return at[first]


def _plausible_chains(
    u32, at: np.ndarray, size: int, fraction_limit: int, clock: int
) -> np.ndarray:
    """The offsets in ``at`` where GUESS_CHAIN + 1 chained record headers look plausible:
    a clock near ``clock``, a fraction below one second, caplen <= wirelen <= 256 KiB."""
    at = at[np.abs(u32(at) - clock) < PLAUSIBLE_CLOCK_SPAN]
    chain = at.copy()
    for _ in range(GUESS_CHAIN + 1):
        caplen, wirelen = u32(chain + 8), u32(chain + 12)
        ok = (u32(chain + 4) < fraction_limit) & (caplen <= wirelen) & (wirelen > 0)
        ok &= (wirelen <= PLAUSIBLE_LENGTH) & (chain + 16 <= size)
        at, chain = at[ok], (chain + 16 + caplen)[ok]
    return at


def first_plausible_record(
    window: bytes, endian: str, fraction_limit: int, clock: int
) -> int | None:
    """The first offset in ``window`` (bytes from the middle of a pcap file) where a record
    header seems to start, judged as the lock-step walk judges its guesses; None if none.

    A guess, not a proof: the caller proves it by walking up to it from an earlier record."""
    size = len(window)
    if size < 16 * (GUESS_CHAIN + 1):
        return None
    words = np.ndarray(shape=(size - 3,), dtype=endian + "u4", buffer=window, strides=(1,))

    def u32(at: np.ndarray) -> np.ndarray:
        return words[np.minimum(at, size - 4)].astype(np.int64)

    found = _plausible_chains(u32, np.arange(size - 15), size, fraction_limit, clock)
    return int(found[0]) if len(found) else None
