"""The conntrack report on captures written here: the shapes conntrack and NAT failures leave
at a Pod and at its node, each beside a look-alike that is not one.

- Pod web-a1's first SYN lost between it and the node, its retransmission 1 s later passing
  (rewritten): ``insert_failed``; the same while web-a0's connection held the node's port
  web-a1 asked for: ``snat_port_collision`` naming web-a0.
- Two Pods leaving the node from the same port to one server seconds apart: a reused port.
- A Service connection reset after a stray packet from the backend's own address.
The lab makes the real ones (tests/test_conntrack_lab.py)."""

import pytest

from podcap.analysis.run import analyze
from podcap.sidecar import sidecar_document
from tests.analyze_fixtures import ACK, PSH, RST, SYN, Capture

NODE_IP, SERVER = "172.20.0.11", "198.51.100.10"
POD_A, POD_B = "10.244.0.10", "10.244.0.11"


def _sidecar(kind, pod=None, ip=None):
    point = {"kind": kind, "node": "node-a", "interface": "eth0"}
    if pod:
        return sidecar_document({"pod_ip": ip}, point=point | {"namespace": "default", "pod": pod})
    return sidecar_document({"node_ip": NODE_IP, "pod_cidrs": ["10.244.0.0/24"]}, point=point)


def _write(tmp, name, capture, sidecar):
    return str(capture.write(tmp / f"{name}.pcap", sidecar))


def _connection(pod, node, client, cport, node_port, isn, *, lost_syns=0, data=b"lbtest"):
    """One connection seen at the Pod (``pod``) and, rewritten, at the node; the first
    ``lost_syns`` SYNs only at the Pod, one per second."""
    inner = pod.session(client, SERVER, cport, 9000, isn=isn)
    outer = node.session(NODE_IP, SERVER, node_port, 9000, isn=isn)
    for _ in range(lost_syns):
        inner.c(SYN, gap=1.0)
        inner.cseq = isn  # sent again unchanged
    start = max(inner.clock[0], outer.clock[0]) + 1.0 if lost_syns else inner.clock[0]
    for side in (inner, outer):
        side.clock[0] = start
        side.handshake().c(PSH | ACK, data).s(ACK).close()


@pytest.fixture(scope="module")
def delayed(tmp_path_factory):
    """web-a1 loses its first SYN at the node; nobody held the port it asked for."""
    tmp = tmp_path_factory.mktemp("delayed")
    pod_b, node = Capture(), Capture()
    _connection(pod_b, node, POD_B, 40000, 40001, isn=7000, lost_syns=1)
    files = [_write(tmp, "pod-b", pod_b, _sidecar("pod", "web-a1", POD_B)),
             _write(tmp, "node", node, _sidecar("node"))]  # fmt: skip
    return analyze(files, reports=["conntrack", "path"])


def test_a_first_syn_lost_at_the_node_is_an_insert_failure(delayed):
    table = delayed["conntrack"]
    assert table["verdict"].tolist() == ["insert_failed"]
    row = table.iloc[0]
    assert (row["client_ip"], row["client_port"], row["lost"]) == (POD_B, 40000, 1)
    assert row["delay_ms"] == pytest.approx(1000, abs=5)
    assert row["where"] == "pod default/web-a1 -> node-a eth0"
    assert "--random-fully" in row["fix"] and "insert_failed" in row["fix"]
    # The path report still follows the connection through (its later SYN matched).
    assert delayed["path"]["seen_at"].tolist() == ["pod default/web-a1 > node-a eth0"]


@pytest.fixture(scope="module")
def collided(tmp_path_factory):
    """web-a0 holds node:40000 to the server; web-a1 asks for 40000 too and loses SYNs."""
    tmp = tmp_path_factory.mktemp("collided")
    pod_a, pod_b, node = Capture(), Capture(), Capture()
    _connection(pod_a, node, POD_A, 40000, 40000, isn=1000)
    for capture in (pod_b, node):
        capture.clock[0] = pod_a.clock[0] - 0.004  # web-a1 starts while web-a0's is open
    _connection(pod_b, node, POD_B, 40000, 40001, isn=7000, lost_syns=2)
    files = [_write(tmp, "pod-a", pod_a, _sidecar("pod", "web-a0", POD_A)),
             _write(tmp, "pod-b", pod_b, _sidecar("pod", "web-a1", POD_B)),
             _write(tmp, "node", node, _sidecar("node"))]  # fmt: skip
    return analyze(files, reports=["conntrack"])["conntrack"]


def test_the_pod_holding_the_port_is_named(collided):
    assert collided["verdict"].tolist() == ["snat_port_collision"]
    row = collided.iloc[0]
    assert row["client_ip"] == POD_B and row["lost"] == 2
    assert row["other"] == f"{POD_A}:40000 (pod default/web-a0)"
    assert row["shared_end"] == f"{NODE_IP}:40000"
    assert "both Pods asked for port 40000" in row["explanation"]


