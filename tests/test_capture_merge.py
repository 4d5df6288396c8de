"""Per-Pod pcaps merged into one pcapng with one interface per Pod, read back by tshark."""

from __future__ import annotations

import dpkt

from podcap.capture.merge import merge
from testbed.helpers import tshark_fields
from tests.decode_fixtures import write_pcap


def eth_frame(src: str, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=1000, dport=2000, data=payload)
    udp.ulen = len(bytes(udp))
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes([10, 244, 9, 9]), p=17, data=udp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))


def test_merge_keeps_each_pod_as_its_own_interface_in_time_order(tmp_path):
    a, b, out = tmp_path / "shop_web-0.pcap", tmp_path / "shop_web-1.pcap", tmp_path / "all.pcapng"
    write_pcap(
        a,
        dpkt.pcap.DLT_EN10MB,
        [(1.5, eth_frame("10.244.0.10", b"a1")), (3.25, eth_frame("10.244.0.10", b"a2"))],
    )
    raw = bytes(dpkt.ethernet.Ethernet(eth_frame("10.244.1.10", b"b1")).data)
    write_pcap(b, 101, [(2.0, raw)])  # LINKTYPE_RAW: a different link type per interface
    assert merge([("shop/web-0", a), ("shop/web-1", b)], out) == 3
    rows = tshark_fields(out, "frame.interface_name", "frame.time_epoch", "ip.src", "data.data")
    assert [(r[0], r[2], bytes.fromhex(r[3])) for r in rows] == [
        ("shop/web-0", "10.244.0.10", b"a1"),
        ("shop/web-1", "10.244.1.10", b"b1"),
        ("shop/web-0", "10.244.0.10", b"a2"),
    ]
    assert [float(r[1]) for r in rows] == [1.5, 2.0, 3.25]


def test_merge_keeps_the_original_length_of_packets_cut_by_the_snap_length(tmp_path):
    # As tcpdump -s 64 writes them: 64 bytes kept of each packet, its size on the wire recorded.
    # Nanosecond and big-endian inputs too: the merge reads every pcap flavour tcpdump writes.
    a, b, out = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "all.pcapng"
    frames = [eth_frame("10.244.0.10", b"x" * size) for size in (200, 1400)]
    write_pcap(a, dpkt.pcap.DLT_EN10MB, [(1.0, f[:64], len(f)) for f in frames], snaplen=64)
    short = eth_frame("10.244.1.10", b"y" * 10)  # not cut: captured and original agree
    write_pcap(b, dpkt.pcap.DLT_EN10MB, [(1.5, short)], nano=True, big_endian=True)
    assert merge([("shop/web-0", a), ("shop/web-1", b)], out) == 3
    rows = tshark_fields(out, "frame.interface_name", "frame.len", "frame.cap_len")
    assert rows == [
        ["shop/web-0", str(len(frames[0])), "64"],
        ["shop/web-0", str(len(frames[1])), "64"],
        ["shop/web-1", str(len(short)), str(len(short))],
    ]
