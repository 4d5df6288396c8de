"""Small captures written with dpkt for the analyze tests (filters, reports, rendering, CLI).

Every capture is built packet by packet so a test knows exactly what is in it; tshark then
reads the same file as the oracle. ``Session`` writes one TCP conversation with real sequence
numbers so Wireshark's analysis (tcp.stream, retransmissions, HTTP) sees what a kernel makes.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import dpkt
import pytest

from testbed import helpers

ROOT = Path(__file__).resolve().parent.parent
MAC_A = b"\x02\x00\x00\x00\x00\x01"
MAC_B = b"\x02\x00\x00\x00\x00\x02"
SYN, FIN, RST, PSH, ACK = (
    dpkt.tcp.TH_SYN,
    dpkt.tcp.TH_FIN,
    dpkt.tcp.TH_RST,
    dpkt.tcp.TH_PUSH,
    dpkt.tcp.TH_ACK,
)


def _ip_bytes(addr: str) -> tuple[int, bytes]:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return family, socket.inet_pton(family, addr)


def ip_packet(src: str, dst: str, proto: int, l4, ttl: int = 64) -> dpkt.Packet:
    """An IPv4 or IPv6 packet; dpkt fills in the L4 checksum when ``l4`` is a TCP/UDP object."""
    family, s = _ip_bytes(src)
    _, d = _ip_bytes(dst)
    if family == socket.AF_INET6:
        ip6 = dpkt.ip6.IP6(src=s, dst=d, nxt=proto, hlim=ttl, plen=len(l4))
        ip6.data = l4
        return ip6
    ip = dpkt.ip.IP(src=s, dst=d, p=proto, ttl=ttl, id=1)
    ip.data = l4
    ip.len = 20 + len(l4)
    return ip


def ether(ip: dpkt.Packet) -> bytes:
    kind = dpkt.ethernet.ETH_TYPE_IP6 if isinstance(ip, dpkt.ip6.IP6) else dpkt.ethernet.ETH_TYPE_IP
    return bytes(dpkt.ethernet.Ethernet(src=MAC_A, dst=MAC_B, type=kind, data=ip))


def tcp_frame(src, dst, sport, dport, flags, seq=0, ack=0, payload=b"", win=65535, ttl=64) -> bytes:
    # A real stack sends ack 0 until it has something to acknowledge.
    ack = ack if flags & ACK else 0
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, win=win)
    tcp.data = payload
    return ether(ip_packet(src, dst, dpkt.ip.IP_PROTO_TCP, tcp, ttl))


def udp_frame(src, dst, sport, dport, payload=b"") -> bytes:
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload, ulen=8 + len(payload))
    return ether(ip_packet(src, dst, dpkt.ip.IP_PROTO_UDP, udp))


def vxlan_frame(outer_src, outer_dst, inner: bytes, port: int = 4789, vni: int = 1) -> bytes:
    """An inner Ethernet frame wrapped in VXLAN over UDP, as a node NIC sees flannel/Calico."""
    header = bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\x00"
    return udp_frame(outer_src, outer_dst, 40000, port, header + inner)


@dataclass
class Session:
    """One TCP connection between client and server; call methods in wire order."""

    client: str
    server: str
    cport: int
    sport: int
    frames: list[tuple[float, bytes]]
    clock: list[float]
    cseq: int = 1000
    sseq: int = 5000
    sent: dict = field(default_factory=dict)

    def _emit(self, frame: bytes, gap: float) -> None:
        self.clock[0] += gap
        self.frames.append((self.clock[0], frame))

    def c(self, flags, payload=b"", gap=0.001, win=65535, seq=None):
        seq = self.cseq if seq is None else seq
        self._emit(
            tcp_frame(
                self.client,
                self.server,
                self.cport,
                self.sport,
                flags,
                seq,
                self.sseq,
                payload,
                win,
            ),
            gap,
        )
        if seq == self.cseq:
            self.cseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return self

    def s(self, flags, payload=b"", gap=0.001, win=65535, seq=None):
        seq = self.sseq if seq is None else seq
        self._emit(
            tcp_frame(
                self.server,
                self.client,
                self.sport,
                self.cport,
                flags,
                seq,
                self.cseq,
                payload,
                win,
            ),
            gap,
        )
        if seq == self.sseq:
            self.sseq += len(payload) + (1 if flags & (SYN | FIN) else 0)
        return self

    def handshake(self, rtt=0.002):
        self.c(SYN).s(SYN | ACK, gap=rtt).c(ACK)
        return self

    def close(self):
        self.c(FIN | ACK).s(FIN | ACK).c(ACK)
        return self

    def http(self, method="GET", uri="/", host="svc", status=200, latency=0.005, body=b"ok"):
        request = f"{method} {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode()
        self.c(PSH | ACK, request)
        response = f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
        self.s(PSH | ACK, response, gap=latency)
        self.c(ACK)
        return self


class Capture:
    """Collects frames from several sessions and writes them in time order."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.frames: list[tuple[float, bytes]] = []
        self.clock = [start]

    def session(self, client, server, cport, sport, isn=1000) -> Session:
        return Session(
            client, server, cport, sport, self.frames, self.clock, cseq=isn, sseq=isn + 4000
        )

    def add(self, frame: bytes, gap: float = 0.001) -> None:
        self.clock[0] += gap
        self.frames.append((self.clock[0], frame))

    def write(self, path: Path, sidecar: dict | None = None) -> Path:
        with open(path, "wb") as out:
            writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
            for ts, frame in self.frames:
                writer.writepkt(frame, ts=ts)
        if sidecar is not None:
            Path(f"{path}.json").write_text(json.dumps(sidecar))
        return path


