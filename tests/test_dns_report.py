"""The dns report (``podcap.reports.dns``) and the exchanges under it (``podcap.flows.dns``):
on captures written here query by query, checked against tshark's DNS fields."""

import socket
import struct
import subprocess
import sys

import dpkt
import pytest

from podcap.analysis.run import analyze
from podcap.flows.dns import dns_exchanges
from tests.analyze_fixtures import (
    ACK,
    PSH,
    Capture,
    dns_answers_both_ways,
    tshark_fields,
    udp_frame,
)

POD, COREDNS = "10.244.1.5", "10.96.0.10"
SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]


def query(ident: int, name: str, qtype: int = 1) -> bytes:
    return bytes(dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)]))


def answer(ident, name, qtype=1, rcode=0, address=None, truncated=False) -> bytes:
    records = []
    if address:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        records.append(
            dpkt.dns.DNS.RR(name=name, type=qtype, rdata=socket.inet_pton(family, address))
        )
    message = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)], an=records)
    message.qr, message.rcode, message.rd, message.ra = dpkt.dns.DNS_R, rcode, 1, 1
    raw = bytearray(bytes(message))
    if truncated:
        raw[2] |= 0x02
    return bytes(raw)


class Resolver:
    """A Pod's resolver as glibc behaves: A and AAAA together from one socket, each name of
    the search list in turn (ndots:5), each answered or not as the test says."""

    def __init__(self, cap: Capture, port: int = 40000):
        self.cap, self.port, self.ident = cap, port, 100

    def ask(self, name: str, outcome: dict[int, tuple], gap: float = 0.001, resend_after=None):
        """``outcome``: per qtype, (rcode, address) or None (no answer)."""
        idents = {}
        for qtype in outcome:
            idents[qtype] = self.ident
            self.cap.add(
                udp_frame(POD, COREDNS, self.port, 53, query(self.ident, name, qtype)), gap
            )
            self.ident, gap = self.ident + 1, 0.0001
        for qtype, result in outcome.items():
            if result is not None:
                rcode, address, *rest = result
                reply = answer(idents[qtype], name, qtype, rcode, address, bool(rest))
                self.cap.add(udp_frame(COREDNS, POD, 53, self.port, reply), 0.002)
        return idents


@pytest.fixture(scope="module")
def dns_pcap(tmp_path_factory):
    cap = Capture()
    pod = Resolver(cap)
    # api.shop: every search domain NXDOMAIN, then the name itself answered.
    for domain in SEARCH:
        pod.ask(f"api.shop.{domain}", {1: (3, None), 28: (3, None)})
    pod.ask("api.shop", {1: (0, "93.184.216.34"), 28: (0, None)}, gap=0.0005)
    # db.prod: the AAAA answer lost (the conntrack race), asked again after 5 s.
    raced = Resolver(cap, port=40001)
    idents = raced.ask("db.prod.svc.cluster.local", {1: (0, "10.96.3.3"), 28: None}, gap=1.0)
    cap.add(
        udp_frame(POD, COREDNS, 40001, 53, query(idents[28], "db.prod.svc.cluster.local", 28)), 5.0
    )
    cap.add(
        udp_frame(COREDNS, POD, 53, 40001, answer(idents[28], "db.prod.svc.cluster.local", 28)),
        0.001,
    )
    # A name that exists nowhere, one the server fails on, one too large for UDP.
    missing = Resolver(cap, port=40002)
    for domain in SEARCH:
        missing.ask(f"nothere.{domain}", {1: (3, None), 28: (3, None)}, gap=1.0)
    missing.ask("nothere", {1: (3, None), 28: (3, None)})
    Resolver(cap, port=40003).ask("broken.example.com", {1: (2, None)}, gap=1.0)
    Resolver(cap, port=40004).ask("big.example.com", {1: (0, None, "tc")}, gap=1.0)
    # Truncated over UDP, then asked again over TCP (each message after its 2-byte length).
    Resolver(cap, port=40006).ask("large.example.com", {1: (0, None, "tc")}, gap=1.0)
    tcp = cap.session(POD, COREDNS, 40007, 53).handshake()
    for side, message in (
        (tcp.c, query(300, "large.example.com")),
        (tcp.s, answer(300, "large.example.com", address="192.0.2.80")),
    ):
        side(PSH | ACK, struct.pack("!H", len(message)) + message)  # fmt: skip
    tcp.close()
    # One name resolved twice, two seconds apart: two lookups, however alike.
    again = Resolver(cap, port=40010)
    for gap in (1.0, 2.0):
        again.ask("web.default.svc.cluster.local", {1: (0, "10.96.5.5"), 28: (0, None)}, gap=gap)
    # A resolver on another port (a NodeLocal DNSCache listening on 5300, say), answered.
    cap.add(udp_frame(POD, COREDNS, 40008, 5300, query(400, "cache.example.com")), 1.0)
    reply = answer(400, "cache.example.com", address="192.0.2.53")
    cap.add(udp_frame(COREDNS, POD, 5300, 40008, reply), 0.001)
    # Not DNS: a datagram elsewhere that happens to start like a query but is not answered.
    cap.add(udp_frame(POD, COREDNS, 40009, 9999, query(401, "nothing.example.com")), 0.1)
    # Not DNS to ask about: mDNS, and a payload on port 53 that is no DNS message at all.
    cap.add(udp_frame(POD, "224.0.0.251", 5353, 5353, query(1, "printer.local")), 1.0)
    cap.add(
        udp_frame(
            POD, COREDNS, 40005, 53, b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c"
        ),
        0.1,
    )
    return cap.write(tmp_path_factory.mktemp("dns") / "lookups.pcap")


