"""HTTP messages where they really are (``podcap.flows.messages``), against tshark's default
reassembly: requests pipelined in one segment, after a body in the same or a later segment,
bodies framed by chunked encoding or by odd Content-Length headers, heads split in two."""

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from podcap.analysis.run import analyze
from tests.analyze_fixtures import ACK, FIN, PSH, SYN, Capture, tshark_fields


def get(uri: str) -> bytes:
    return b"GET " + uri.encode() + b" HTTP/1.1\r\nHost: h\r\n\r\n"


def post(uri: str, headers: bytes, body: bytes) -> bytes:
    return b"POST " + uri.encode() + b" HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\n" + body


def ok(body: bytes, status: bytes = b"200 OK") -> bytes:
    length = str(len(body)).encode()
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: " + length + b"\r\n\r\n" + body


CHUNKED = b"Transfer-Encoding: chunked\r\n"
# Each case: the segments of one connection, ("c", bytes) from the client, ("s", ...) back.
CASES = {
    "pipelined": [("c", get("/a") + get("/b")), ("s", ok(b"ok") + ok(b"", b"404 Not Found"))],
    "after_body": [("c", post("/p", b"Content-Length: 5\r\n", b"hello") + get("/after"))],
    "leading_zeros": [("c", post("/z", b"Content-Length: 0005\r\n", b"hello") + get("/zeros"))],
    "chunked_over_length": [
        ("c", post("/c", CHUNKED + b"Content-Length: 3\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
        ("c", get("/after-chunked")),
    ],
    "chunked_in_one": [
        ("c", post("/c1", CHUNKED, b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n") + get("/c2"))
    ],
    "chunked_across": [
        ("c", post("/cs", CHUNKED, b"5\r\nhel")),
        ("c", b"lo\r\n3\r\nabc\r\n0\r\n\r\n" + get("/after-cs")),
    ],
    "negative_length": [("c", post("/n", b"Content-Length: -1\r\n", b"hello") + get("/lost"))],
    "uint64_max_length": [
        ("c", post("/u", b"Content-Length: 18446744073709551615\r\n", b"hello") + get("/lost"))
    ],
    "two_lengths": [
        ("c", post("/t", b"Content-Length: 3\r\nContent-Length: 5\r\n", b"abcde") + get("/last"))
    ],
    "body_in_later_segment": [
        ("c", post("/l", b"Content-Length: 10\r\n", b"01234")),
        ("c", b"56789" + get("/later")),
    ],
    "head_split": [("c", get("/x") + b"GET /y HTTP/1.1\r\nHo"), ("c", b"st: h\r\n\r\n")],
    "response_to_close": [
        ("c", get("/tc")),
        ("s", b"HTTP/1.1 200 OK\r\n\r\nbody"),
        ("s", ok(b"", b"201 Created")),  # part of the first one's body: no response here
    ],
    "long_head": [
        (
            "c",
            get("/big")
            + b"GET /cookie HTTP/1.1\r\nHost: h\r\nCookie: "
            + b"c" * 6000
            + b"\r\n\r\n"
            + get("/after-cookie"),
        )
    ],  # fmt: skip
    "in_the_handshake": [
        ("syn", post("/syn", b"Content-Length: 10\r\n", b"01234")),
        ("syn-ack", ok(b"hi")),
        ("c", b"56789" + get("/next")),
    ],
    "response_to_the_fin": [
        ("c", get("/tc")),
        ("s", b"HTTP/1.1 200 OK\r\n\r\nbody"),
        ("s", b"more"),
        ("fin", b""),  # the body ends here: tshark shows the response on this frame
    ],
}


def write_case(path, segments):
    cap = Capture()
    s = cap.session("10.0.0.1", "10.0.0.2", 40010, 80)
    if segments[0][0] != "syn":
        s.handshake()
    for side, data in segments:
        if side == "fin":
            s.s(FIN | ACK)
        elif side == "syn":  # data in the handshake (TCP Fast Open): after the SYN's number
            s.c(SYN, data)
        elif side == "syn-ack":
            s.s(SYN | ACK, data).c(ACK)
        else:
            (s.c if side == "c" else s.s)(PSH | ACK, data)
    s.s(ACK)
    return cap.write(path)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("http-messages")
    return {name: write_case(folder / f"{name}.pcap", segments) for name, segments in CASES.items()}


FIELDS = ("http.request.method", "http.request.uri", "http.host", "http.response.code")
COLUMNS = ("method", "uri", "host", "status")


def tshark_messages(path) -> dict[int, list[tuple]]:
    """Per frame, the messages tshark (reassembling, its default) shows there."""
    shown = {}
    for frame, *values in tshark_fields(path, "frame.number", *FIELDS, display_filter="http"):
        requests = list(zip(*(v.split(",") for v in values[:3]), strict=True)) if values[1] else []
        codes = [("", "", "", int(code)) for code in values[3].split(",") if code]
        shown[int(frame)] = [(m, u, h, -1) for m, u, h in requests] + codes
    return shown


def podcap_messages(path) -> dict[int, list[tuple]]:
    result = analyze([path], reports=["http"])
    packets, messages = result.analysis.all_packets, result.analysis.http_messages
    shown: dict[int, list[tuple]] = {}
    for message in messages[messages["end_row"] >= 0].itertuples():
        frame = int(packets["frame"].iat[message.end_row])
        shown.setdefault(frame, []).append(tuple(getattr(message, c) for c in COLUMNS))
    # tshark lists a frame's requests before its responses
    return {frame: sorted(found, key=lambda m: m[3]) for frame, found in shown.items()}


@pytest.mark.parametrize("name", CASES)
def test_messages_are_shown_on_the_frames_tshark_shows_them(cases, name):
    expected = tshark_messages(cases[name])
    assert podcap_messages(cases[name]) == expected
    assert expected, "each case shows tshark at least one message"


@pytest.mark.parametrize(
    ("name", "uri"),
    [("pipelined", "/b"), ("after_body", "/after"), ("chunked_across", "/after-cs"),
     ("body_in_later_segment", "/later"), ("two_lengths", "/last"), ("head_split", "/y")],
)  # fmt: skip
def test_a_filter_on_a_request_inside_a_segment_selects_the_frames_tshark_selects(cases, name, uri):
    text = f'http.request.uri == "{uri}"'
    frames = analyze([cases[name]], filter=text, reports=["packets"])["packets"]["frame"]
    expected = [
        int(row[0]) for row in tshark_fields(cases[name], "frame.number", display_filter=text)
    ]
    assert [int(f) for f in frames] == expected
    assert expected


@pytest.mark.parametrize("name", CASES)
def test_the_http_report_lists_the_requests_tshark_finds(cases, name):
    table = analyze([cases[name]], reports=["http"])["http"]
    uris = [r[0] for r in tshark_fields(cases[name], "http.request.uri", display_filter="http")]
    assert list(table["uri"]) == [u for row in uris for u in row.split(",") if u]


def test_pipelined_responses_answer_their_requests_in_order(cases):
    # Both requests in one segment, both responses in one: the n-th response answers the
    # n-th request (RFC 9112 9.3.2). tshark pairs both responses with the last request of
    # the segment (http.response_for.uri is http://h/b twice): there it is wrong.
    table = analyze([cases["pipelined"]], reports=["http"])["http"]
    assert list(zip(table["uri"], table["status"], strict=True)) == [("/a", 200), ("/b", 404)]
    answered = tshark_fields(
        cases["pipelined"], "http.response_for.uri", display_filter="http.response"
    )
    assert answered == [["http://h/b,http://h/b"]]


def test_a_gzipped_capture_is_read_again_through_its_decompression(cases, tmp_path):
    packed = tmp_path / "after_body.pcap.gz"
    with open(cases["after_body"], "rb") as plain, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(plain, out)
    table = analyze([packed], reports=["http"])["http"]
    assert list(table["uri"]) == ["/p", "/after"]


def test_from_a_pipe_requests_inside_a_segment_are_not_read(cases):
    # A pipe cannot be read again: the requests that start segments are all there is.
    run = subprocess.run(
        [sys.executable, "-m", "podcap", "analyze", "-", "-r", "http", "--format", "csv"],
        input=cases["after_body"].read_bytes(), capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert b"/p" in run.stdout
    assert b"/after" not in run.stdout


def test_conversation_buckets_find_the_same_messages(cases):
    # A capture too large for memory is analyzed conversation by conversation; the spilled
    # packets keep where their bytes are in the file, so the walk reads them all the same.
    paths = [cases["after_body"], cases["chunked_across"], cases["pipelined"]]
    in_buckets = analyze(paths, reports=["http"], in_memory_limit=1)["http"]
    in_memory = analyze(paths, reports=["http"], in_memory_limit=0)["http"]
    assert list(in_buckets["uri"]) == list(in_memory["uri"])
    assert {"/after", "/after-cs", "/b"} <= set(in_buckets["uri"])


def test_a_filter_and_the_report_read_one_message_table():
    # The message table is a walk of every HTTP segment: built once per analysis.
    from unittest import mock

    import podcap.flows.messages as messages

    real, calls = messages.message_table, []
    with mock.patch.object(
        messages, "message_table", side_effect=lambda p: calls.append(p) or real(p)
    ):
        sample = Path(__file__).parent.parent / "sample_pcaps" / "01-http-mytest.pcap"
        found = analyze([str(sample)], 'http.request.uri == "/mytest"', reports=["http"])["http"]
    assert found["uri"].tolist() == ["/mytest"]
    assert len(calls) == 1