def build_mixed(path: Path) -> Path:
    """The edge cases every analyze test leans on, in one file.

    - 10.0.0.1:40001 -> 10.0.0.2:80   GET /mytest 200, graceful close (SF)
    - 10.0.0.1:40002 -> 10.0.0.2:80   unanswered SYN, retransmitted twice (S0)
    - 10.0.0.1:40003 -> 10.0.0.2:81   SYN answered by RST (REJ: connection refused)
    - 10.0.0.1:40004 -> 10.0.0.2:6000 HTTP on a port tshark does not decode as HTTP (X11); request retransmitted
    - 10.0.0.1:40005 -> 10.0.0.2:80   port reuse: a full connection, then a new SYN on the same 4-tuple
    - 10.0.0.1:40006 -> 10.0.0.2:9000 the lbtest marker, then the server resets mid-connection (RSTR)
    - 10.0.0.1:40007 -> 10.0.0.2:80   the server advertises a zero window
    - fd00::1 -> fd00::2 UDP 53, and an IPv6 TCP connection carrying POST /v6
    - VXLAN on 4789: 10.244.1.5:40008 -> 10.244.2.7:8080 GET /inner between nodes 192.168.0.1/.2
    """
    cap = Capture()
    cap.session("10.0.0.1", "10.0.0.2", 40001, 80).handshake().http(uri="/mytest").close()
    syn_only = cap.session("10.0.0.1", "10.0.0.2", 40002, 80)
    syn_only.c(SYN).c(SYN, gap=1.0, seq=1000).c(SYN, gap=2.0, seq=1000)
    cap.session("10.0.0.1", "10.0.0.2", 40003, 81).c(SYN).s(RST | ACK, seq=0)
    odd = cap.session("10.0.0.1", "10.0.0.2", 40004, 6000).handshake()
    request = b"GET /odd-port HTTP/1.1\r\nHost: odd\r\n\r\n"
    odd.c(PSH | ACK, request).c(PSH | ACK, request, gap=0.2, seq=odd.cseq - len(request))
    odd.s(PSH | ACK, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").close()
    cap.session("10.0.0.1", "10.0.0.2", 40005, 80).handshake().http(uri="/first").close()
    cap.session("10.0.0.1", "10.0.0.2", 40005, 80, isn=90000).handshake().http(
        uri="/second"
    ).close()
    marker = cap.session("10.0.0.1", "10.0.0.2", 40006, 9000).handshake()
    marker.c(PSH | ACK, b"hello lbtest\n").s(ACK).s(RST | ACK)
    zero = cap.session("10.0.0.1", "10.0.0.2", 40007, 80).handshake()
    zero.c(PSH | ACK, b"x" * 100).s(ACK, win=0).c(ACK).s(ACK, win=1000).close()
    cap.add(udp_frame("fd00::1", "fd00::2", 5353, 53, b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6))
    cap.session("fd00::1", "fd00::2", 40010, 80).handshake().http(method="POST", uri="/v6").close()
    inner = cap.session("10.244.1.5", "10.244.2.7", 40008, 8080)
    start = len(cap.frames)
    inner.handshake().http(uri="/inner").close()
    for i in range(start, len(cap.frames)):
        ts, frame = cap.frames[i]
        cap.frames[i] = (ts, vxlan_frame("192.168.0.1", "192.168.0.2", frame))
    return cap.write(path, sidecar={"target": "default/web-0", "node": "node-a"})


# tshark decodes HTTP only on registered ports (plus heuristics) and VXLAN only on 4789;
# podcap sees both everywhere. The oracle is told, so that comparisons are like for like.
ORACLE_DECODE_AS = ("-d", "tcp.port==6000,http", "-d", "udp.port==8472,vxlan")


# The oracle the analyze tests compare podcap with: the shared tshark runner with the decode-as
# rules above (``extra=()`` drops them, as test_dfilter_evaluate.py does for Wireshark's own view).
tshark_fields = functools.partial(helpers.tshark_fields, extra=ORACLE_DECODE_AS)


@pytest.fixture(scope="session")
def mixed_pcap(tmp_path_factory) -> Path:
    return build_mixed(tmp_path_factory.mktemp("analyze") / "mixed.pcap")


def dns_answers_both_ways(path) -> tuple[dict, dict]:
    """Per response frame, (question name, rcode, latency in ms): podcap's DNS exchanges
    (``podcap.flows.dns``) and tshark's dns.qry.name, dns.flags.rcode and dns.time."""
    from podcap.analysis.run import analyze
    from podcap.flows.dns import dns_exchanges

    expected = {
        int(frame): (name, int(rcode), round(float(time) * 1000, 3))
        for frame, name, rcode, time in tshark_fields(
            path, "frame.number", "dns.qry.name", "dns.flags.rcode", "dns.time",
            display_filter="dns.flags.response == 1 && dns.time",
        )
    }  # fmt: skip
    exchanges = dns_exchanges(analyze([path], reports=["summary"]).analysis.all_packets)
    found = {
        int(row.response_frame): (row.name, row.rcode, row.latency_ms)
        for row in exchanges.dropna(subset=["response_frame"]).itertuples()
    }
    return found, expected


@pytest.fixture(scope="session")
def plain_podcap(tmp_path_factory) -> Path:
    """The podcap command of a venv holding `pip install .` alone. scripts/test.sh makes one
    before the tests and names it in PODCAP_PLAIN_VENV; run alone, this test makes its own."""
    given = os.environ.get("PODCAP_PLAIN_VENV")
    if given:
        return Path(given) / "bin" / "podcap"
    venv = tmp_path_factory.mktemp("plain") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)]
    subprocess.run(pip, check=True, timeout=900)
    return venv / "bin" / "podcap"
