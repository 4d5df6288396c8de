"""The flows stage's two backends (podcap/flows/backend.py): the C extension against the numpy code.

Both compute flow ids, client sides, retransmissions and the flow table; the rest of the suite
runs the C passes (the default when they are built), and these tests check that the numpy
code, which podcap falls back to without a C compiler, gives exactly the same on every sample
capture, on several files at once, on a part of a table, and on random captures.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import dpkt
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podcap import flows
from podcap.analysis.steps import combine_captures
from podcap.decode import read_capture
from podcap.flows import backend, compiled
from tests.analyze_fixtures import (
    ACK,
    FIN,
    MAC_A,
    MAC_B,
    PSH,
    RST,
    SYN,
    Capture,
    tcp_frame,
    udp_frame,
)

SAMPLES = sorted(
    path
    for path in (Path(__file__).resolve().parent.parent / "sample_pcaps").iterdir()
    if path.suffix in (".pcap", ".pcapng")
)
PACKET_COLUMNS = ["flow_id", "c2s", "dup_of_frame", "retransmission"]


def numpy_and_compiled(function, *args) -> list:
    """``function(*args)`` by the numpy code, then by the C passes."""
    active = backend.ACTIVE
    assert backend.COMPILED is not None
    results = []
    try:
        for passes in (backend.NUMPY, backend.COMPILED):
            backend.ACTIVE = passes
            results.append(function(*args))
    finally:
        backend.ACTIVE = active
    return results


def flows_and_table(packets: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    assigned = flows.assign_flows(packets)
    return assigned, flows.flow_table(assigned)


def assert_same_flows(packets: pd.DataFrame) -> pd.DataFrame:
    (by_numpy, table_by_numpy), (by_c, table_by_c) = numpy_and_compiled(flows_and_table, packets)
    for column in PACKET_COLUMNS:
        np.testing.assert_array_equal(by_c[column].to_numpy(), by_numpy[column].to_numpy(), column)
    pd.testing.assert_frame_equal(table_by_c, table_by_numpy)
    return table_by_c


def test_the_c_passes_are_built_and_used(monkeypatch):
    assert backend.COMPILED is not None, "podcap was installed without _flowpass (no C compiler?)"
    assert backend.ACTIVE is backend.COMPILED
    packets = read_capture(SAMPLES[0]).packets
    calls = []
    for name in ("assign_flows", "retransmissions", "flow_sums"):

        def counted(function=getattr(compiled.EXTENSION, name), called=name, /, **arrays):
            calls.append(called)
            return function(**arrays)

        monkeypatch.setattr(compiled.EXTENSION, name, counted)
    flows.flow_table(packets)
    assert calls == ["assign_flows", "retransmissions", "flow_sums"]


def test_podcap_flowpass_0_turns_them_off():
    code = "from podcap.flows import backend; print(backend.ACTIVE.name)"
    for setting, used in (("0", "numpy"), ("1", "compiled")):
        env = {**os.environ, "PODCAP_FLOWPASS": setting}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.stdout.strip() == used, run.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.name)
def test_same_flows_on_every_sample(sample):
    table = assert_same_flows(read_capture(sample).packets)
    assert len(table) > 0


def test_same_flows_on_the_edge_cases(mixed_pcap):
    table = assert_same_flows(read_capture(mixed_pcap).packets)
    assert (table["client_port"] == 40005).sum() == 2  # port reuse: two flows


def test_same_flows_for_several_files():
    captures = {str(path): read_capture(path) for path in SAMPLES[:4]}
    table = assert_same_flows(combine_captures(captures))
    assert table["file"].nunique() == 4


def test_same_flow_table_for_some_flows_packets_only(mixed_pcap):
    assigned = flows.assign_flows(read_capture(mixed_pcap).packets)
    some = assigned[assigned["flow_id"] % 2 == 1]
    table_by_numpy, table_by_c = numpy_and_compiled(flows.flow_table, some)
    pd.testing.assert_frame_equal(table_by_c, table_by_numpy)
    assert sorted(table_by_c["flow_id"]) == sorted(some["flow_id"].unique())


# --- random captures ----------------------------------------------------------------------

ENDS = [("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1"), ("10.0.0.1", "10.0.0.1"),
        ("fd00::1", "fd00::2")]  # fmt: skip
PORTS = [80, 40000]
FLAGS = [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, 0, SYN | FIN]
# Sequence numbers relative to what the direction sent before, so that continuations,
# retransmissions, keep-alives and SYNs on the first number (or one below it) come up often.
SEQS = ["next", "next", "again", "first", "first-1", "next-1", 0, 2**32 - 1, 90000]
ARP = bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=0x0806, data=b"\x00" * 28))

packet = st.tuples(
    st.sampled_from(["tcp"] * 6 + ["udp", "arp"]),
    st.sampled_from(ENDS),
    st.sampled_from(PORTS),
    st.sampled_from(PORTS),
    st.sampled_from(FLAGS),
    st.sampled_from(SEQS),
    st.sampled_from([0, 1, 5]),
    st.sampled_from([0, 1000]),
    st.sampled_from([-0.5, 0.0, 0.001, 0.001, 1.0]),  # time goes back now and then
)


def random_capture(packets) -> pd.DataFrame:
    capture = Capture()
    sent: dict[tuple, tuple[int, int, int]] = {}  # direction: first, last, next sequence number
    for kind, (src, dst), sport, dport, flags, seq, size, window, gap in packets:
        if kind == "tcp":
            direction = (src, dst, sport, dport)
            first, last, following = sent.get(direction, (1000, 1000, 1000))
            relative = {"next": following, "again": last, "first": first,
                        "first-1": first - 1, "next-1": following - 1}  # fmt: skip
            number = relative.get(seq, seq) % 2**32
            frame = tcp_frame(src, dst, sport, dport, flags, number, 7, b"x" * size, window)
            step = size + bool(flags & (SYN | FIN))
            sent[direction] = (sent.get(direction, (number,))[0], number, (number + step) % 2**32)
        else:
            frame = udp_frame(src, dst, sport, dport, b"x" * size) if kind == "udp" else ARP
        capture.add(frame, gap)
    with tempfile.TemporaryDirectory() as folder:
        return read_capture(capture.write(Path(folder) / "random.pcap")).packets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packet, min_size=1, max_size=60))
def test_same_flows_on_random_captures(packets):
    assert_same_flows(random_capture(packets))
