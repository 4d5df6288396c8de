"""Display filters podcap does not evaluate itself, run by tshark with the same meaning: the
frames agree, tshark's complaints come back in one line, and what tshark matched is kept by the
caller, never in the frozen filter record."""

import dataclasses
import os
from pathlib import Path

import pytest

import podcap.dfilter as dfilter
from podcap.decode import read_capture
from podcap.dfilter import DisplayFilter, compile_filter
from podcap.errors import FilterError
from tests.test_dfilter_evaluate import podcap_frames, tshark_frames

VXLAN_SAMPLE = Path(__file__).resolve().parents[1] / "sample_pcaps" / "05-vxlan-node-nic.pcap"


def test_udp_ports_of_an_overlay_go_to_tshark(mixed_pcap):
    # The packet table has no outer UDP header; tshark matches VXLAN's 4789 there.
    text = "udp.port == 4789"
    frames = podcap_frames(mixed_pcap, text)
    assert frames == tshark_frames(mixed_pcap, text)
    assert len(frames) == 9


@pytest.mark.parametrize(
    "text",
    [
        "tcp.analysis.retransmission",
        "tcp.port in {80, 81} && tcp.flags.syn == 1",
        "frame.len > 90 && tcp.stream == 3",
        "tcp.analysis.zero_window || tcp.analysis.flags",
    ],
)
def test_other_filters_run_through_tshark_with_the_same_meaning(mixed_pcap, text):
    assert not compile_filter(text).native
    frames = podcap_frames(mixed_pcap, text)
    assert frames and frames == tshark_frames(mixed_pcap, text)


def test_without_tshark_a_non_native_filter_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tshark on PATH
    assert compile_filter('tcp contains "x"').native  # native filters still work
    with pytest.raises(FilterError, match="tshark is not installed"):
        compile_filter("tcp.analysis.retransmission")
    assert os.environ["PATH"] == str(tmp_path)


def test_a_bad_filter_gives_tsharks_first_complaint():
    # pyshark keeps only tshark's last stderr line: the caret under the culprit.
    with pytest.raises(FilterError) as caught:
        compile_filter("ip.addr == bogus")
    assert str(caught.value) == (
        "display filter 'ip.addr == bogus': \"bogus\" is not a valid hostname or IPv4 address"
    )


def test_the_filter_record_holds_no_cache():
    """A compiled filter is its text, its parse and its needles, equal to another compiled
    from the same text: what tshark matched is kept by the caller."""
    assert [f.name for f in dataclasses.fields(DisplayFilter)] == ["text", "node", "needles"]
    assert compile_filter("udp.port == 8472") == compile_filter("udp.port == 8472")


def test_tshark_runs_once_per_file_for_the_frames_a_caller_keeps(monkeypatch):
    """Asked about a file in parts (as buckets ask), tshark runs once when the caller keeps
    its answers (``TsharkFrames``); without them, every call asks tshark again."""
    calls = []
    real = dfilter.matching_frames
    monkeypatch.setattr(
        dfilter, "matching_frames", lambda path, text: calls.append(path) or real(path, text)
    )
    capture = read_capture(VXLAN_SAMPLE)
    # Native to the parser, but on this file the outer UDP header only tshark sees.
    flt = compile_filter("udp.port == 8472")
    kept: dfilter.TsharkFrames = {}
    parts = capture.packets.iloc[:10], capture.packets.iloc[10:]
    masks = [flt.mask(part, capture.contains, VXLAN_SAMPLE, kept) for part in parts]
    assert len(calls) == 1 and [len(m) for m in masks] == [10, 12]
    assert all(m.all() for m in masks)  # every packet of the sample rides in VXLAN
    flt.mask(capture.packets, capture.contains, VXLAN_SAMPLE)
    assert len(calls) == 2
