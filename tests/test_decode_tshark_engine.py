"""``--engine tshark`` and the display-filter fallback run through pyshark (PDML mode).

That pyshark is what runs is shown two ways: tshark is started with pyshark's own arguments
(a ``tshark`` first on PATH logs them, then runs the real one), and the packet table holds
what only PDML's repeated layers give (outer and inner IP of an overlay packet).
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from podcap.analysis.run import analyze
from podcap.decode import read_capture
from podcap.decode.tshark_engine import PDML_PROTOCOLS, read_capture_tshark
from podcap.dfilter.tshark_fallback import matching_frames
from podcap.errors import DecodeError
from tests.decode_fixtures import ethernet, icmp, ipv4, udp, vxlan, write_pcap
from tests.test_decode_bad_input import FRAME, pcap_bytes
from tests.test_decode_vs_tshark import NODE1, NODE2, A, B, ethernet_cases

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="the engine is tshark")

REPO = Path(__file__).resolve().parents[1]
VXLAN_SAMPLE = REPO / "sample_pcaps" / "05-vxlan-node-nic.pcap"
SLL2_SAMPLE = REPO / "sample_pcaps" / "08-any-sll2.pcap"


def test_vxlan_packets_have_inner_pod_and_outer_node_addresses():
    result = analyze([VXLAN_SAMPLE], engine="tshark", reports=["packets", "http"])
    packets = result["packets"]
    assert len(packets) == 22 and set(packets["encap"]) == {"vxlan"}
    assert set(packets["src"]) | set(packets["dst"]) == {"10.244.0.10", "10.244.1.10"}
    outer = set(packets["outer_src"]) | set(packets["outer_dst"])
    assert outer == {"172.20.0.11", "172.20.0.12"}
    assert list(result["http"]["uri"]) == ["/across-nodes"]


def test_tshark_is_started_by_pyshark(tmp_path, monkeypatch):
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "bin" / "tshark"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {shutil.which("tshark")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    read_capture_tshark(VXLAN_SAMPLE)
    assert list(matching_frames(VXLAN_SAMPLE, "ip.len > 200")) == [6]
    # pyshark's PDML invocation ("-l -n -T pdml", our -j, its decode_as, then "-r FILE"); the
    # old direct calls were "-n -r FILE -d ... -T fields". The wrapper being the one run also
    # shows the tshark on PATH is handed to pyshark (its own search tries /usr/bin first).
    assert log.read_text().splitlines() == [
        f"-l -n -T pdml -j {PDML_PROTOCOLS} -d udp.port==8472,vxlan -r {VXLAN_SAMPLE}",
        f"-l -n -T pdml -Y ip.len > 200 -j geninfo -d udp.port==8472,vxlan -r {VXLAN_SAMPLE}",
    ]


def test_without_tshark_the_engine_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tshark on PATH
    with pytest.raises(DecodeError, match="needs tshark, which is not installed"):
        read_capture_tshark(VXLAN_SAMPLE)


def test_a_file_cut_short_keeps_its_packets_and_tsharks_complaint(tmp_path):
    # pyshark alone kills tshark at the end of its output, losing this complaint at random.
    path = tmp_path / "cut.pcap"
    last = 24 + 4 * (16 + len(FRAME))
    path.write_bytes(pcap_bytes([FRAME] * 5)[: last + 20])
    capture = read_capture_tshark(path, needles=(b"lbtest",))
    assert len(capture.packets) == 4 and capture.contains[b"lbtest"].sum() == 4
    cut = "appears to have been cut short in the middle of a packet"
    assert capture.warnings == [f'{path}: The file "{path}" {cut}']


def test_the_engine_agrees_with_the_native_decoder_on_edge_cases(tmp_path):
    icmp_in_vxlan = ethernet(
        ipv4(NODE1, NODE2, 17, udp(51003, 8472, vxlan(ethernet(ipv4(A, B, 1, icmp(8))))))
    )
    path = tmp_path / "edge.pcap"
    write_pcap(path, 1, [*ethernet_cases(), icmp_in_vxlan])
    native, tshark = read_capture(path).packets, read_capture_tshark(path).packets
    columns = [c for c in native.columns if c not in ("payload_off", "file_off")]  # unsaid
    pd.testing.assert_frame_equal(tshark[columns], native[columns])
    # The ICMP error quoting a UDP datagram is not IP-in-IP; ICMP in VXLAN has no ports.
    assert list(tshark["encap"][[5, len(tshark) - 1]]) == ["", "vxlan"]
    assert list(tshark["sport"][[5, len(tshark) - 1]]) == [-1, -1]


def test_linux_cooked_v2_columns_agree_with_native():
    native, tshark = read_capture(SLL2_SAMPLE), read_capture_tshark(SLL2_SAMPLE)
    assert tshark.linktypes == native.linktypes == ["LINUX_SLL2"]
    assert list(tshark.if_index) == list(native.if_index)
    assert list(tshark.pkt_type) == list(native.pkt_type)


def test_no_warning_and_no_tshark_left_behind():
    code = textwrap.dedent(
        f"""
        import os, subprocess
        from podcap.dfilter import compile_filter
        from podcap.dfilter.tshark_fallback import matching_frames
        from podcap.decode.tshark_engine import PDML_PROTOCOLS, read_capture_tshark
        from podcap.errors import FilterError
        for _ in range(3):
            read_capture_tshark({str(VXLAN_SAMPLE)!r})
            compile_filter("ip.len > 100")
            matching_frames({str(VXLAN_SAMPLE)!r}, "ip.len > 100")
            try:
                compile_filter("ip.addr == bogus")
            except FilterError:
                pass
        ps = ["ps", "--ppid", str(os.getpid()), "-o", "comm="]
        print(subprocess.run(ps, capture_output=True, text=True).stdout.split())
        """
    )
    # -X dev -W error: any ResourceWarning (an unclosed loop, pipe or process) is an error.
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", code],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.strip() == "['ps']"  # the only child left is ps itself


def _pdml_packets(path: Path) -> list[bytes]:
    """tshark's PDML for ``path``, one ``<packet>`` element (bytes) per frame."""
    pdml = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "pdml", "-d", "udp.port==8472,vxlan"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return [b"<packet>" + part.split(b"</packet>")[0] + b"</packet>"
            for part in pdml.split(b"<packet>")[1:]]  # fmt: skip


