"""The lock-step record walk (``framing.lockstep_offsets``) finds exactly the records the
sequential walk finds, or gives up; it never returns different offsets.

The chunks are several MB (the fast path only runs on large chunks) and their payloads are
full of byte patterns that look like pcap record headers, to lure the guesses."""

import random
import struct

import numpy as np
import pytest

from podcap.decode import read_capture
from podcap.decode.framing import lockstep_offsets


def sequential(buf: bytes, pos: int) -> tuple[list[int], int]:
    offsets = []
    while pos <= len(buf) - 16:
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", buf, pos + 8)[0]
    return offsets, pos


def records(count: int, seed: int, lure: bool) -> bytes:
    rng = random.Random(seed)
    parts = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    clock = 1_700_000_000
    for _ in range(count):
        size = rng.choice([54, 66, 74, 1514, rng.randrange(14, 3000)])
        body = bytearray(rng.randbytes(size))
        if lure and size > 40:
            # A fake header inside the payload: same clock, plausible lengths, chained.
            fake = (
                struct.pack("<IIII", clock, 5, 8, 8)
                + bytes(8)
                + struct.pack("<IIII", clock, 6, 0, 60)
            )
            at = rng.randrange(0, size - len(fake))
            body[at : at + len(fake)] = fake
        parts.append(struct.pack("<IIII", clock, rng.randrange(10**6), size, size) + body)
        clock += rng.randrange(2)
    return b"".join(parts)


@pytest.mark.parametrize("lure", [False, True])
def test_same_offsets_as_the_sequential_walk(lure):
    buf = records(20_000, seed=3, lure=lure)
    assert len(buf) > 8_000_000
    found = lockstep_offsets(buf, 24, "<", 10**6)
    assert found is not None  # large and clean: the fast path must serve it
    offsets, stop = found
    expected, expected_stop = sequential(buf, 24)
    assert offsets.tolist() == expected and stop == expected_stop


def test_a_cut_chunk_ends_like_the_sequential_walk():
    buf = records(20_000, seed=4, lure=True)[:-700]  # the last record runs past the end
    offsets, stop = lockstep_offsets(buf, 24, "<", 10**6)
    expected, expected_stop = sequential(buf, 24)
    assert offsets.tolist() == expected and stop == expected_stop > len(buf) - 16


def test_a_corrupt_record_is_left_to_the_sequential_walk(tmp_path):
    buf = bytearray(records(20_000, seed=5, lure=False))
    expected, _ = sequential(bytes(buf), 24)
    bad = expected[len(expected) // 3]
    struct.pack_into("<I", buf, bad + 8, 3_000_000_000)  # a record "claiming 3 GB"
    assert lockstep_offsets(bytes(buf), 24, "<", 10**6) is None
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(buf))
    cap = read_capture(path)
    assert len(cap.packets) == len(expected) // 3
    assert any("corrupt record" in w for w in cap.warnings)


def test_read_capture_uses_it_and_agrees_with_small_chunks(tmp_path):
    path = tmp_path / "big.pcap"
    path.write_bytes(records(20_000, seed=6, lure=True))
    fast = read_capture(path)
    # 64 KiB chunks are too small for the lock-step walk: the sequential one reads them.
    slow = read_capture(path, chunk_bytes=64 * 1024)
    # 5 MB chunks: the lock-step walk on each chunk, records carried over between them.
    chunked = read_capture(path, chunk_bytes=5 * 1024 * 1024)
    assert len(fast.packets) == 20_000
    for other in (slow, chunked):
        assert np.array_equal(fast.packets["ts"].to_numpy(), other.packets["ts"].to_numpy())
        assert np.array_equal(fast.packets["caplen"].to_numpy(), other.packets["caplen"].to_numpy())
