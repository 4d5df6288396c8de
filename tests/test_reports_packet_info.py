"""The packets report's ``info`` column: Wireshark's Info column (ports, flags by name,
``Len=``, HTTP lines, DNS queries and responses, ICMP names) with the payload's first bytes, so that a marker found with
``tcp contains`` can be read in the table."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import dpkt
import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.decode.schema import ACK, PSH
from podcap.pcapfile import EN10MB
from podcap.reports.packet_info import flag_names, quoted
from testbed.helpers import podcap
from tests.analyze_fixtures import ether, ip_packet, tcp_frame, udp_frame
from tests.decode_fixtures import write_pcap

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(p for p in (ROOT / "sample_pcaps").iterdir() if p.suffix in (".pcap", ".pcapng"))
# Wireshark's marks before a row's text: [TCP Retransmission], [TCP Port numbers reused]...
MARKS = re.compile(r"^(\[[^\]]*\] )+")


def tshark_info(path: Path) -> dict[int, str]:
    """frame -> Wireshark's Info column (VXLAN on Flannel's port 8472, as the lab sends it)."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", "udp.port==8472,vxlan",
         "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {int(n): text for n, _, text in (line.partition("\t") for line in out.splitlines())}


def test_a_marker_found_with_contains_is_shown_in_info():
    run = podcap("analyze", ROOT / "sample_pcaps/02-lbtest-marker.pcap",
                 "-Y", 'tcp contains "lbtest"', "-r", "packets", "-F", "csv")  # fmt: skip
    assert run.returncode == 0, run.stderr
    (info,) = pd.read_csv(pd.io.common.StringIO(run.stdout))["info"]
    assert info.endswith(' Len=8 "lbtest\\r\\n"')
    assert "[PSH, ACK]" in info


def test_a_terminal_shows_info_among_the_key_columns_at_80():
    run = podcap("analyze", ROOT / "sample_pcaps/01-http-mytest.pcap", "-r", "packets",
                 env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "GET /mytest HTTP/1.1" in run.stdout
    assert "59886 → 80 [SYN] Len=0" in run.stdout
    assert max(len(line) for line in run.stdout.splitlines()) <= 80


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_info_says_what_wiresharks_info_says(sample):
    table = analyze([str(sample)], reports=["packets"])["packets"]
    theirs = tshark_info(sample)
    compared = 0
    for frame, info in zip(table["frame"], table["info"], strict=True):
        wireshark = theirs[frame]
        if wireshark.startswith("[TCP") and "Retransmission" in wireshark:
            continue  # to Wireshark a retransmitted request is no longer HTTP
        wireshark = MARKS.sub("", wireshark).rstrip()
        if info.startswith(("GET ", "POST ", "HTTP/1.")) or wireshark.startswith("HTTP/1."):
            # Wireshark puts a response's status line on the segment that completes it.
            if wireshark.startswith(("GET ", "POST ")):
                assert wireshark == info, frame
                compared += 1
            continue
        head, _, length = re.sub(r' ".*$', "", info).partition(" Len=")
        assert wireshark.startswith(head), (frame, info, wireshark)
        if length:
            assert f"Len={length}" in wireshark, (frame, info, wireshark)
        compared += 1
    assert compared  # rows that were held to Wireshark's, not all skipped


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
def test_both_engines_give_the_same_info(sample):
    native = analyze([str(sample)], reports=["packets"], engine="native")["packets"]
    tshark = analyze([str(sample)], reports=["packets"], engine="tshark")["packets"]
    assert native["info"].tolist() == tshark["info"].tolist()
    shown = native["info"].str.contains('"').any()  # payloads shown, not all left out
    truth = json.loads(sample.with_suffix(".truth.json").read_text())["ground_truth"]
    # Only a capture of SYNs that died (dropped, refused) or of DNS alone has no payload.
    assert shown or truth["dropped"] or truth["refused"] or truth["dns_lookups"]


def test_bytes_are_quoted_printable_or_escaped_and_flags_named_as_wireshark_does():
    assert quoted(b'GET "x"\\\r\n\t\x00\xff') == 'GET \\"x\\"\\\\\\r\\n\\t\\x00\\xff'
    assert flag_names(0x12) == "SYN, ACK"
    assert flag_names(0x19) == "FIN, PSH, ACK"
    assert flag_names(0) == "<None>"


def test_a_long_payload_is_cut_with_an_ellipsis_and_icmp_is_named(tmp_path):
    path = write_pcap(tmp_path / "long.pcap", EN10MB, [
        tcp_frame("10.0.0.1", "10.0.0.2", 40000, 9000, PSH | ACK, payload=b"x" * 200),
        udp_frame("10.0.0.1", "10.0.0.2", 40000, 53, payload=b"\x12\x34\x01"),
        ether(ip_packet("10.0.0.1", "10.0.0.2", 1, dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo()))),
    ])  # fmt: skip
    infos = analyze([str(path)], reports=["packets"])["packets"]["info"].tolist()
    assert infos == [
        '40000 → 9000 [PSH, ACK] Len=200 "' + "x" * 64 + '…"',
        '40000 → 53 Len=3 "\\x124\\x01"',
        "Echo (ping) request",
    ]
