"""Decoding one capture in two processes (``podcap.decode.split``) gives exactly what one
process gives, whether the helper's part is adopted or dropped, and leaves nothing behind.

The helper only starts for files of at least ``split.MIN_BYTES`` (32 MiB); the tests lower
that threshold to keep their captures small, and force the helper on with
PODCAP_DECODE_HELPER=1 so the result does not depend on the CPUs of the machine.
"""

import gzip
import os
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from podcap.decode import read_capture, split, start_reading
from testbed.helpers import wait_for

REPO = Path(__file__).resolve().parent.parent
CLOCK = 1_700_000_000


@pytest.fixture
def helper_on(monkeypatch):
    monkeypatch.setattr(split, "MIN_BYTES", 64 * 1024)
    monkeypatch.setenv(split.ENV_SWITCH, "1")


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory) -> Path:
    """The benchmark's traffic mix (HTTP with lbtest markers, SYNs, RSTs, DNS, VXLAN on
    8472), 20,000 packets, about 2.3 MB."""
    path = tmp_path_factory.mktemp("split") / "mixed.pcap"
    script = REPO / "bench" / "make_big_pcap.py"
    subprocess.run([sys.executable, script, path, "--packets", "20000"], check=True)
    return path


def sequential(path: Path, monkeypatch, **kwargs):
    with monkeypatch.context() as m:
        m.setenv(split.ENV_SWITCH, "0")
        return read_capture(path, **kwargs)


def assert_same(got, expected) -> None:
    pd.testing.assert_frame_equal(got.packets, expected.packets)
    assert got.linktypes == expected.linktypes
    assert got.warnings == expected.warnings
    assert got.contains.keys() == expected.contains.keys()
    for needle, found in expected.contains.items():
        assert np.array_equal(got.contains[needle], found)
    assert np.array_equal(got.if_index, expected.if_index)
    assert np.array_equal(got.pkt_type, expected.pkt_type)
    if expected.payload_head is not None:
        assert np.array_equal(got.payload_head, expected.payload_head)


def leftovers() -> list[str]:
    """Hand-back files still open in this process (they never have a name)."""
    fds = Path("/proc/self/fd")
    return [target for fd in fds.iterdir() if "podcap-part-" in (target := _target(fd))]


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:
        return ""


def test_helper_part_is_adopted_and_equals_one_process(mixed_pcap, monkeypatch, helper_on):
    options = {"needles": (b"lbtest",), "chunk_bytes": 256 * 1024, "preview": True}
    reading = start_reading(mixed_pcap, **options)
    got = reading.finish()
    expected = sequential(mixed_pcap, monkeypatch, **options)
    # The helper really decoded part of the file, and the parts join seamlessly.
    assert 0 < reading.helper_packets < len(got.packets)
    assert_same(got, expected)
    assert got.packets["frame"].tolist() == list(range(1, len(got.packets) + 1))
    # Its string codes were mapped onto this process's strings: addresses, URIs, overlays.
    helper_rows = got.packets.iloc[-reading.helper_packets :]
    assert helper_rows["http_uri"].str.contains("lbtest").any()
    assert (helper_rows["encap"] == "vxlan").any()
    assert got.contains[b"lbtest"][-reading.helper_packets :].any()
    # The payloads' first bytes came back with the helper's part, in place.
    helper_heads = got.payload_head[-reading.helper_packets :]
    assert any(b"lbtest" in head for head in helper_heads)
    assert not leftovers()


def test_first_chunk_past_the_cut_without_http_parsing(mixed_pcap, monkeypatch, helper_on):
    # The default 16 MB chunk holds the whole file: this process's first read goes past the
    # cut, and must give the helper's part back rather than decode it twice.
    reading = start_reading(mixed_pcap, http=False)
    got = reading.finish()
    assert reading.helper_packets > 0
    assert_same(got, sequential(mixed_pcap, monkeypatch, http=False))
    assert (got.packets["http_uri"] == "").all()


