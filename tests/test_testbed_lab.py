"""Tests of the lab itself: that its Pods, cgroups, servers and cleanup are what they claim."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys

import pytest

from testbed.lab import CLUSTER_CIDR, VPC_CIDR, Lab, sweep_stale, tshark
from testbed.lab.cgroups import hierarchies
from testbed.lab.core import IDC_CIDR


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_pods_have_the_promised_shape(lab):
    assert [n.name for n in lab.nodes] == ["node-a", "node-b"]
    assert len(lab.pods) == 2
    for pod in lab.pods:
        assert re.fullmatch(r"containerd://[0-9a-f]{64}", pod.container_id)
        assert pod.namespace == "default"
        assert pod.iface == "eth0"
        assert ipaddress.ip_address(pod.ip) in ipaddress.ip_network(pod.node.pod_cidr)
        # /proc/PID/ns/net is the Pod's namespace
        assert (
            os.stat(f"/proc/{pod.pid}/ns/net").st_ino == os.stat(f"/run/netns/{pod.netns}").st_ino
        )
        addrs = lab.run(pod, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
        assert f"inet {pod.ip}/" in addrs
    for node in lab.nodes:
        addrs = lab.run(node, ["ip", "-o", "-4", "addr", "show", "dev", node.nic]).stdout
        assert f"inet {node.ip}/" in addrs


def test_pod_cgroups_carry_the_container_id_in_both_naming_styles(lab):
    styles = {pod.cgroup_style for pod in lab.pods}
    assert styles == {"cgroupfs", "systemd"}
    used = hierarchies()
    assert used, "no writable cgroup hierarchy"
    for pod in lab.pods:
        with open(f"/proc/{pod.pid}/cgroup") as f:
            text = f.read()
        lines = [line for line in text.splitlines() if pod.container_hex in line]
        assert len(lines) == len(used), text
        uid = pod.uid if pod.cgroup_style == "cgroupfs" else pod.uid.replace("-", "_")
        for line in lines:
            assert f"pod{uid}" in line
            if pod.cgroup_style == "cgroupfs":
                assert line.endswith(f"/kubepods/besteffort/pod{pod.uid}/{pod.container_hex}")
            else:
                assert line.endswith(f"/cri-containerd-{pod.container_hex}.scope")
                assert "/kubepods.slice/kubepods-besteffort.slice/" in line


def test_scanning_proc_finds_the_pod_by_container_id(lab):
    pod = lab.pods[1]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup") as f:
                if pod.container_hex in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    assert found == [pod.pid]


def test_http_and_marker_servers_answer_across_nodes(lab):
    a, b = lab.pods
    r = lab.curl(a, f"http://{b.ip}:{b.http_port}/mytest")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ok {b.name} /mytest\n"
    r = lab.send_marker(a, b.ip, b.marker_port)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"ack 6\n"
    got = b.received()
    http = [e for e in got if e["kind"] == "http" and e["path"] == "/mytest"]
    markers = [e for e in got if e["kind"] == "marker" and e["data"] == "lbtest"]
    assert http and http[-1]["peer_ip"] == a.ip  # routed, RFC 1918: no SNAT
    assert markers and markers[-1]["peer_ip"] == a.ip


def test_closed_port_is_refused(lab):
    a, b = lab.pods
    r = lab.send_marker(a, b.ip, b.closed_port)
    assert r.returncode != 0
    assert b"ConnectionRefusedError" in r.stderr


def test_a_lab_removes_everything_it_made(make_lab):
    before = netns_list()
    lab = make_lab(nodes=1, pods_per_node=2, cgroup_style="systemd")
    made = netns_list() - before
    assert len(made) == 4 and all(n.startswith(lab.prefix) for n in made)  # vpc, node, 2 Pods
    dirs = [
        os.path.join(h.mountpoint, p.cgroup_path.lstrip("/"))
        for h in hierarchies()
        for p in lab.pods
    ]
    assert all(os.path.isdir(d) for d in dirs)
    pids = [p.pid for p in lab.pods]
    lab.close()
    assert not (netns_list() & made)
    assert not any(os.path.exists(d) for d in dirs)
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    lab.close()  # twice is fine


def test_two_labs_at_once_do_not_collide(make_lab):
    one = make_lab(nodes=1, pods_per_node=1)
    two = make_lab(nodes=1, pods_per_node=1)
    assert one.prefix != two.prefix
    assert one.pods[0].ip == two.pods[0].ip  # same addresses, separate namespaces
    for lab in (one, two):
        p = lab.pods[0]
        assert lab.curl(lab.nodes[0], f"http://{p.ip}/x").stdout == f"ok {p.name} /x\n"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Lab(overlay="geneve")
    with pytest.raises(ValueError):
        Lab(nodes=0)


# ---------------------------------------------------------------- what the wire shows (tshark)
def test_masquerade_to_the_idc_rewrites_source_to_the_node_ip(lab, tmp_path):
    pod, node, idc = lab.pods[0], lab.pods[0].node, lab.idc
    at_pod, at_node, at_idc = (tmp_path / f"{n}.pcap" for n in ("pod", "node", "idc"))
    with (
        lab.capture(pod, str(at_pod), "tcp port 80"),
        lab.capture(node, str(at_node), "tcp port 80"),
        lab.capture(idc, str(at_idc), "tcp port 80"),
    ):
        r = lab.curl(pod, f"http://{idc.ip}/snat-check")
    assert r.returncode == 0, r.stderr
    uri = 'http.request.uri == "/snat-check"'
    seen_pod = tshark.fields(str(at_pod), ["ip.src", "tcp.srcport"], uri)
    seen_node = tshark.fields(str(at_node), ["ip.src", "tcp.srcport"], uri)
    seen_idc = tshark.fields(str(at_idc), ["ip.src", "tcp.srcport"], uri)
    assert [r["ip.src"] for r in seen_pod] == [pod.ip]
    assert [r["ip.src"] for r in seen_node] == [node.ip]  # after POSTROUTING, on the NIC
    assert [r["ip.src"] for r in seen_idc] == [node.ip]
    assert idc.received("http")[-1]["peer_ip"] == node.ip


def test_non_masquerade_cidrs_keep_the_pod_ip(make_lab, tmp_path):
    lab = make_lab(
        nodes=1, pods_per_node=1, idc=True, masq_non_masquerade=[VPC_CIDR, CLUSTER_CIDR, IDC_CIDR]
    )
    pod, idc = lab.pods[0], lab.idc
    rules = lab.iptables_save(pod.node, "nat")
    assert f"-A IP-MASQ-AGENT -d {IDC_CIDR} -m comment" in rules
    at_idc = tmp_path / "idc.pcap"
    with lab.capture(idc, str(at_idc), "tcp port 80"):
        assert lab.curl(pod, f"http://{idc.ip}/kept").returncode == 0
    rows = tshark.fields(str(at_idc), ["ip.src"], 'http.request.uri == "/kept"')
    assert [r["ip.src"] for r in rows] == [pod.ip]


def test_ip_masq_agent_rules_have_the_upstream_shape(lab):
    rules = lab.iptables_save(lab.nodes[0], "nat").splitlines()
    assert (
        '-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all '
        'non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain" -m addrtype ! '
        "--dst-type LOCAL -j IP-MASQ-AGENT"
    ) in rules
    chain = [r for r in rules if r.startswith("-A IP-MASQ-AGENT")]
    assert [r.split(" -d ")[1].split()[0] for r in chain[:-1]] == [
        "169.254.0.0/16",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    ]
    assert all(r.endswith("-j RETURN") for r in chain[:-1])
    assert chain[-1].endswith("-j MASQUERADE --random-fully")
    assert "(must be last in chain)" in chain[-1]


def test_vxlan_overlay_encapsulates_on_udp_8472(make_lab, tmp_path):
    lab = make_lab(nodes=2, pods_per_node=1, overlay="vxlan")
    a, b = lab.pods
    nic = tmp_path / "node-a-eth0.pcap"
    with lab.capture(a.node, str(nic), "udp port 8472"):
        r = lab.curl(a, f"http://{b.ip}/overlay")
    assert r.returncode == 0, r.stderr
    rows = tshark.fields(
        str(nic),
        ["ip.src", "ip.dst", "udp.dstport", "vxlan.vni", "http.request.uri"],
        "http.request",
        decode_as=[tshark.VXLAN_DECODE],
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["ip.src"] == f"{a.node.ip},{a.ip}"  # outer (node IPs), then inner (Pod IPs)
    assert row["ip.dst"] == f"{b.node.ip},{b.ip}"
    assert row["udp.dstport"] == "8472" and row["vxlan.vni"] == "1"
    assert row["http.request.uri"] == "/overlay"
    # nothing unencapsulated between the Pods on the wire
    plain = tmp_path / "plain.pcap"
    with lab.capture(a.node, str(plain), f"host {b.ip}"):
        assert lab.curl(a, f"http://{b.ip}/x").returncode == 0
    assert tshark.count(str(plain), "tcp") == 0


def test_security_group_drop_leaves_syns_unanswered(lab, tmp_path):
    a, b = lab.pods
    at_node = tmp_path / "node-b.pcap"
    rule = lab.add_security_group_drop(b.node, dport=b.http_port)
    try:
        with lab.capture(b.node, str(at_node), f"tcp port {b.http_port}"):
            r = lab.curl(a, f"http://{b.ip}/dropped", timeout=1.5)
    finally:
        lab.remove_security_group_drop(rule)
    assert r.returncode == 28  # curl: operation timed out
    syns = tshark.count(str(at_node), "tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert syns >= 1
    assert tshark.count(str(at_node), "tcp.flags.syn == 1 && tcp.flags.ack == 1") == 0
    assert lab.curl(a, f"http://{b.ip}/after").returncode == 0  # rule gone


def test_closed_port_answers_with_rst(lab, tmp_path):
    a, b = lab.pods
    at_pod = tmp_path / "a.pcap"
    with lab.capture(a, str(at_pod), f"tcp port {b.closed_port}"):
        r = lab.send_marker(a, b.ip, b.closed_port)
    assert r.returncode == 1 and b"ConnectionRefusedError" in r.stderr
    rst = tshark.fields(str(at_pod), ["ip.src", "tcp.srcport"], "tcp.flags.reset == 1")
    assert rst and rst[0]["ip.src"] == b.ip and rst[0]["tcp.srcport"] == str(b.closed_port)


def test_marker_is_on_the_wire(lab, tmp_path):
    a, b = lab.pods
    at_b = tmp_path / "b.pcap"
    with lab.capture(b, str(at_b), f"tcp port {b.marker_port}"):
        assert lab.send_marker(a, b.ip, b.marker_port, text=b"lbtest\r\n").returncode == 0
    assert tshark.count(str(at_b), 'tcp contains "lbtest"') == 1


def test_service_dnat_rewrites_the_cluster_ip(make_lab, tmp_path):
    lab = make_lab(nodes=2, pods_per_node=1, idc=True)
    a, b = lab.pods
    svc = lab.add_service("web", [b], node_port=30080)
    assert svc.cluster_ip.startswith("10.96.")
    at_a, at_b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    with lab.capture(a, str(at_a), "tcp port 80"), lab.capture(b, str(at_b), "tcp port 80"):
        r = lab.curl(a, f"http://{svc.cluster_ip}/via-service")
        assert r.stdout == f"ok {b.name} /via-service\n"
    uri = 'http.request.uri == "/via-service"'
    assert tshark.fields(str(at_a), ["ip.dst"], uri) == [{"ip.dst": svc.cluster_ip}]
    assert tshark.fields(str(at_b), ["ip.src", "ip.dst"], uri) == [{"ip.src": a.ip, "ip.dst": b.ip}]
    # NodePort from outside the cluster: DNAT plus kube-proxy's masquerade (0x4000 mark)
    r = lab.curl(lab.idc, f"http://{a.node.ip}:30080/nodeport")
    assert r.stdout == f"ok {b.name} /nodeport\n"
    assert b.received("http")[-1]["peer_ip"] == a.node.ip
    rules = lab.iptables_save(a.node, "nat")
    assert "-j KUBE-SERVICES" in rules and f"--to-destination {b.ip}:80" in rules
    # hairpin: a Pod reaching itself through its own Service
    own = lab.add_service("self", [a])
    assert lab.curl(a, f"http://{own.cluster_ip}/hairpin").stdout == f"ok {a.name} /hairpin\n"


def test_any_and_pcapng_captures(lab, tmp_path):
    a, b = lab.pods
    sll2, ng = tmp_path / "any.pcap", tmp_path / "x.pcapng"
    with lab.capture(a, str(sll2), "tcp port 80", iface="any"):
        assert lab.curl(a, f"http://{b.ip}/any").returncode == 0
    with lab.capture(a, str(ng), "tcp port 80", tool="dumpcap"):
        assert lab.curl(a, f"http://{b.ip}/ng").returncode == 0
    assert tshark.capinfos(str(sll2))["File encapsulation"] == "linux-sll2"
    assert tshark.capinfos(str(ng))["File type"].endswith("pcapng")
    assert tshark.count(str(sll2), 'http.request.uri == "/any"') == 1
    assert tshark.count(str(ng), 'http.request.uri == "/ng"') == 1


# ---------------------------------------------------------------- cleanup when the owner dies
LAB_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from testbed.lab import Lab
lab = Lab(nodes=1, pods_per_node=1).start()
print(lab.prefix, flush=True)
time.sleep(60)
"""


def _start_lab_child():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(
        [sys.executable, "-c", LAB_CHILD.format(root=root)], stdout=subprocess.PIPE, text=True
    )
    prefix = proc.stdout.readline().strip()
    assert prefix.startswith("pcl"), prefix
    assert any(n.startswith(prefix) for n in netns_list())
    return proc, prefix


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_lab_cleans_up(sig):
    proc, prefix = _start_lab_child()
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert not any(n.startswith(prefix) for n in netns_list())


def test_killed_lab_is_swept_by_the_next_one():
    proc, prefix = _start_lab_child()
    proc.kill()
    proc.wait(timeout=20)
    assert any(n.startswith(prefix) for n in netns_list())  # SIGKILL: nothing could run
    assert prefix in sweep_stale()
    assert not any(n.startswith(prefix) for n in netns_list())
