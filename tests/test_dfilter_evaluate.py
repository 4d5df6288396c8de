"""Native evaluation of display filters, compared with tshark's frames on the same file."""

import pytest

from podcap.analysis.run import analyze
from podcap.dfilter import compile_filter
from tests.analyze_fixtures import tshark_fields


def podcap_frames(path, text):
    result = analyze([path], filter=text, reports=["packets"])
    return [int(f) for f in result["packets"]["frame"]]


def tshark_frames(path, text):
    return [int(row[0]) for row in tshark_fields(path, "frame.number", display_filter=text)]


# Each is evaluated natively by podcap and by tshark on the same file; the frames must agree.
NATIVE_FILTERS = [
    'tcp contains "lbtest"',
    "tcp contains 6c:62:74:65",
    'udp contains "lbtest"',
    'http.request.uri == "/mytest"',
    'http.request.uri contains "st"',
    'http.request.uri matches "MYTEST"',  # Wireshark's matches ignores case
    'http.request.uri matches "(?-i)MYTEST"',
    'http.request.uri != "/mytest"',  # only packets that carry a URI
    'http.request.method == "POST"',
    "http.request.method == GET",
    'http.host == "svc" && tcp.dstport == 8080',
    "ip.addr == 10.244.1.5",  # the inner address of VXLAN packets
    "ip.addr == 192.168.0.1",  # the outer (node) address of the same packets
    "ip.src != 10.0.0.1",  # Wireshark 4: no occurrence equals, field present
    "ip.addr == 10.0.0.0/8 and tcp.flags.reset == 1",
    "ip.dst == 10.0.0.2 && !tcp.flags.syn == 1",
    "ipv6.addr == fd00::2",
    "ipv6.src == fd00::1 and tcp",
    "tcp.port == 80 and not tcp.flags.syn == 1",
    "tcp.srcport == 80 && tcp.flags.syn",  # a bare boolean field: present on every TCP packet
    "tcp.flags.syn == True || tcp.flags.reset == 1",
    "tcp.flags.fin == 1 and tcp.dstport > 9000",
    "(tcp.port eq 81 or tcp.port eq 9000) and tcp.flags.reset eq 1",
    "udp",
    "tcp.len >= 40",
    "icmp || ipv6",
]


@pytest.mark.parametrize("text", NATIVE_FILTERS)
def test_native_filter_matches_the_frames_tshark_matches(mixed_pcap, text):
    assert compile_filter(text).native
    expected = tshark_frames(mixed_pcap, text)
    assert podcap_frames(mixed_pcap, text) == expected


def test_retransmitted_request_is_not_an_http_uri_as_in_wireshark(tmp_path):
    from tests.analyze_fixtures import ACK, PSH, Capture

    cap = Capture()
    s = cap.session("10.0.0.1", "10.0.0.2", 40001, 80).handshake()
    request = b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n"
    s.c(PSH | ACK, request).c(PSH | ACK, request, seq=s.cseq - len(request), gap=0.3)
    path = cap.write(tmp_path / "retrans.pcap")
    text = 'http.request.uri == "/again"'
    assert podcap_frames(path, text) == tshark_frames(path, text) == [4]


SPLIT_FILTERS = [
    "http.response.code == 200",
    "http.response.code == 404",
    'http.request.method == "POST"',
    'http.request.uri == "/up"',
    'http.request.uri == "/one"',
]


@pytest.fixture(scope="module")
def split_messages(tmp_path_factory):
    """Messages longer than their first segment: a POST whose body follows its head, a
    response whose body comes in two more segments (one of them retransmitted), a request
    and response in one segment each, and a response the capture ends before completing."""
    from tests.analyze_fixtures import ACK, PSH, Capture

    cap = Capture()
    s = cap.session("10.0.0.1", "10.0.0.2", 40010, 80).handshake()
    post = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
    s.c(PSH | ACK, post).c(PSH | ACK, b"0123456789").s(ACK)
    s.s(PSH | ACK, b"HTTP/1.1 200 OK\r\nContent-Length: 24\r\n\r\n").s(PSH | ACK, b"x" * 12)
    s.s(PSH | ACK, b"x" * 12, seq=s.sseq - 12, gap=0.2).s(PSH | ACK, b"y" * 12).c(ACK)
    s.c(PSH | ACK, b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n")
    s.s(PSH | ACK, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").c(ACK)
    t = cap.session("10.0.0.1", "10.0.0.2", 40011, 80).handshake()
    t.c(PSH | ACK, b"GET /cut HTTP/1.1\r\nHost: h\r\n\r\n")
    t.s(PSH | ACK, b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nnot")
    return cap.write(tmp_path_factory.mktemp("split") / "split-messages.pcap")


@pytest.mark.parametrize("text", SPLIT_FILTERS)
def test_http_fields_are_on_the_segment_completing_the_message_as_in_wireshark(
    split_messages, text
):
    expected = tshark_frames(split_messages, text)
    assert podcap_frames(split_messages, text) == expected
    if text == "http.response.code == 404":
        assert expected == []  # never completed in the capture: on no frame
    else:
        assert expected


def test_the_http_report_keeps_a_request_whose_completing_segment_matched(split_messages):
    http = analyze([split_messages], filter="http.response.code == 200", reports=["http"])["http"]
    assert http["uri"].tolist() == ["/up", "/one"]
    assert http["status"].tolist() == [200, 200]


@pytest.mark.parametrize(
    "text", ["tcp contains 6c", "tcp contains 00:50", "udp contains 00:35", "udp contains 1f:90"]
)
def test_header_bytes_are_searched_as_wireshark_searches_them(mixed_pcap, text):
    # Wireshark's tcp/udp contains covers the TCP/UDP header as well as the payload. The byte
    # 0x6c ("l") is in frame 45's payload ("hello lbtest") and, by chance, in a header field
    # of frame 65; 00:50 is port 80, 00:35 port 53, 1f:90 the inner port 8080 under VXLAN.
    frames = podcap_frames(mixed_pcap, text)
    assert frames == tshark_frames(mixed_pcap, text)
    if text == "tcp contains 6c":
        assert frames == [45, 65]


def test_udp_contains_on_an_overlay_starts_at_the_inner_header_unlike_wireshark(mixed_pcap):
    # Under VXLAN, Wireshark's outer UDP item spans the whole inner packet, so the VXLAN
    # header, the inner Ethernet and IP headers (here the inner addresses 10.244.x.x) match
    # `udp contains` too; podcap searches from the innermost TCP/UDP header on.
    assert tshark_frames(mixed_pcap, "udp contains 0a:f4") == list(range(68, 77))
    assert podcap_frames(mixed_pcap, "udp contains 0a:f4") == []


def test_http_on_any_port_where_tshark_needs_decode_as(mixed_pcap):
    # Port 6000 is X11 to Wireshark: without "-d tcp.port==6000,http" tshark sees no HTTP
    # there, while podcap recognises the request by its first line on any port.
    text = 'http.request.uri == "/odd-port"'
    assert tshark_frames_plain(mixed_pcap, text) == []
    assert podcap_frames(mixed_pcap, text) == [18]


def tshark_frames_plain(path, text):
    rows = tshark_fields(path, "frame.number", display_filter=text, extra=())
    return [int(row[0]) for row in rows]
