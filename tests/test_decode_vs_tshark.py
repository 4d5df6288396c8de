"""The decoder agrees with tshark, field by field, on generated edge cases.

Each case is a capture written byte by byte (see decode_fixtures): every link type, every
overlay, IPv6 extension headers, VLAN/QinQ, TSO length 0, packets cut by the snap length.
tshark reads the same file; for every packet the inner addresses, ports, flags, sequence
numbers, payload length, TCP timestamp, HTTP fields and the outer (node) addresses must match.
"""

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from podcap.analysis.run import analyze
from podcap.decode import read_capture
from testbed.helpers import tshark_fields
from tests.decode_fixtures import (
    ETH_IPV6,
    arcnet,
    ayiya,
    bsd_null,
    cisco_hdlc,
    ethernet,
    geneve,
    gre,
    gtpu,
    http_request,
    icmp,
    ipv4,
    ipv6,
    ipv6_extension,
    ipv6_fragment,
    llc_snap_frame,
    mpls,
    nflog,
    ppp,
    pppoe_session,
    slip,
    sll,
    sll2,
    tcp,
    tcp_syn_options,
    udp,
    vntag,
    vxlan,
    wlan_data,
    write_pcap,
)

pytestmark = pytest.mark.skipif(not shutil.which("tshark"), reason="tshark is the oracle here")

FIELDS = [
    "frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
    "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.len",
    "tcp.options.timestamp.tsval", "icmp.type", "icmpv6.type", "icmp.ident",
    "icmpv6.echo.identifier", "http.request.method",
    "http.request.uri", "http.host", "http.response.code", "frame.cap_len", "frame.len",
    "tcp.analysis.retransmission",
]  # fmt: skip

A, B = "10.244.1.5", "10.244.2.7"  # Pod addresses
NODE1, NODE2 = "192.168.10.11", "192.168.10.12"  # node addresses (overlay outer header)
V6A, V6B = "fd00:10:244::5", "fd00:10:244:1::7"
RESPONSE = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
REQUEST_END = 1000 + len(http_request("/mytest?lbtest=1"))


def inner_tcp(payload=b"", flags=0x18, sport=40000, dport=80, src=A, dst=B) -> bytes:
    return ethernet(ipv4(src, dst, 6, tcp(sport, dport, flags, payload, tsval=777)))


def ethernet_cases() -> list[bytes]:
    """One Ethernet frame per edge case, in the order the assertions below expect."""
    tso_payload = b"x" * 3000
    return [
        ethernet(ipv4(A, B, 6, tcp_syn_options(40000, 80, tsval=123456))),
        ethernet(ipv4(A, B, 6, tcp(40000, 80, 0x18, http_request("/mytest?lbtest=1"), tsval=9))),
        # The answer acknowledges the request, else tshark calls it a retransmission, not HTTP.
        ethernet(ipv4(B, A, 6, tcp(80, 40000, 0x18, RESPONSE, seq=2000, ack=REQUEST_END))),
        ethernet(ipv4(A, "10.96.0.10", 17, udp(5353, 53, b"\x12\x34\x01\x00" + b"\0" * 8))),
        ethernet(ipv4(A, B, 1, icmp(8, b"abcdefgh", ident=0x4D2))),
        # Port unreachable, quoting the UDP datagram that caused it.
        ethernet(ipv4(B, A, 1, icmp(3, ipv4(A, B, 17, udp(5353, 9999, b"q"))))),
        ethernet(ipv4(A, B, 6, tcp(1, 2, 0x04)), vlans=(100,)),
        ethernet(ipv4(A, B, 6, tcp(3, 4, 0x11)), vlans=(100, 200)),
        # IPv4 total length 0: a TSO/GSO super-packet as captured on the sending node.
        ethernet(ipv4(A, B, 6, tcp(40000, 80, 0x10, tso_payload), total_length=0)),
        ethernet(
            ipv6(
                V6A, V6B, 0, tcp(5000, 80, 0x02), extensions=ipv6_extension(60) + ipv6_extension(6)
            ),
            ETH_IPV6,
        ),
        ethernet(ipv6(V6A, V6B, 58, icmp(128, b"v6ping")), ETH_IPV6),
        ethernet(
            ipv4(NODE1, NODE2, 17, udp(51000, 4789, vxlan(inner_tcp(b"lbtest", sport=41001))))
        ),
        ethernet(
            ipv4(NODE1, NODE2, 17, udp(51001, 8472, vxlan(inner_tcp(http_request(), sport=41002))))
        ),
        ethernet(
            ipv4(
                NODE1,
                NODE2,
                17,
                udp(51002, 6081, geneve(inner_tcp(sport=41003), options=b"\x01\x02\x03\x04" * 2)),
            )
        ),
        ethernet(ipv4(NODE1, NODE2, 4, ipv4(A, B, 6, tcp(40001, 8080, 0x02)))),
        ethernet(ipv4(NODE1, NODE2, 41, ipv6(V6A, V6B, 17, udp(7000, 7001, b"hello")))),
        ethernet(ipv4(NODE1, NODE2, 47, gre(ipv4(A, B, 17, udp(9000, 9001, b"g"))))),
        ethernet(
            ipv4(NODE1, NODE2, 47, gre(inner_tcp(flags=0x02, sport=41004), protocol=0x6558, key=7))
        ),
    ]


