"""``engine="tshark"``: the same reports from Wireshark's dissectors, compared with native."""

import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.errors import DecodeError
from tests.test_reports_tshark_agreement import SAMPLES

FLOW_KEYS = ["proto", "client_ip", "client_port", "server_ip", "server_port", "state",
             "history", "packets_c2s", "packets_s2c", "encap", "outer_src"]  # fmt: skip


def both(path, **kwargs):
    native = analyze([path], engine="native", **kwargs)
    tshark = analyze([path], engine="tshark", **kwargs)
    return native, tshark


def test_flows_are_the_same_with_either_engine(mixed_pcap):
    native, tshark = both(mixed_pcap, reports=["flows", "summary"])
    pd.testing.assert_frame_equal(native["flows"][FLOW_KEYS], tshark["flows"][FLOW_KEYS])
    assert tshark["summary"].iloc[0]["link_types"] == "EN10MB"


def test_http_differs_only_where_wireshark_does_not_decode_http(mixed_pcap):
    native, tshark = both(mixed_pcap, reports=["http"])
    # Port 6000 is X11 to Wireshark: its dissectors never see that request as HTTP.
    assert list(native["http"]["uri"]) == [
        "/mytest",
        "/odd-port",
        "/first",
        "/second",
        "/v6",
        "/inner",
    ]
    assert list(tshark["http"]["uri"]) == ["/mytest", "/first", "/second", "/v6", "/inner"]


def test_filters_and_markers_work_with_the_tshark_engine(mixed_pcap):
    native, tshark = both(mixed_pcap, filter='tcp contains "lbtest"', reports=["packets"])
    assert list(native["packets"]["frame"]) == list(tshark["packets"]["frame"]) == [45]


def test_unreadable_input_is_a_decode_error(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DecodeError, match="garbage.pcap"):
        analyze([garbage], engine="tshark")


@pytest.mark.parametrize("path", SAMPLES[:4], ids=[p.name for p in SAMPLES[:4]])
def test_sample_flows_agree_between_engines(path):
    native, tshark = both(path, reports=["flows"])
    pd.testing.assert_frame_equal(native["flows"][FLOW_KEYS], tshark["flows"][FLOW_KEYS])