def _shown(packet) -> list:
    """Everything pyshark gives of a packet: each layer's fields with their shown values."""
    return [
        (layer.layer_name, [(f.name, f.showname, f.show, f.raw_value, f.pos)
                            for f in layer._get_all_fields_with_alternates()])
        for layer in [packet.frame_info, *packet.layers]
    ]  # fmt: skip


def test_the_pdml_parser_gives_pysharks_packets_on_every_path():
    from pyshark.tshark.output_parser.tshark_xml import TsharkXmlParser

    from podcap.decode.pyshark_reader import PdmlParser

    ours, pysharks = PdmlParser(), TsharkXmlParser()
    packets = _pdml_packets(VXLAN_SAMPLE) + _pdml_packets(SLL2_SAMPLE)
    # Packets pyshark cleans: a control byte, invalid UTF-8, a U+FFFF non-character (the last
    # two take pyshark's own path); and the "·" of tcp.flags.str, valid UTF-8 (ours).
    first = packets[0]
    packets += [first.replace(b'show="', b'show="\x01\x1f', 3),
                first.replace(b'show="', b'show="\xff', 1),
                first.replace(b'show="', b'show="\xef\xbf\xbf', 1)]  # fmt: skip
    assert any("\u00b7".encode() in p for p in packets)
    for raw in packets:
        assert _shown(ours._parse_single_packet(raw)) == _shown(pysharks._parse_single_packet(raw))


def test_the_engine_says_how_many_packets_it_has_read(monkeypatch):
    from podcap.decode import tshark_engine as tshark_table

    monkeypatch.setattr(tshark_table, "PROGRESS_EVERY", 10)  # the sample has 22 packets
    heard: list[str] = []
    analyze([VXLAN_SAMPLE], engine="tshark", reports=["summary"], on_progress=heard.append)
    counts = [m for m in heard if "with tshark" in m]
    assert counts == [f"reading {VXLAN_SAMPLE} with tshark: {n} packets" for n in (10, 20)]