# podcap puts HTTP fields on the packet whose payload starts the message; tshark, reassembling,
# on the packet that completes it. Without TCP reassembly tshark also uses the first one.
NO_REASSEMBLY = ("-o", "tcp.desegment_tcp_streams:FALSE")


def assert_agrees(path: Path, *tshark_args: str) -> None:
    cap = read_capture(path)
    theirs = tshark_fields(path, *FIELDS, extra=(*NO_REASSEMBLY, *tshark_args))
    ours = cap.packets
    assert len(ours) == len(theirs) > 0
    for row, fields in zip(ours.itertuples(index=False), theirs, strict=True):
        t = dict(zip(FIELDS, fields, strict=True))
        where = f"frame {row.frame}: {t}"
        # Overlays: the innermost header is the last occurrence. Otherwise the first: an ICMP
        # error quotes the offending packet's headers, which tshark lists after the real ones.
        which = -1 if row.encap else 0
        inner_src = t["ipv6.src" if row.ip_version == 6 else "ip.src"].split(",")[which]
        inner_dst = t["ipv6.dst" if row.ip_version == 6 else "ip.dst"].split(",")[which]
        assert (row.src, row.dst) == (inner_src, inner_dst), where
        if row.ip_proto in (1, 58):
            assert (row.sport, row.dport) == (-1, -1), where  # ICMP has no ports of its own
        else:
            l4 = "tcp" if row.ip_proto == 6 else "udp"
            expected_ports = (_last(t, f"{l4}.srcport", -1), _last(t, f"{l4}.dstport", -1))
            assert (row.sport, row.dport) == expected_ports, where
        if row.ip_proto == 6:
            assert row.tcp_flags == int(_text(t, "tcp.flags") or "0", 16), where
            assert row.tcp_seq == _last(t, "tcp.seq_raw", -1), where
            assert row.payload_len == _last(t, "tcp.len", 0), where
            assert row.tcp_tsval == _last(t, "tcp.options.timestamp.tsval", -1), where
        if row.ip_proto in (1, 58):
            assert row.icmp_type == _last(
                t, "icmpv6.type" if row.ip_proto == 58 else "icmp.type", -1
            )
            echo_id = "icmpv6.echo.identifier" if row.ip_proto == 58 else "icmp.ident"
            assert row.icmp_id == _last(t, echo_id, -1), where
        if t["tcp.analysis.retransmission"]:
            # tshark does not hand retransmitted segments (or the extra copies `-i any` sees)
            # to HTTP; podcap marks every packet that starts a request, reports dedupe later.
            assert row.http_method == "" or row.payload_len > 0, where
        else:
            assert row.http_method == _text(t, "http.request.method"), where
            assert row.http_uri == _text(t, "http.request.uri"), where
            assert row.http_host == _text(t, "http.host"), where
            assert row.http_status == _last(t, "http.response.code", -1), where
        assert (row.caplen, row.length) == (int(t["frame.cap_len"]), int(t["frame.len"])), where
        if row.encap:
            outer_src = t["ip.src"].split(",")[0]
            assert row.outer_src == outer_src and row.outer_dst == t["ip.dst"].split(",")[0], where
            assert row.outer_src != row.src, where


def _text(t: dict, name: str) -> str:
    return t[name].split(",")[-1]


def _last(t: dict, name: str, missing: int) -> int:
    value = _text(t, name)
    return int(value, 0) if value else missing  # decimal, or 0x hex as tshark shows some