@pytest.fixture(scope="module")
def reused(tmp_path_factory):
    """web-a0 and web-a1 leave the node from port 40000 to the server 2 s apart."""
    tmp = tmp_path_factory.mktemp("reused")
    pod_a, pod_b, node = Capture(), Capture(), Capture()
    _connection(pod_a, node, POD_A, 40000, 40000, isn=1000)
    for capture in (pod_b, node):
        capture.clock[0] += 2.0
    _connection(pod_b, node, POD_B, 45000, 40000, isn=9000)
    # A Pod reaching the server from its own port again is no collision.
    for capture in (pod_a, node):
        capture.clock[0] = max(pod_a.clock[0], node.clock[0]) + 1.0
    _connection(pod_a, node, POD_A, 40002, 40002, isn=20000)
    files = [_write(tmp, "pod-a", pod_a, _sidecar("pod", "web-a0", POD_A)),
             _write(tmp, "pod-b", pod_b, _sidecar("pod", "web-a1", POD_B)),
             _write(tmp, "node", node, _sidecar("node"))]  # fmt: skip
    return analyze(files, reports=["conntrack"])["conntrack"]


def test_a_node_port_reused_by_another_pod_is_a_collision(reused):
    assert reused["verdict"].tolist() == ["snat_port_collision"]
    row = reused.iloc[0]
    assert (row["client_ip"], row["client_port"], row["lost"]) == (POD_B, 45000, 0)
    assert row["other"].startswith(f"{POD_A}:40000 ") and row["shared_end"] == f"{NODE_IP}:40000"


def test_one_capture_alone_finds_no_collision(collided, tmp_path):
    pod_b = Capture()
    _connection(pod_b, Capture(), POD_B, 40000, 40000, isn=7000, lost_syns=2)
    path = _write(tmp_path, "pod-b", pod_b, _sidecar("pod", "web-a1", POD_B))
    assert analyze([path], reports=["conntrack"])["conntrack"].empty


@pytest.fixture(scope="module")
def stray(tmp_path_factory):
    """A Service connection (client -> 10.96.0.10:80), a segment from the backend's own
    address to the client's port, the client's reset, then the Service's reset."""
    cap = Capture()
    svc = cap.session(POD_A, "10.96.0.10", 41000, 80, isn=3000).handshake()
    svc.c(PSH | ACK, b"GET / HTTP/1.1\r\n").s(ACK)
    backend = cap.session("10.244.1.10", POD_A, 8080, 41000, isn=1 << 30)
    backend.c(PSH | ACK, b"late").s(RST)
    svc.c(PSH | ACK, b"\r\n", gap=1.0).s(RST)
    # Look-alikes: a reset to a port scan, from a port nothing else uses; and, on a server's
    # port other connections share, a connection the capture caught mid-way, reset.
    cap.session("10.244.1.99", POD_A, 5555, 41999, isn=4000).c(ACK).s(RST)
    cap.session("10.244.0.50", "10.96.0.10", 45000, 80, isn=6000).c(PSH | ACK, b"x").s(RST)
    return cap.write(tmp_path_factory.mktemp("stray") / "client-pod.pcap")


def test_a_reset_after_a_packet_nat_skipped(stray):
    reports = analyze([stray], reports=["conntrack", "tcp"])
    table = reports["conntrack"]
    assert table["verdict"].tolist() == ["reset_after_invalid"]
    row = table.iloc[0]
    assert (row["client_ip"], row["client_port"]) == (POD_A, 41000)
    assert (row["server_ip"], row["server_port"], row["other"]) == ("10.96.0.10", 80,
                                                                    "10.244.1.10:8080")  # fmt: skip
    assert "INVALID" in row["explanation"] and "answered with a reset" in row["explanation"]
    assert "nf_conntrack_tcp_be_liberal" in row["fix"]
    tcp = reports["tcp"]
    flagged = tcp[tcp["problem"] == "reset_after_invalid"]
    assert flagged["client_port"].tolist() == [41000]
    assert "10.244.1.10:8080" in flagged["hint"].iloc[0]


def test_a_filter_keeps_the_rows_of_the_connections_it_selects(stray):
    assert len(analyze([stray], "tcp.port == 41000", reports=["conntrack"])["conntrack"]) == 1
    assert analyze([stray], "tcp.port == 41999", reports=["conntrack"])["conntrack"].empty


def test_past_the_nat_the_reset_answers_a_segment_far_out_of_the_window(tmp_path):
    # On the client node's NIC the connection has the backend's address: the stray segment is
    # inside it, 2^30 past the server's bytes, and the client's reset carries its ack.
    cap = Capture()
    hit = cap.session(POD_A, "10.244.1.10", 41000, 8080, isn=3000).handshake()
    hit.c(PSH | ACK, b"GET / HTTP/1.1\r\n").s(ACK)
    hit.s(PSH | ACK, b"late", seq=hit.sseq + (1 << 30))
    hit.c(RST).c(PSH | ACK, b"\r\n", gap=1.0).s(RST)
    # Look-alike: a client that resets right after an ordinary answer.
    fine = cap.session(POD_A, "10.244.1.10", 41001, 8080, isn=9000).handshake()
    fine.c(PSH | ACK, b"GET / HTTP/1.1\r\n").s(PSH | ACK, b"HTTP/1.1 200 OK\r\n").c(RST)
    path = cap.write(tmp_path / "node-nic.pcap")
    table = analyze([path], reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == ["reset_after_invalid"]
    row = table.iloc[0]
    assert (row["client_port"], row["other"]) == (41000, "10.244.1.10:8080")
    assert "far outside the connection's sequence numbers" in row["explanation"]
