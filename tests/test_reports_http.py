"""The http report: requests on any port, retransmissions counted once, latency, vs tshark."""

import pytest

from podcap.analysis.run import analyze
from tests.analyze_fixtures import ACK, PSH, Capture, tshark_fields


@pytest.fixture(scope="module")
def http(mixed_pcap):
    return analyze([mixed_pcap], reports=["http"])["http"]


def test_request_uris_match_tsharks(mixed_pcap, http):
    oracle = [
        row[0]
        for row in tshark_fields(mixed_pcap, "http.request.uri", display_filter="http.request")
    ]
    assert list(http["uri"]) == oracle
    assert list(http["uri"]) == ["/mytest", "/odd-port", "/first", "/second", "/v6", "/inner"]


def test_methods_hosts_status_and_latency(http):
    row = http.set_index("uri").loc["/mytest"]
    assert (row["method"], row["host"], row["status"]) == ("GET", "svc", 200)
    assert row["latency_ms"] == pytest.approx(5.0, abs=0.01)
    odd = http.set_index("uri").loc["/odd-port"]
    # The first copy of the request went out at t, its retransmission 200 ms later; the
    # 404 came 1 ms after that: latency counts from the first copy.
    assert (odd["status"], odd["server_port"]) == (404, 6000)
    assert odd["latency_ms"] == pytest.approx(201.0, abs=0.01)
    assert http.set_index("uri").loc["/v6", "method"] == "POST"


def test_inner_addresses_of_overlay_requests(http):
    inner = http.set_index("uri").loc["/inner"]
    assert (inner["client_ip"], inner["server_ip"], inner["server_port"]) == (
        "10.244.1.5", "10.244.2.7", 8080,
    )  # fmt: skip


def test_keepalive_requests_pair_with_their_responses_in_order(tmp_path):
    cap = Capture()
    s = cap.session("10.3.0.1", "10.3.0.2", 43000, 8080).handshake()
    s.http(uri="/a", status=200, latency=0.010).http(uri="/b", status=503, latency=0.020)
    s.c(PSH | ACK, b"GET /unanswered HTTP/1.1\r\nHost: x\r\n\r\n").close()
    path = cap.write(tmp_path / "keepalive.pcap")
    table = analyze([path], reports=["http"])["http"]
    assert list(table["uri"]) == ["/a", "/b", "/unanswered"]
    assert list(table["status"].astype("float").fillna(0)) == [200, 503, 0]
    assert list(table["latency_ms"].round(1).fillna(-1)) == [10.0, 20.0, -1]
    oracle = tshark_fields(path, "http.request.uri", display_filter="http.request")
    assert [r[0] for r in oracle] == list(table["uri"])


def test_with_a_uri_filter_only_that_request_is_listed(mixed_pcap):
    table = analyze([mixed_pcap], filter='http.request.uri == "/second"', reports=["http"])["http"]
    assert list(table["uri"]) == ["/second"]


def test_a_filter_on_a_connection_lists_all_its_requests(tmp_path):
    cap = Capture()
    s = cap.session("10.3.0.1", "10.3.0.2", 43001, 8080).handshake()
    s.http(uri="/one").http(uri="/two").close()
    cap.session("10.3.0.1", "10.3.0.2", 43002, 80).handshake().http(uri="/other").close()
    path = cap.write(tmp_path / "two.pcap")
    table = analyze([path], filter="tcp.port == 8080", reports=["http"])["http"]
    assert list(table["uri"]) == ["/one", "/two"]