def test_ethernet_edge_cases_agree_with_tshark(tmp_path):
    path = write_pcap(tmp_path / "edge.pcap", 1, ethernet_cases())
    assert_agrees(path, "-d", "udp.port==8472,vxlan")
    packets = read_capture(path).packets
    assert packets.encap.tolist()[11:] == ["vxlan", "vxlan", "geneve", "ipip", "ipip", "gre", "gre"]
    assert packets.payload_len[8] == 3000  # TSO: from the captured length, not the 0 field
    assert packets.ip_proto[9] == 6  # the TCP header behind two IPv6 extension headers
    assert packets.icmp_type[5] == 3 and packets.sport[5] == -1


def test_vxlan_8472_is_decoded_where_tshark_needs_a_decode_as(tmp_path):
    # tshark registers VXLAN on 4789 only; flannel and Cilium use 8472, which podcap decodes.
    path = write_pcap(tmp_path / "flannel.pcap", 1, ethernet_cases()[12:13])
    plain = tshark_fields(path, "ip.src")
    assert plain[0][0] == NODE1  # without -d tshark only sees the node addresses
    assert read_capture(path).packets.src[0] == A


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (113, lambda ip, v6: sll(ip, 0x86DD if v6 else 0x0800)),
        (276, lambda ip, v6: sll2(ip, 0x86DD if v6 else 0x0800)),
        (101, lambda ip, v6: ip),
        (0, lambda ip, v6: bsd_null(ip, 24 if v6 else 2)),
        (108, lambda ip, v6: struct.pack("!I", 24 if v6 else 2) + ip),
        (9, lambda ip, v6: ppp(ip, v6)),
        (9, lambda ip, v6: ppp(ip, v6, compressed=True)),
        (104, lambda ip, v6: cisco_hdlc(ip, v6)),
        (239, lambda ip, v6: nflog(ip, v6)),
        (129, lambda ip, v6: arcnet(ip, v6)),
        (129, lambda ip, v6: arcnet(ip, v6, rfc1051=not v6)),
    ],
    ids=[
        "LINUX_SLL",
        "LINUX_SLL2",
        "RAW",
        "NULL",
        "LOOP",
        "PPP",
        "PPP_ACFC_PFC",
        "C_HDLC",
        "NFLOG",
        "ARCNET_RFC1201",
        "ARCNET_RFC1051",
    ],
)
def test_link_types_agree_with_tshark(tmp_path, linktype, wrap):
    packets = [
        wrap(ipv4(A, B, 6, tcp(40000, 80, 0x18, http_request("/a"))), False),
        wrap(ipv6(V6A, V6B, 17, udp(1000, 53, b"q")), True),
        wrap(ipv4(NODE1, NODE2, 4, ipv4(A, B, 1, icmp())), False),
    ]
    path = write_pcap(tmp_path / f"lt{linktype}.pcap", linktype, packets)
    assert_agrees(path)
    assert read_capture(path).packets.ip_version.tolist() == [4, 6, 4]


def tunnel_cases() -> list[bytes]:
    """Framing between Ethernet and IP (MPLS alone, under VLAN, over IPv6; PPPoE, also under
    QinQ; VN-tag; 802.3 + LLC/SNAP), then tunnels (GTP-U plain and with a sequence number; GRE
    in UDP; WCCP and Aruba's 802.11 in GRE; AYIYA), each around the same inner segment."""
    inner = ipv4(A, B, 6, tcp(40000, 80, 0x18, http_request("/tunnelled"), tsval=5))
    v6_inner = ipv6(V6A, V6B, 17, udp(1000, 53, b"q"))
    other = ipv4(A, B, 6, tcp(40001, 80, 0x18, http_request("/wlan"), tsval=5))
    return [
        ethernet(mpls(inner), 0x8847),
        ethernet(mpls(v6_inner, labels=(99,)), 0x8847),
        ethernet(mpls(inner, labels=(16, 17, 18)), 0x8847, vlans=(100,)),
        ethernet(pppoe_session(inner), 0x8864),
        ethernet(pppoe_session(v6_inner, v6=True), 0x8864, vlans=(100, 200)),
        ethernet(vntag(inner), 0x8926),
        llc_snap_frame(inner),
        ethernet(ipv4(NODE1, NODE2, 17, udp(50000, 2152, gtpu(inner)))),
        ethernet(ipv4(NODE1, NODE2, 17, udp(50001, 2152, gtpu(v6_inner, sequence=5)))),
        ethernet(ipv4(NODE1, NODE2, 17, udp(50002, 4754, gre(inner)))),
        # WCCP redirects in GRE: v2 with its 4-byte redirect header, v1 without.
        ethernet(ipv4(NODE1, NODE2, 47, gre(b"\x00\x00\x00\x01" + inner, protocol=0x883E))),
        ethernet(ipv4(NODE1, NODE2, 47, gre(inner, protocol=0x883E))),
        ethernet(ipv4(NODE1, NODE2, 17, udp(5072, 5072, ayiya(v6_inner)))),
        ethernet(ipv4(NODE1, NODE2, 17, udp(5072, 5072, ayiya(inner, v6=False, identity_power=3)))),
        # Aruba's GRE: 802.11 data frames, plain, QoS with four addresses, over IPv6.
        ethernet(ipv4(NODE1, NODE2, 47, gre(wlan_data(inner), protocol=0x8210))),
        ethernet(
            ipv4(
                NODE1,
                NODE2,
                47,
                gre(wlan_data(other, qos=True, four_addresses=True), protocol=0x8370),
            )
        ),  # fmt: skip
        ethernet(ipv4(NODE1, NODE2, 47, gre(wlan_data(v6_inner, 0x86DD, qos=True), 0x8200))),
    ]