def lured_pcap(path: Path, packets: int = 3001) -> Path:
    """Every packet's payload is a run of fake record headers (clock near the file's,
    caplen 0): wherever the cut lands, the first plausible "record" is inside a payload."""
    fake = struct.pack("<IIII", CLOCK, 1, 0, 60) * 60
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i in range(packets):
        frame = bytes(12) + b"\x08\x00" + bytes(2) + fake  # Ethernet, then a broken IP header
        out.append(struct.pack("<IIII", CLOCK, i, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


def test_a_wrong_guess_is_dropped_and_the_file_read_in_one_process(
    tmp_path, monkeypatch, helper_on
):
    path = lured_pcap(tmp_path / "lured.pcap")
    reading = start_reading(path, chunk_bytes=128 * 1024)
    got = reading.finish()
    assert reading.helper_packets == 0  # the guess was inside a payload: never adopted
    assert len(got.packets) == 3001
    assert_same(got, sequential(path, monkeypatch, chunk_bytes=128 * 1024))
    assert not leftovers()


def test_truncated_tail_is_worded_as_in_one_process(mixed_pcap, tmp_path, monkeypatch, helper_on):
    cut = tmp_path / "cut.pcap"
    data = mixed_pcap.read_bytes()
    cut.write_bytes(data[: len(data) - 7])  # the last record loses its end
    reading = start_reading(cut, chunk_bytes=256 * 1024)
    got = reading.finish()
    expected = sequential(cut, monkeypatch, chunk_bytes=256 * 1024)
    # The helper saw the cut and handed nothing back; this process read on and counted all.
    assert reading.helper_packets == 0
    assert got.warnings and "truncated record" in got.warnings[0]
    assert_same(got, expected)


def test_cancel_stops_the_helper_and_removes_its_file(mixed_pcap, helper_on):
    reading = start_reading(mixed_pcap, chunk_bytes=256 * 1024)
    helper = reading.helper
    assert helper is not None and helper.pid is not None
    pid = helper.pid
    reading.cancel()
    assert helper.pid is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left
    assert not leftovers()
    assert reading.reader.stream.closed


def test_the_helper_dies_with_a_killed_parent(mixed_pcap, tmp_path):
    # The parent starts the helper, says its pid, and is killed with SIGKILL (no cleanup).
    code = (
        "import os, signal, sys; from podcap.decode import split, start_reading; "
        "split.MIN_BYTES = 65536; r = start_reading(sys.argv[1], chunk_bytes=65536); "
        "print(r.helper.pid, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = dict(os.environ, PODCAP_DECODE_HELPER="1")
    run = subprocess.run(
        [sys.executable, "-c", code, str(mixed_pcap)], capture_output=True, text=True, env=env
    )
    assert run.returncode == -signal.SIGKILL
    helper_pid = int(run.stdout)
    assert wait_for(lambda: not Path(f"/proc/{helper_pid}").exists(), timeout=10), (
        f"helper {helper_pid} outlived its parent"
    )
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith("podcap-part-")]


def test_no_helper_while_the_other_cpus_are_busy(monkeypatch):
    monkeypatch.delenv(split.ENV_SWITCH, raising=False)
    cpus = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus - 1)]
    try:
        assert wait_for(lambda: split._running_elsewhere() >= cpus - 1, timeout=10)
        assert not split._spare_cpu()
        assert not split.wanted(split.MIN_BYTES * 4)
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_a_bad_report_name_stops_the_early_helper(mixed_pcap, helper_on):
    # analyze() starts reading before it imports the reports; a name it then refuses must
    # not leave the helper running or its file open.
    from podcap.analysis.run import analyze
    from podcap.errors import UsageError

    with pytest.raises(UsageError, match="unknown report 'nope'"):
        analyze([mixed_pcap], reports=["flows", "nope"])
    children = Path(f"/proc/self/task/{os.getpid()}/children").read_text().split()
    assert children == []
    assert not leftovers()


def test_small_files_gzip_and_the_off_switch_get_no_helper(mixed_pcap, tmp_path, monkeypatch):
    monkeypatch.setenv(split.ENV_SWITCH, "1")
    small = start_reading(mixed_pcap)  # 2.3 MB, under the real 32 MiB threshold
    assert small.helper is None
    small.cancel()
    monkeypatch.setattr(split, "MIN_BYTES", 64 * 1024)
    zipped = tmp_path / "mixed.pcap.gz"
    zipped.write_bytes(gzip.compress(mixed_pcap.read_bytes(), compresslevel=1))
    packed = start_reading(zipped)  # no offsets to cut at in a gzip stream
    assert packed.helper is None
    assert len(packed.finish().packets) == 20000
    monkeypatch.setenv(split.ENV_SWITCH, "0")
    off = start_reading(mixed_pcap)
    assert off.helper is None
    off.cancel()


def test_the_analyze_command_gives_the_same_flows(mixed_pcap, tmp_path):
    """Through the CLI, where reading starts before pandas is imported."""
    outputs = {}
    for switch in ("0", "1"):
        out = tmp_path / f"flows-{switch}.parquet"
        env = dict(os.environ, PODCAP_DECODE_HELPER=switch)
        code = (
            "import sys; from podcap.decode import split; split.MIN_BYTES = 65536; "
            "from podcap.cli import main; main(sys.argv[1:])"
        )
        argv = [sys.executable, "-c", code, "analyze", str(mixed_pcap), "-r", "flows"]
        subprocess.run([*argv, "-F", "parquet", "-o", str(out)], check=True, env=env)
        outputs[switch] = pd.read_parquet(out)
    assert len(outputs["1"]) > 1000
    pd.testing.assert_frame_equal(outputs["1"], outputs["0"])


def test_the_hand_back_file_goes_to_disk_when_dev_shm_is_small(monkeypatch, tmp_path):
    # A container's /dev/shm is often 64 MiB: too small for a helper's columns.
    real_statvfs = os.statvfs

    def small_shm(path):
        stat = real_statvfs(path)
        if str(path) == "/dev/shm":
            return os.statvfs_result((*stat[:4], 64 * 1024 * 1024 // stat.f_frsize, *stat[5:]))
        return stat

    assert split._scratch_dir() == "/dev/shm"  # this machine's is large
    monkeypatch.setattr(os, "statvfs", small_shm)
    assert split._scratch_dir() is None
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    helper = split.Helper(lambda: {"answer": np.arange(5)})
    assert os.readlink(f"/proc/self/fd/{helper.fd}").startswith(str(tmp_path))
    assert list(helper.result()["answer"]) == [0, 1, 2, 3, 4]


def test_pandas_and_the_reports_are_imported_while_the_helper_decodes(mixed_pcap):
    # The helper's share of the file is cut counting on this process importing pandas and the
    # reports meanwhile; imported only after the reading, they add ~0.35 s to the command
    # (as they once did, unseen by every other test).
    script = f"""
import sys
from podcap.analysis.memory import analyze_in_memory
from podcap.analysis.steps import Request
from podcap.decode import read_capture

class StartedReading:
    def finish(self):
        print(sorted(m for m in ("pandas", "podcap.flows", "podcap.reports.tcp")
                     if m in sys.modules))
        return read_capture({str(mixed_pcap)!r})

assert "pandas" not in sys.modules
analyze_in_memory([{str(mixed_pcap)!r}], Request(["tcp"], None), len, StartedReading())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "['pandas', 'podcap.flows', 'podcap.reports.tcp']"
