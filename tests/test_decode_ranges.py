"""A pcap decoded in byte ranges apart (``podcap.decode.ranges``) gives each bucket of
conversations exactly as reading the whole file into buckets does; a cut that is not a
record start is caught, and the run on Dask then reads the file whole."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import distributed
import pandas as pd
import pytest

from podcap.analysis import on_dask
from podcap.analysis.run import analyze
from podcap.decode import ranges
from podcap.decode.spill import read_spilled

REPO = Path(__file__).resolve().parent.parent
MB = 1 << 20


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ranges") / "mix.pcap"
    script = [sys.executable, "-m", "bench.make_big_pcap", str(path), "--packets", "40000"]
    subprocess.run(script, check=True, cwd=REPO, timeout=120)
    return str(path)


@pytest.mark.parametrize("pieces, buckets", [(2, 3), (3, 4)])
def test_buckets_from_ranges_are_the_spilled_buckets(capture, pieces, buckets):
    cuts = ranges.range_cuts(capture, pieces, min_bytes=MB)
    assert cuts and len(cuts) == pieces + 1 and cuts[0] == 0
    assert cuts[-1] == Path(capture).stat().st_size
    parts = [
        ranges.decode_range(capture, a, b, buckets)
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    assert all(part.exact and part.packets for part in parts)
    with read_spilled(capture, buckets) as spilled:
        assert sum(part.packets for part in parts) == spilled.packets
        for i in range(buckets):
            shares = [ranges.bucket_share(part, i) for part in parts]
            got = ranges.bucket_from_ranges(capture, shares).packets
            assert len(got)
            pd.testing.assert_frame_equal(got, spilled.capture(i).packets)


def test_a_cut_inside_a_record_is_not_proven(capture):
    cuts = ranges.range_cuts(capture, 2, min_bytes=MB)
    first = ranges.decode_range(capture, 0, cuts[1] + 7, 2)
    second = ranges.decode_range(capture, cuts[1] + 7, cuts[2], 2)
    assert not first.exact and not second.exact


def test_only_a_plain_pcap_large_enough_is_cut(capture, tmp_path):
    assert ranges.range_cuts(capture, 2, min_bytes=64 * MB) is None  # too small for two
    assert ranges.range_cuts(capture, 1, min_bytes=MB) is None
    packed = tmp_path / "mix.pcap.gz"
    packed.write_bytes(gzip.compress(Path(capture).read_bytes(), compresslevel=1))
    assert ranges.range_cuts(str(packed), 2, min_bytes=MB) is None
    pcapng = REPO / "sample_pcaps" / "09-pcapng-dumpcap.pcapng"
    assert ranges.range_cuts(str(pcapng), 2, min_bytes=1) is None


def test_a_wrong_cut_on_dask_reads_the_file_whole(capture, monkeypatch):
    """The workers are threads of this process (a real scheduler and workers all the same),
    so the cut can be made wrong here: the result must not change."""
    made = []

    def off_by_seven(path, pieces, min_bytes):
        cuts = ranges_cuts(path, pieces, min_bytes)
        made.append(cuts)
        return [cuts[0], cuts[1] + 7, *cuts[2:]]

    ranges_cuts = ranges.range_cuts
    monkeypatch.setattr(ranges, "range_cuts", off_by_seven)
    request = ["summary", "flows", "tcp", "http"]
    want = analyze([capture], reports=request)
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None) as client:  # fmt: skip
        from podcap.analysis.steps import Request

        said: list[str] = []
        parts = on_dask._file_parts(distributed, client, [capture], Request(request, None),
                                    1_500_000, said.append, MB)  # fmt: skip
    assert made, "the file was not cut"
    assert f"{capture}: cut in 2 byte ranges, one a worker" in said
    assert sum(line.startswith("analyzed 1 of 1") for line in said) == 2  # then read whole
    got = on_dask._joined([capture], parts, Request(request, None), lambda m: None).tables
    for name in request:
        pd.testing.assert_frame_equal(got[name], want[name])
