"""Conntrack and NAT failures made for real in the namespace lab, named by the conntrack report.

- SNAT port collision: two Pods of node-a connect to the IDC host from the same source port
  through ip-masq-agent's MASQUERADE without ``--random-fully``. In a cluster the two race
  for the node's port and the loser's SYN is dropped when its conntrack entry is confirmed;
  here the rule's port range is one port (``--to-ports``), so the second Pod loses every
  time, at the same place (the kernel's insert_failed counter says so). Captured at both
  Pods and the node's NIC, with sidecars saying where.
- Reset after INVALID: a client Pod holds a connection to a Service; the backend Pod sends a
  segment 2^30 past the window (``testbed/lab/stray.py``). node-a's conntrack marks it
  INVALID, NAT skips it, the client answers the backend's own address with a reset and the
  Service connection dies. Captured in the client Pod.
"""

from __future__ import annotations

import json
import sys

import pytest

from podcap.analysis.run import analyze
from podcap.sidecar import sidecar_document, sidecar_path, write_sidecar
from tests.analyze_fixtures import tshark_fields

PORT = 40000
HOLD = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('',int(sys.argv[2]))); s.settimeout(float(sys.argv[3]))\n"
    "try:\n"
    "    s.connect((sys.argv[1],9000)); print('connected',flush=True); s.sendall(b'lbtest')\n"
    "    time.sleep(float(sys.argv[4]))\n"
    "except OSError as e: print(type(e).__name__,flush=True)\n"
)
THEN_RESET = (
    "import socket,sys,time\n"
    "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
    "s.sendall(b'lbtest'); time.sleep(1.0)\n"
    "try:\n"
    "    s.sendall(b'\\n'); print('answered', s.recv(100))\n"
    "except OSError as e: print(type(e).__name__)\n"
)


ASK = (  # a resolver's way: a datagram from a fixed port, asked again when no answer came
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('',int(sys.argv[2])))\n"
    "s.settimeout(0.5)\n"
    "for n in range(int(sys.argv[3])):\n"
    "    s.sendto(sys.argv[4].encode(),(sys.argv[1],9000))\n"
    "    try:\n"
    "        s.recv(100); print('answered',flush=True); break\n"
    "    except OSError: pass\n"
    "else: print('unanswered',flush=True)\n"
)


def _sidecar(path, kind, node, pod=None, pod_ip=None, node_ip=None, cidr=None):
    point = {"kind": kind, "node": node, "interface": "eth0"}
    if pod is not None:
        point |= {"namespace": "default", "pod": pod}
    cluster = {"pod_ip": pod_ip} if pod_ip else {"node_ip": node_ip, "pod_cidrs": [cidr]}
    write_sidecar(sidecar_path(str(path)), sidecar_document(cluster, point=point))


def _insert_failed(lab, node) -> int:
    from testbed.lab.conntrack import counter  # noqa: PLC0415

    return counter(lab, node, "insert_failed")


def _lab_or_skip():
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)


def _collide(tmp_path_factory, protocol: str, drive) -> dict:
    """Two Pods of one node, ``protocol`` masqueraded to the one port, captured at both Pods
    and the node's NIC (sidecars written): ``drive(lab, a, b, server_ip)`` makes the traffic
    and returns what the clients said; the kernel's insert_failed count comes back too."""
    _lab_or_skip()
    from testbed.lab import Lab, masq  # noqa: PLC0415
    from testbed.lab.core import IDC_IP  # noqa: PLC0415

    out = tmp_path_factory.mktemp(f"{protocol}-collision")
    files = {name: out / f"{name}.pcap" for name in ("pod-a", "pod-b", "node")}
    with Lab(nodes=1, pods_per_node=2, idc=True) as lab:
        node, (a, b) = lab.nodes[0], lab.pods
        rules = masq.restore_text(lab.masq_config, random_fully=False).replace(
            "-j MASQUERADE", f"-p {protocol} -j MASQUERADE --to-ports {PORT}"
        )
        lab.run(node, ["iptables-restore", "--noflush"], input=rules, check=True)
        before = _insert_failed(lab, node)
        bpf = f"{protocol} port 9000"
        with lab.capture(a, str(files["pod-a"]), bpf), lab.capture(b, str(files["pod-b"]), bpf), \
                lab.capture(node, str(files["node"]), bpf):  # fmt: skip
            said = drive(lab, a, b, IDC_IP)
        dropped = _insert_failed(lab, node) - before
        _sidecar(files["pod-a"], "pod", node.name, a.name, a.ip)
        _sidecar(files["pod-b"], "pod", node.name, b.name, b.ip)
        _sidecar(files["node"], "node", node.name, node_ip=node.ip, cidr=node.pod_cidr)
        return {"files": files, "dropped": dropped, "a": a, "b": b, "node": node, **said}


@pytest.fixture(scope="module")
def collision(tmp_path_factory):
    def drive(lab, a, b, server):
        holder = lab.popen(a, [sys.executable, "-c", HOLD, server, str(PORT), "5", "4"],
                           stdout=-1, text=True)  # fmt: skip
        assert holder.stdout.readline().strip() == "connected"
        loser = lab.run(b, [sys.executable, "-c", HOLD, server, str(PORT), "2.5", "0"])
        holder.wait(timeout=10)
        return {"loser": loser.stdout.strip()}

    return _collide(tmp_path_factory, "tcp", drive)


