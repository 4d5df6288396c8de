"""Display filters: parsing, native evaluation compared with tshark, the tshark fallback."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podcap.analysis.run import analyze
from podcap.dfilter import compile_filter, contains_filter, uri_filter
from podcap.dfilter.lexer import NotNative
from podcap.dfilter.nodes import And, Compare, Exists, Literal, Not, Or
from podcap.dfilter.parser import parse
from podcap.errors import FilterError
from tests.analyze_fixtures import tshark_fields


def podcap_frames(path, text):
    result = analyze([path], filter=text, reports=["packets"])
    return [int(f) for f in result["packets"]["frame"]]


def tshark_frames(path, text):
    return [int(row[0]) for row in tshark_fields(path, "frame.number", display_filter=text)]


def test_precedence_is_not_then_and_then_or():
    node = compile_filter("tcp.port == 81 || not tcp.port == 80 && tcp.flags.syn").node
    assert node == Or(
        Compare("tcp.port", "==", Literal("81", False)),
        And(Not(Compare("tcp.port", "==", Literal("80", False))), Exists("tcp.flags.syn")),
    )


def test_word_and_symbol_operators_parse_the_same():
    words = compile_filter("not (ip.src eq 10.0.0.1 and tcp.port ne 80) or udp").node
    symbols = compile_filter("!(ip.src == 10.0.0.1 && tcp.port != 80) || udp").node
    assert words == symbols


def test_contains_values_become_payload_needles():
    assert compile_filter('tcp contains "lbtest"').needles == {b"lbtest"}
    assert compile_filter("tcp contains 6c:62:74").needles == {b"lbt"}
    assert compile_filter(r'udp contains "\x6c\xffb"').needles == {b"l\xffb"}


def test_shortcuts_quote_their_text():
    assert contains_filter('say "hi"') == r'tcp contains "say \"hi\""'
    assert uri_filter("/mytest") == 'http.request.uri == "/mytest"'


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ip.addr == bogus", '"bogus" is not a valid hostname or IPv4 address'),
        ("foo.bar == 1", "foo.bar"),
        ('tcp contains "open', "not closed"),
        ("(tcp", "Unexpected end of filter expression"),
        ("", "empty"),
        ("tcp.port == 99999", "too big for this field"),
    ],
)
def test_bad_filters_raise_one_line_filter_errors(text, message):
    with pytest.raises(FilterError) as caught:
        compile_filter(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_without_tshark_a_non_native_filter_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no tshark on PATH
    assert compile_filter('tcp contains "x"').native  # native filters still work
    with pytest.raises(FilterError, match="tshark is not installed"):
        compile_filter("tcp.analysis.retransmission")
    assert os.environ["PATH"] == str(tmp_path)


def test_http_on_any_port_where_tshark_needs_decode_as(mixed_pcap):
    # Port 6000 is X11 to Wireshark: without "-d tcp.port==6000,http" tshark sees no HTTP
    # there, while podcap recognises the request by its first line on any port.
    text = 'http.request.uri == "/odd-port"'
    assert tshark_frames_plain(mixed_pcap, text) == []
    assert podcap_frames(mixed_pcap, text) == [18]


def tshark_frames_plain(path, text):
    rows = tshark_fields(path, "frame.number", display_filter=text, extra=())
    return [int(row[0]) for row in rows]


@given(st.text(alphabet='tcpudiphtr.=!&|()" 0123456789:/~<>andornotcontains', max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_text_parses_or_is_refused_cleanly(text):
    # The native parser either builds nodes, hands the text to tshark (NotNative), or
    # raises a one-line FilterError; nothing else escapes.
    try:
        parse(text)
    except NotNative:
        pass
    except FilterError as exc:
        assert "\n" not in str(exc)