@pytest.fixture(scope="module")
def lookups(dns_pcap):
    return analyze([dns_pcap], reports=["dns"])["dns"]


def exchanges_of(path):
    return dns_exchanges(analyze([path], reports=["summary"]).analysis.all_packets)


def test_each_query_is_paired_with_its_response_as_tshark_pairs_them(dns_pcap):
    found, expected = dns_answers_both_ways(dns_pcap)
    assert found == expected
    assert len(found) == 27  # 8 + 2 + 8 + 1 + 1 + 2 (UDP, TCP) + 4 + 1 (port 5300): all answers
    assert {row.transport for row in exchanges_of(dns_pcap).itertuples()} == {"udp", "tcp"}


def test_the_names_asked_are_tsharks(dns_pcap):
    # Off port 53, tshark's heuristic takes any datagram that parses as a query (port 9999
    # here); podcap wants it answered too, so that what merely parses is no DNS timeout.
    asked = tshark_fields(dns_pcap, "frame.number", "dns.qry.name",
                          display_filter="dns.flags.response == 0 && !(udp.port == 5353) && !(udp.port == 9999)")  # fmt: skip
    exchanges = exchanges_of(dns_pcap)
    assert [(int(f), n) for f, n in asked if n] == list(
        zip(exchanges.frame, exchanges.name, strict=True)
    )


def test_the_search_list_walk_is_one_lookup_with_its_wasted_queries(lookups):
    row = lookups[lookups["name"] == "api.shop"].iloc[0]
    assert row["verdict"] == "ndots_expansion"
    assert (row["queries"], row["wasted_queries"], row["unanswered"]) == (8, 6, 0)
    assert (row["rcode"], row["answer"], row["types"]) == ("NOERROR", "93.184.216.34", "A,AAAA")
    assert "'api.shop.'" in row["explanation"] and "ndots" in row["explanation"]


def test_a_lost_answer_of_a_parallel_pair_is_the_conntrack_race(lookups):
    row = lookups[lookups["name"] == "db.prod.svc.cluster.local"].iloc[0]
    assert row["verdict"] == "conntrack_race"
    assert row["unanswered"] == 1
    assert 5000 < row["latency_ms"] < 5010  # the retry after glibc's 5 s timeout
    assert "single-request-reopen" in row["explanation"]


@pytest.mark.parametrize(
    ("name", "verdict", "rcode"),
    [("nothere", "nxdomain", "NXDOMAIN"), ("broken.example.com", "servfail", "SERVFAIL"),
     ("big.example.com", "truncated", "NOERROR")],
)  # fmt: skip
def test_failures_are_named(lookups, name, verdict, rcode):
    row = lookups[lookups["name"] == name].iloc[0]
    assert (row["verdict"], row["rcode"]) == (verdict, rcode)


def test_a_truncated_answer_asked_again_over_tcp_is_answered(lookups):
    row = lookups[lookups["name"] == "large.example.com"].iloc[0]
    assert (row["verdict"], row["queries"], row["answer"]) == ("ok", 2, "192.0.2.80")


def test_dns_on_another_port_is_found_when_answered_as_tshark_decodes_it(dns_pcap, lookups):
    row = lookups[lookups["name"] == "cache.example.com"].iloc[0]
    assert (row["verdict"], row["answer"]) == ("ok", "192.0.2.53")
    decoded = tshark_fields(dns_pcap, "frame.number", "dns.qry.name", "dns.time",
                            display_filter="udp.port == 5300", extra=("-d", "udp.port==5300,dns"))  # fmt: skip
    exchange = exchanges_of(dns_pcap).set_index("name").loc["cache.example.com"]
    assert decoded[1][0] == str(exchange["response_frame"])
    assert round(float(decoded[1][2]) * 1000, 3) == exchange["latency_ms"]
    assert not lookups["name"].str.contains("nothing").any()


def test_a_name_asked_again_after_an_answer_is_another_lookup(lookups):
    rows = lookups[lookups["name"] == "web.default.svc.cluster.local"]
    assert rows["verdict"].tolist() == ["ok", "ok"]
    assert rows["queries"].tolist() == [2, 2]


def test_mdns_and_messages_that_are_not_dns_are_left_out(lookups):
    assert len(lookups) == 9
    assert not lookups["name"].str.contains("printer").any()


def test_the_command_line_shows_the_lookups(dns_pcap):
    run = subprocess.run(
        [sys.executable, "-m", "podcap", "analyze", str(dns_pcap), "-r", "dns", "-F", "csv"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    header, *rows = run.stdout.splitlines()
    assert header.startswith("ts,client_ip,client_pod,name,types,verdict")
    assert len(rows) == 9


def test_each_server_with_its_latency_percentiles_as_tshark_times_them(dns_pcap):
    import numpy as np

    servers = analyze([dns_pcap], reports=["dns_servers"])["dns_servers"]
    row = servers[(servers["server_ip"] == COREDNS) & (servers["server_port"] == 53)].iloc[0]
    times = [float(t) * 1000 for (t,) in tshark_fields(
        dns_pcap, "dns.time", display_filter="dns.time && udp.port == 53 || dns.time && tcp.port == 53")]  # fmt: skip
    assert row["answered"] == len(times)
    for column, share in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99)):
        assert row[column] == pytest.approx(np.quantile(times, share), abs=0.001)
    assert row["unanswered"] == 1  # the AAAA the race lost
    assert row["malformed"] == 1  # the payload on port 53 that is no DNS message
    assert row["nxdomain"] == 14  # api.shop's search domains (6) and nothere's every name (8)
