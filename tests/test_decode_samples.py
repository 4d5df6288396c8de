"""The decoder agrees with tshark on every lab capture in sample_pcaps/.

Per packet: inner and outer addresses, ports, TCP flags/seq/len/TSval, HTTP method, URI, Host
and status (see test_decode_vs_tshark.assert_agrees); per file: which packets carry the
``lbtest`` marker in their TCP/UDP payload.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from podcap.decode import read_capture
from testbed.helpers import tshark_fields
from tests.test_decode_vs_tshark import assert_agrees

SAMPLES = sorted(
    p
    for p in (Path(__file__).parent.parent / "sample_pcaps").glob("*")
    if p.suffix in (".pcap", ".pcapng") or p.name.endswith(".gz")
)
# tshark decodes VXLAN on 4789 only; flannel's 8472 (sample 05) needs a decode-as.
DECODE_AS = ("-d", "udp.port==8472,vxlan")

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the oracle here")


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_fields_agree_with_tshark(path):
    assert_agrees(path, *DECODE_AS)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_sample_marker_matches_agree_with_tshark(path):
    cap = read_capture(path, needles=(b"lbtest",))
    display_filter = 'tcp.payload contains "lbtest" || udp.payload contains "lbtest"'
    theirs = tshark_fields(path, "frame.number", display_filter=display_filter, extra=DECODE_AS)
    assert {int(r[0]) for r in theirs} == set(
        (np.flatnonzero(cap.contains[b"lbtest"]) + 1).tolist()
    )
    assert cap.warnings == []