def test_the_collision_names_both_pods(collision):
    assert collision["loser"] == "TimeoutError"  # web-a1 never connected
    names = [str(collision["files"][n]) for n in ("pod-a", "pod-b", "node")]
    table = analyze(names, reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == ["snat_port_collision"]
    row, a, b = table.iloc[0], collision["a"], collision["b"]
    assert (row["client_ip"], row["client_port"]) == (b.ip, PORT)
    assert row["other"] == f"{a.ip}:{PORT} (pod default/{a.name})"
    assert row["shared_end"] == f"{collision['node'].ip}:{PORT}"
    assert row["where"] == f"pod default/{b.name} -> {collision['node'].name} eth0"
    # Every SYN web-a1 sent was lost, as tshark counts them, and the kernel counted as many.
    syns = tshark_fields(collision["files"]["pod-b"], "frame.number",
                         display_filter="tcp.flags.syn == 1 && tcp.flags.ack == 0")  # fmt: skip
    assert row["lost"] == len(syns) >= 2
    assert collision["dropped"] == len(syns)


@pytest.fixture(scope="module")
def udp_collision(tmp_path_factory):
    """The same race for datagrams (a DNS query from a fixed port): only UDP masqueraded,
    to the one port."""

    def drive(lab, a, b, server):
        first = lab.run(a, [sys.executable, "-c", ASK, server, str(PORT), "1", "query-a"])
        second = lab.run(b, [sys.executable, "-c", ASK, server, str(PORT), "3", "query-b"])
        return {"first": first.stdout.strip(), "second": second.stdout.strip()}

    return _collide(tmp_path_factory, "udp", drive)


def test_a_dns_like_query_lost_to_the_same_race_names_both_pods(udp_collision):
    c = udp_collision
    assert (c["first"], c["second"]) == ("answered", "unanswered")
    names = [str(c["files"][n]) for n in ("pod-a", "pod-b", "node")]
    table = analyze(names, reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == ["snat_port_collision"]
    row = table.iloc[0]
    assert (row["protocol"], row["client_ip"], row["client_port"]) == ("udp", c["b"].ip, PORT)
    assert row["other"] == f"{c['a'].ip}:{PORT} (pod default/{c['a'].name})"
    assert row["shared_end"] == f"{c['node'].ip}:{PORT}"
    assert "3 of its 3 datagrams" in row["explanation"]
    sent = tshark_fields(c["files"]["pod-b"], "frame.number", display_filter="udp.dstport == 9000")
    assert row["lost"] == len(sent) == c["dropped"] == 3


@pytest.fixture(scope="module")
def stray(tmp_path_factory):
    _lab_or_skip()
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab import stray as stray_script  # noqa: PLC0415

    out = tmp_path_factory.mktemp("stray")
    pcap, nic = out / "client-pod.pcap", out / "client-node.pcap"
    with Lab(nodes=2, pods_per_node=1) as lab:
        client, backend = lab.pods
        service = lab.add_service("marker", [backend], port=9000)
        with lab.capture(client, str(pcap), "tcp"), lab.capture(client.node, str(nic), "tcp"):
            sender = lab.popen(backend, [sys.executable, stray_script.__file__, "9000", "lbtest",
                                         "10"], stdout=-1, text=True)  # fmt: skip
            assert sender.stdout.readline().strip() == "ready"
            got = lab.run(client, [sys.executable, "-c", THEN_RESET, service.cluster_ip, "9000"])
            sent = json.loads(sender.communicate(timeout=15)[0])
        return {"pcap": pcap, "nic": nic, "got": got.stdout.strip(), "sent": sent, "client": client,
                "backend": backend, "service": service}  # fmt: skip


def test_the_reset_after_an_invalid_packet_is_named(stray):
    assert stray["got"] == "ConnectionResetError"  # the Service connection died
    table = analyze([stray["pcap"]], reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == ["reset_after_invalid"]
    row = table.iloc[0]
    assert f"{row['client_ip']}:{row['client_port']}" == stray["sent"]["to"]
    assert (row["server_ip"], row["server_port"]) == (stray["service"].cluster_ip, 9000)
    assert row["other"] == stray["sent"]["from"] == f"{stray['backend'].ip}:9000"
    # tshark sees the client's reset going to the backend's own address.
    resets = tshark_fields(stray["pcap"], "ip.dst", "tcp.dstport",
                           display_filter=f"tcp.flags.reset == 1 && ip.src == {row['client_ip']}")  # fmt: skip
    assert [(ip, int(port)) for ip, port in resets] == [(stray["backend"].ip, 9000)]


def test_past_the_nat_the_node_nic_shows_it_too(stray):
    # On the client node's NIC the connection already has the backend's address.
    table = analyze([stray["nic"]], reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == ["reset_after_invalid"]
    row = table.iloc[0]
    assert f"{row['client_ip']}:{row['client_port']}" == stray["sent"]["to"]
    assert row["other"] == stray["sent"]["from"]