def test_framing_and_udp_tunnels_agree_with_tshark(tmp_path):
    path = write_pcap(tmp_path / "tunnels.pcap", 1, tunnel_cases())
    assert_agrees(path)
    packets = read_capture(path).packets
    assert packets.encap.tolist() == [""] * 7 + ["gtp", "gtp", "gre", "gre", "gre", "ayiya",
                                                 "ayiya", "gre", "gre", "gre"]  # fmt: skip
    assert packets.ip_version.tolist() == [4, 6, 4, 4, 6, 4, 4, 4, 6, 4, 4, 4, 6, 4, 4, 4, 6]
    assert (packets.http_uri[[0, 3, 7, 9, 10, 11, 14]] == "/tunnelled").all()
    assert packets.http_uri[15] == "/wlan"


def _tcp_with_header_length(sport: int, words: int, payload: bytes = b"") -> bytes:
    header = bytearray(tcp(sport, 80, 0x18, payload))
    header[12] = words << 4
    return bytes(header)


def malformed_cases() -> list[bytes]:
    """Headers cut or inconsistent, each as the field captures from the wild hold them."""
    syn = tcp(1006, 80, 0x02)
    bad_ihl = bytearray(ipv4(A, B, 6, tcp(1003, 80, 0x02)))
    bad_ihl[0] = 0x44  # IHL 4: 16 bytes, under the minimum
    return [
        ethernet(ipv4(A, B, 6, _tcp_with_header_length(1001, 4, b"abcd"))),  # TCP length 16
        ethernet(ipv4(A, B, 6, _tcp_with_header_length(1002, 15, b"ab"))),  # 60, past the end
        ethernet(bytes(bad_ihl)),
        ethernet(ipv4(A, B, 6, tcp(1004, 80, 0x02), total_length=18)),  # shorter than its header
        ethernet(ipv4(A, B, 6, tcp(1005, 80, 0x02), total_length=30)),  # ends inside TCP's
        ethernet(ipv4(A, B, 6, syn)),
        ethernet(ipv4(A, B, 6, tcp(1007, 80, 0x02)))[: 14 + 20 + 10],  # the frame itself cut
        ethernet(ipv4(A, B, 6, tcp(1008, 80, 0x02), total_length=200)),  # longer than the frame
    ]


HTTP_FORMS = [
    b"CONNECT mail.example:25 HTTP/1.1\r\nHost: mail.example:25\r\n\r\n",  # authority-form
    b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",  # asterisk-form
    b"GET /\r\n",  # HTTP/0.9: no version (with reassembly tshark waits for more, forever)
    b"GET HTTP/1.1\r\nHost: x\r\n\r\n",  # no URI: Wireshark shows the version as the URI
    b"GET /a HTTP/1.0\r\n\r\n",
    b"GET /x HTTP/1.1\nHost: lf\n\n",  # bare line feeds
]


def test_request_forms_and_every_method_agree_with_tshark(tmp_path):
    from podcap.decode.http import METHODS

    requests = HTTP_FORMS + [m + b" /dav/x HTTP/1.1\r\nHost: dav\r\n\r\n" for m in METHODS]
    frames = [ethernet(ipv4(A, B, 6, tcp(2000 + i, 80, 0x18, r))) for i, r in enumerate(requests)]
    # A request carried by a SYN (TCP Fast Open): Wireshark reads it as any other.
    frames.append(ethernet(ipv4(A, B, 6, tcp(3000, 80, 0x02, http_request("/in-syn")))))
    path = write_pcap(tmp_path / "http.pcap", 1, frames)
    assert_agrees(path)
    methods = read_capture(path).packets.http_method.tolist()
    assert methods[len(HTTP_FORMS) : -1] == [m.decode() for m in METHODS]


