"""Large captures analyzed in buckets of conversations (``podcap.analysis.buckets``,
``podcap.decode.spill``) give exactly the reports of the in-memory analysis, hold only one
bucket at a time, and leave no spill file behind.

The in-memory limit is 1.5 M packets by default; the tests lower it (``in_memory_limit``,
``--in-memory-limit``) so that small captures are cut into many buckets.
"""

import gc
import gzip
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from podcap.analysis import buckets as bucketed
from podcap.analysis.run import analyze
from podcap.decode import read_capture, spill, split
from podcap.decode.table import STRING_COLUMNS
from podcap.errors import DecodeError
from testbed.helpers import podcap

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p) for p in (REPO / "sample_pcaps").glob("*.pcap*"))
BUCKET_REPORTS = ["summary", "flows", "tcp", "http"]


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory) -> Path:
    """The benchmark's traffic mix (HTTP with lbtest markers and retransmitted requests,
    unanswered SYNs, RSTs, DNS, VXLAN on 8472), 20,000 packets."""
    path = tmp_path_factory.mktemp("bucketed") / "mixed.pcap"
    script = REPO / "bench" / "make_big_pcap.py"
    subprocess.run([sys.executable, script, path, "--packets", "20000"], check=True)
    return path


@pytest.fixture
def spill_dir(tmp_path, monkeypatch) -> Path:
    """TMPDIR for the spill files of this test, to see what is left there."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def open_spill_files(directory: Path) -> list[str]:
    """Files of this process open in ``directory`` (deleted ones too)."""
    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(str(directory)):
            targets.append(target)
    return targets


def assert_same_result(got, expected) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], obj=f"report {name}")
    assert got.matched == expected.matched
    assert got.warnings == expected.warnings
    assert [str(e) for e in got.errors] == [str(e) for e in expected.errors]


def both_ways(paths, **kwargs):
    """(in buckets, in memory): a limit of 1 packet puts every capture in buckets."""
    in_buckets = analyze(paths, reports=BUCKET_REPORTS, in_memory_limit=1, **kwargs)
    in_memory = analyze(paths, reports=BUCKET_REPORTS, in_memory_limit=0, **kwargs)
    assert in_buckets.analysis is None, "the bucketed path was not taken"
    assert in_memory.analysis is not None
    return in_buckets, in_memory


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: Path(p).name)
@pytest.mark.parametrize("flt", [None, 'tcp contains "lbtest"', "tcp.flags.syn == 1"])
def test_each_sample_gives_the_in_memory_reports(path, flt, spill_dir):
    assert_same_result(*both_ways([path], filter=flt))
    assert list(spill_dir.iterdir()) == []


def test_several_files_at_once_number_flows_across_files(spill_dir):
    got, expected = both_ways(SAMPLES, filter="tcp.port == 80 || udp")
    assert_same_result(got, expected)
    # Flow ids run on from one file to the next, as in memory.
    flows = got["flows"]
    assert flows["file"].nunique() > 1 and flows["flow_id"].is_monotonic_increasing
    assert flows["file"].cat.codes.is_monotonic_increasing


@pytest.mark.parametrize("switch", ["0", "1"], ids=["one process", "two processes"])
def test_generated_capture_in_many_buckets(mixed_pcap, spill_dir, monkeypatch, switch):
    monkeypatch.setenv(split.ENV_SWITCH, switch)
    got = analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=3000)
    expected = analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=0)
    assert_same_result(got, expected)
    assert len(got["flows"]) > 1000 and len(got["http"]) > 500 and len(got["tcp"]) > 100
    assert list(spill_dir.iterdir()) == []


def test_one_bucket_at_a_time_and_of_the_planned_size(mixed_pcap, monkeypatch):
    """The point of it all: no bucket holds much more than limit/3 packets, and a bucket is
    let go before the next is read (one process; two share the limit, see below)."""
    monkeypatch.setenv(split.ENV_SWITCH, "0")
    sizes, alive, held = [], [], []
    read_bucket = spill.SpilledCapture.capture

    def spy(self, i):
        # While bucket i is read, only bucket i-1 may still be held (by the loop's variable).
        held.append(sum(ref() is not None for ref in alive))
        capture = read_bucket(self, i)
        sizes.append(len(capture.packets))
        alive.append(weakref.ref(capture))
        return capture

    monkeypatch.setattr(spill.SpilledCapture, "capture", spy)
    plan = bucketed.bucket_plan([str(mixed_pcap)], ["flows"], None, "native", 3000)
    buckets = plan.buckets[str(mixed_pcap)]
    assert plan.workers == 1 and 20 <= buckets <= 21  # 20,000 packets in buckets of 1,000
    analyze([mixed_pcap], reports=["flows"], in_memory_limit=3000)
    assert len(sizes) == buckets and sum(sizes) == 20000
    assert max(sizes) < 2000  # the hash spreads conversations evenly
    assert max(held) <= 1, held
    gc.collect()
    assert [ref() for ref in alive] == [None] * len(alive)


def spy_on_buckets(monkeypatch, log: Path, fail_in_helper: bool = False):
    """Each bucket read appends "PID BUCKET SIZE" to ``log`` (both processes write to it)."""
    read_bucket, parent = spill.SpilledCapture.capture, os.getpid()

    def spy(self, i):
        if fail_in_helper and os.getpid() != parent:
            raise RuntimeError("the helper breaks down")
        capture = read_bucket(self, i)
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {i} {len(capture.packets)}\n")
        return capture

    monkeypatch.setattr(spill.SpilledCapture, "capture", spy)


def test_two_processes_share_the_buckets_and_the_limit(mixed_pcap, monkeypatch, tmp_path):
    monkeypatch.setenv(split.ENV_SWITCH, "1")
    log = tmp_path / "buckets.log"
    spy_on_buckets(monkeypatch, log)
    plan = bucketed.bucket_plan([str(mixed_pcap)], ["flows"], None, "native", 3000)
    buckets = plan.buckets[str(mixed_pcap)]
    assert plan.workers == 2 and 40 <= buckets <= 41  # buckets of 500: two held at once
    got = analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=3000)
    reads = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    by_process: dict[int, list[int]] = {}
    for pid, bucket, _ in reads:
        by_process.setdefault(pid, []).append(bucket)
    assert by_process.pop(os.getpid()) == list(range(0, buckets, 2))
    (helper_buckets,) = by_process.values()  # one other process: the helper
    assert helper_buckets == list(range(1, buckets, 2))
    assert sum(size for *_, size in reads) == 20000 and max(size for *_, size in reads) < 1000
    monkeypatch.undo()
    assert_same_result(got, analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=0))


def test_a_failing_helper_leaves_its_buckets_to_this_process(mixed_pcap, monkeypatch, tmp_path):
    monkeypatch.setenv(split.ENV_SWITCH, "1")
    log = tmp_path / "buckets.log"
    spy_on_buckets(monkeypatch, log, fail_in_helper=True)
    got = analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=3000)
    read_here = [int(line.split()[1]) for line in log.read_text().splitlines()]
    buckets = len(read_here)
    assert read_here == list(range(0, buckets, 2)) + list(range(1, buckets, 2))
    monkeypatch.undo()
    assert_same_result(got, analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=0))


def test_spill_buckets_partition_the_capture_by_conversation(mixed_pcap, spill_dir):
    whole = read_capture(mixed_pcap, needles=(b"lbtest",))
    with spill.read_spilled(mixed_pcap, 7, needles=(b"lbtest",)) as spilled:
        parts = [spilled.capture(i) for i in range(7)]
        # Seven files in TMPDIR, open but without a name from the start.
        assert list(spill_dir.iterdir()) == []
        assert len(open_spill_files(spill_dir)) == 7
    assert open_spill_files(spill_dir) == []
    assert spilled.packets == len(whole.packets) == sum(len(p.packets) for p in parts)
    assert_buckets_partition(parts, whole)
    assert sum(len(p.packets) > 0 for p in parts) == 7


def assert_buckets_partition(parts, whole) -> None:
    """The buckets hold ``whole``'s packets and marker matches, each packet once, and each
    conversation (either direction) in exactly one bucket."""
    joined = pd.concat([p.packets for p in parts], ignore_index=True)
    order = np.argsort(joined["frame"].to_numpy())
    # Each bucket's text columns are categoricals over its own strings: compare the text.
    text = {name: "str" for name in STRING_COLUMNS}
    pd.testing.assert_frame_equal(
        joined.iloc[order].reset_index(drop=True).astype(text), whole.packets.astype(text)
    )
    found = np.concatenate([p.contains[b"lbtest"] for p in parts])[order]
    assert np.array_equal(found, whole.contains[b"lbtest"]) and found.any()
    seen: dict[tuple, int] = {}
    for index, part in enumerate(parts):
        p = part.packets
        for row in (
            p[["src", "dst", "sport", "dport", "ip_proto"]]
            .drop_duplicates()
            .itertuples(index=False)
        ):
            ends = tuple(sorted([(row.src, row.sport), (row.dst, row.dport)]))
            key = (ends, row.ip_proto)
            assert seen.setdefault(key, index) == index, f"{key} in buckets {seen[key]}, {index}"


def test_a_helper_process_spills_the_later_part_of_a_large_file(mixed_pcap, monkeypatch):
    # As for a file of 32 MiB or more with a second CPU free (podcap.decode.split).
    monkeypatch.setattr(split, "MIN_BYTES", 64 * 1024)
    monkeypatch.setenv(split.ENV_SWITCH, "1")
    whole = read_capture(mixed_pcap, needles=(b"lbtest",))
    with spill.read_spilled(mixed_pcap, 5, needles=(b"lbtest",)) as spilled:
        assert 0 < spilled.helper_packets < spilled.packets == len(whole.packets)
        parts = [spilled.capture(i) for i in range(5)]
    # Bucketed by what the addresses are, not by each process's codes for them.
    assert_buckets_partition(parts, whole)
    # And the reports, with buckets analyzed by two processes as well.
    got = analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=3000)
    assert_same_result(got, analyze([mixed_pcap], reports=BUCKET_REPORTS, in_memory_limit=0))


def test_truncated_capture_warns_once_and_keeps_what_was_read(mixed_pcap, tmp_path, spill_dir):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(mixed_pcap.read_bytes()[:-37])
    got = analyze([cut], reports=BUCKET_REPORTS, in_memory_limit=3000)
    expected = analyze([cut], reports=BUCKET_REPORTS, in_memory_limit=0)
    assert_same_result(got, expected)
    assert len(got.warnings) == 1 and "truncated record" in got.warnings[0]
    assert 0 < got["summary"]["packets"][0] < 20000
    assert list(spill_dir.iterdir()) == []


def test_unreadable_file_among_others(tmp_path, spill_dir):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture\n" * 100)
    paths = [SAMPLES[0], str(garbage), SAMPLES[1]]
    got, expected = both_ways(paths)
    assert_same_result(got, expected)
    assert len(got.errors) == 1 and str(garbage) in str(got.errors[0])
    assert list(spill_dir.iterdir()) == []
    with pytest.raises(DecodeError, match="garbage.pcap"):
        analyze([garbage], in_memory_limit=3)
    assert list(spill_dir.iterdir()) == []


@pytest.mark.parametrize("switch", ["0", "1"], ids=["one process", "two processes"])
def test_spill_removed_when_the_analysis_fails_half_way(mixed_pcap, spill_dir, monkeypatch, switch):
    monkeypatch.setenv(split.ENV_SWITCH, switch)
    calls = []

    def progress(message):
        calls.append(message)
        if "bucket 3 of" in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze([mixed_pcap], reports=["flows"], in_memory_limit=3000, on_progress=progress)
    assert re.search(r"bucket 3 of [24]\d", calls[-1])
    assert list(spill_dir.iterdir()) == []
    # No helper left analyzing (it is killed and reaped on the way out).
    children = Path(f"/proc/self/task/{threading.get_native_id()}/children").read_text()
    assert children.split() == []


def test_nothing_left_on_disk_when_killed(mixed_pcap, tmp_path):
    """SIGKILL runs no cleanup code: the spill files must not have had names to leave."""
    code = (
        "import sys\n"
        "from podcap.analysis.run import analyze\n"
        "analyze([sys.argv[1]], reports=['flows'], in_memory_limit=3000,\n"
        "        on_progress=lambda m: print(m, flush=True))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(mixed_pcap)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        for line in proc.stdout:
            if "analyzing bucket 3 of" in line:  # (with a helper, this process's second)
                break
        else:
            pytest.fail("the analysis never reached its third bucket")
        # While it runs, the files exist only as open descriptors of that process.
        held = [str(fd.readlink()) for fd in Path(f"/proc/{proc.pid}/fd").iterdir()]
        assert sum(str(tmp_path) in target for target in held) >= 20
        assert list(tmp_path.iterdir()) == []
        proc.kill()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "reports, flt",
    [
        (["packets"], None),  # a row per packet: the whole table anyway
        (["snat"], None),  # matches connections across files
        (["flows"], "tcp.analysis.retransmission"),  # only tshark knows it
    ],
)
def test_what_needs_every_packet_stays_in_memory(reports, flt):
    result = analyze([SAMPLES[0]], filter=flt, reports=reports, in_memory_limit=3)
    assert result.analysis is not None


def test_estimate_packets(mixed_pcap, tmp_path):
    assert 19000 <= spill.estimate_packets(mixed_pcap) <= 21000
    assert spill.estimate_packets(tmp_path / "missing.pcap") == 0
    (tmp_path / "text.pcap").write_text("hello\n")
    assert spill.estimate_packets(tmp_path / "text.pcap") == 0


def test_cli_in_memory_limit(mixed_pcap, tmp_path):
    args = [mixed_pcap, "-r", "summary,flows,tcp,http", "-F", "json", "--contains", "lbtest"]
    small = podcap("analyze", *args, "--in-memory-limit", "2000")
    whole = podcap("analyze", *args, "--in-memory-limit", "0")
    assert small.returncode == whole.returncode == 0, small.stderr + whole.stderr
    assert json.loads(small.stdout) == json.loads(whole.stdout)
    assert json.loads(small.stdout)["http"]
    bad = podcap("analyze", mixed_pcap, "--in-memory-limit", "-1")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--in-memory-limit" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_cli_default_is_the_library_default():
    from podcap.cli import analyze as cli

    default = inspect.signature(cli.analyze).parameters["in_memory_limit"].default
    assert default == bucketed.IN_MEMORY_PACKETS


def test_a_pipe_is_never_read_twice(tmp_path):
    """The estimate must not read from a pipe (`podcap analyze <(zcat x.pcap.gz)`): what it
    read would be missing from the analysis."""
    sample = Path(SAMPLES[0])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(sample.read_bytes()), daemon=True)
    writer.start()
    got = analyze([str(fifo)], reports=["summary"], in_memory_limit=1)
    writer.join(timeout=10)
    expected = analyze([sample], reports=["summary"], in_memory_limit=0)
    assert got["summary"]["packets"][0] == expected["summary"]["packets"][0] > 0
    assert got.analysis is not None  # a pipe has no size to estimate from: held whole


def test_a_filter_tshark_must_finish_runs_tshark_once_per_file(monkeypatch):
    """`udp.port == 8472` on a VXLAN capture needs tshark (the outer UDP header): once per
    file, not once per bucket."""
    import podcap.dfilter as dfilter

    calls = []
    real = dfilter.matching_frames
    monkeypatch.setattr(
        dfilter, "matching_frames", lambda path, text: calls.append(path) or real(path, text)
    )
    vxlan = str(REPO / "sample_pcaps" / "05-vxlan-node-nic.pcap")
    got = analyze([vxlan], filter="udp.port == 8472", reports=BUCKET_REPORTS, in_memory_limit=1)
    assert got.analysis is None and len(calls) == 1
    expected = analyze([vxlan], filter="udp.port == 8472", reports=BUCKET_REPORTS)
    assert_same_result(got, expected)
    assert got.matched == len(read_capture(vxlan).packets)  # every packet rode in VXLAN


def test_gzip_capture_in_buckets(mixed_pcap, tmp_path, spill_dir):
    """A gzip file is estimated at five times its size and read through once into buckets."""
    zipped = tmp_path / "mixed.pcap.gz"
    zipped.write_bytes(gzip.compress(mixed_pcap.read_bytes()))
    estimate = spill.estimate_packets(zipped)
    assert estimate == pytest.approx(
        5 * zipped.stat().st_size / (mixed_pcap.stat().st_size / 20000), rel=0.1
    )
    got = analyze([zipped], reports=BUCKET_REPORTS, in_memory_limit=3000)
    expected = analyze([zipped], reports=BUCKET_REPORTS, in_memory_limit=0)
    assert got.analysis is None
    assert_same_result(got, expected)
    assert got["summary"]["packets"][0] == 20000
    assert open_spill_files(spill_dir) == []