def test_malformed_headers_agree_with_tshark_streams_included(tmp_path):
    path = write_pcap(tmp_path / "malformed.pcap", 1, malformed_cases())
    assert_agrees(path)
    streams = {row[0] for row in tshark_fields(path, "tcp.stream") if row[0]}
    flows = analyze([str(path)], reports=["flows"])["flows"]
    assert len(streams) == len(flows[flows["proto"] == "tcp"]) == 4
    packets = analyze([str(path)], reports=["packets"])["packets"]
    assert packets["flow_id"].tolist() == [0, 1, -1, -1, -1, 2, -1, 3]


@pytest.mark.skipif(not shutil.which("tcpdump"), reason="tcpdump is the oracle for SLIP")
def test_slip_agrees_with_tcpdump_where_tshark_shows_data(tmp_path):
    """tshark has no dissector for libpcap's SLIP pseudo-header (16 bytes: direction, then
    compressed-header info) and shows the frame as data; tcpdump, libpcap's own reader,
    decodes the IP datagram behind it, and so does podcap."""
    packets = [slip(ipv4(A, B, 6, tcp(40000, 80, 0x18, b"x"))),
               slip(ipv6(V6A, V6B, 17, udp(1000, 53, b"q")), sent=True)]  # fmt: skip
    path = write_pcap(tmp_path / "slip.pcap", 8, packets)
    assert tshark_fields(path, "ip.src", "ipv6.src") == [["", ""], ["", ""]]
    shown = subprocess.run(["tcpdump", "-nr", str(path)], capture_output=True, text=True,
                           check=True).stdout.splitlines()  # fmt: skip
    assert f"IP {A}.40000 > {B}.80:" in shown[0] and f"IP6 {V6A}.1000 > {V6B}.53:" in shown[1]
    table = read_capture(path).packets
    assert table[["src", "dst", "sport", "dport"]].values.tolist() == [
        [A, B, 40000, 80], [V6A, V6B, 1000, 53]]  # fmt: skip


@pytest.mark.parametrize(("linktype", "version"), [(228, 4), (229, 6)])
def test_raw_ipv4_and_ipv6_link_types(tmp_path, linktype, version):
    packet = (
        ipv4(A, B, 17, udp(1, 2, b"x")) if version == 4 else ipv6(V6A, V6B, 17, udp(1, 2, b"x"))
    )
    path = write_pcap(tmp_path / "raw.pcap", linktype, [packet])
    assert_agrees(path)
    assert read_capture(path).linktypes == ["IPV4" if version == 4 else "IPV6"]


def test_snaplen_cut_packets_agree_with_tshark(tmp_path):
    frames = [
        inner_tcp(http_request("/long") + b"z" * 500),
        ethernet(ipv4(NODE1, NODE2, 17, udp(51000, 4789, vxlan(inner_tcp(b"q" * 300))))),
    ]
    # Keep the first 96 bytes of each frame as tcpdump -s 96 would; the wire length stays.
    records = [(1.0 + i, f[:96], len(f)) for i, f in enumerate(frames)]
    path = write_pcap(tmp_path / "snap.pcap", 1, records, snaplen=96)
    assert_agrees(path, "-d", "udp.port==8472,vxlan")
    packets = read_capture(path).packets
    assert packets.caplen.tolist() == [96, 96]
    assert packets.payload_len[0] == len(http_request("/long")) + 500


def test_fragments_carry_ports_only_in_the_first(tmp_path):
    segment = tcp(40000, 80, 0x18, b"x" * 40)
    frames = [
        ethernet(ipv4(A, B, 6, segment, frag=0x2000)),  # first fragment, more to come
        ethernet(ipv4(A, B, 6, b"y" * 24, frag=5)),  # offset 40: no TCP header here
        ethernet(ipv6(V6A, V6B, 44, segment, extensions=ipv6_fragment(6, 0, more=True)), ETH_IPV6),
        ethernet(ipv6(V6A, V6B, 44, b"z" * 16, extensions=ipv6_fragment(6, 7)), ETH_IPV6),
    ]
    packets = read_capture(write_pcap(tmp_path / "frag.pcap", 1, frames)).packets
    assert packets.sport.tolist() == [40000, -1, 40000, -1]
    assert packets.ip_proto.tolist() == [6, 6, 6, 6]
    assert packets.src.tolist() == [A, A, V6A, V6A]
