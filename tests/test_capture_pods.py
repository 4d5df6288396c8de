"""Capture through Kubernetes, for real: the kubernetes client talks to the in-test API server,
whose pods/exec runs the helper's command on this machine (the lab's "node"), where the node
script nsenters the lab Pod's namespace by its containerd:// ID and runs tcpdump."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path

import dpkt
import pytest

from podcap import locate
from podcap.capture import CaptureSession, node_rules, overlay_filter, pods
from podcap.capture import plan as kubeplan
from podcap.errors import UsageError
from podcap.reach import pod as helper
from testbed import kube_api as K
from testbed.helpers import wait_for
from tests.kube_fixtures import shop_cluster

pytestmark = pytest.mark.timeout(120)


def node_script() -> str:
    return resources.files("podcap.capture").joinpath("node.sh").read_text()


def packets(path) -> list[bytes]:
    with open(path, "rb") as f:
        return [bytes(buf) for _, buf in dpkt.pcap.Reader(f)]


def connections_closed(lab, *pods) -> bool:
    """No TCP connection to or from port 80 in these Pods but listeners and TIME-WAITs."""
    argv = ["ss", "-Htan", "exclude", "listening", "exclude", "time-wait"]
    argv += ["( sport = :80 or dport = :80 )"]
    return not any(lab.run(pod, argv, check=True).stdout.strip() for pod in pods)


def by_direction(frames: list[bytes]) -> dict[bytes, list[bytes]]:
    """Frames grouped by source MAC address, each group in capture order."""
    groups: dict[bytes, list[bytes]] = {}
    for frame in frames:
        groups.setdefault(frame[6:12], []).append(frame)
    return groups


@pytest.fixture
def lab_cluster(kube_lab):
    cluster, server, lab = kube_lab
    return cluster, locate.connect(str(server.kubeconfig_path)), lab


def wait_ready(process, timeout=15):
    assert wait_for(lambda: "podcap-node: ready" in process.stderr_text(), timeout), (
        process.stderr_text()
    )


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_helper_capture_equals_a_direct_capture(lab_cluster, tmp_path, protocol):
    cluster, kube, lab = lab_cluster
    cluster.exec_protocols = (protocol,)
    target_pod, client_pod = lab.pods[0], lab.pods[1]
    plan = kubeplan.plan(
        kube,
        locate.TargetQuery([target_pod.name], namespace=target_pod.namespace),
        helper.HelperSpec(),
    )
    (target,) = plan.targets
    assert target.container_id == target_pod.container_id
    out = tmp_path / "helper.pcap"
    direct = tmp_path / "direct.pcap"
    with helper.helper_transports(kube, plan.spec, {target.node.name: [target.container_id]}) as t:
        argv = ["sh", "-c", node_script(), "podcap-node", "--container-id", target.container_id]
        process = t[target.node.name].start([*argv, "--", "tcp port 80"])
        with lab.capture(target_pod, str(direct), "tcp port 80"):
            wait_ready(process)
            for _ in range(3):
                assert lab.curl(client_pod, f"http://{target_pod.ip}/mytest").returncode == 0
            # The last packet of a close (an ACK) may leave after curl exits; once no socket is
            # left closing at either end, every packet has passed eth0 and both captures have
            # it queued. From there on the node script's stop drains tcpdump's ring.
            assert wait_for(lambda: connections_closed(lab, target_pod, client_pod), 10)
            process.stop()
            with out.open("wb") as f:
                while chunk := process.stdout.read(65536):
                    f.write(chunk)
        assert process.wait(20) == 0, process.stderr_text()
    process.check_complete()
    assert process.bytes_received == process.bytes_written() == out.stat().st_size
    got, want = packets(out), packets(direct)
    assert len(got) >= 3 * 6
    # Every packet, byte for byte, in the same order in each direction. Two packet sockets on
    # one interface may interleave the two directions differently: a packet going out on one
    # CPU and one coming in on the other are handed to each socket in turn, in either order.
    assert by_direction(got) == by_direction(want)
    assert any(b"GET /mytest" in p for p in got)
    assert cluster.helper_pods() == []


def test_node_rules_and_node_nic_capture_run_in_the_node_namespace(lab_cluster, tmp_path):
    cluster, kube, lab = lab_cluster
    target_pod, client_pod = lab.pods[0], lab.pods[1]
    node = target_pod.node
    # On a real node the helper enters PID 1's namespaces (hostPID); here "the node" is a lab
    # namespace, so a process living in it stands in for PID 1.
    stand_in = lab.popen(node, ["sleep", "120"])
    plan = kubeplan.plan(
        kube,
        locate.TargetQuery([target_pod.name], namespace=target_pod.namespace),
        helper.HelperSpec(),
    )
    (target,) = plan.targets
    with helper.helper_transports(kube, plan.spec, {node.name: []}) as transports:
        transport = transports[node.name]
        rules = node_rules.node_rules(transport, node_pid=str(stand_in.pid))
        assert (
            "-A POSTROUTING" in rules["iptables-save"] and "IP-MASQ-AGENT" in rules["iptables-save"]
        )
        # nft is installed (scripts/install-system-deps.sh): the same rules, as nftables holds
        # them (iptables-nft keeps them in its "ip nat" table).
        assert "table ip nat" in rules["nft"] and "IP-MASQ-AGENT" in rules["nft"]
        spec = pods.node_nic_spec(target.pod_ips, node.nic, 60, node_pid=str(stand_in.pid))
        session = CaptureSession(transport, spec, str(tmp_path / "node.pcap"))
        session.start()
        try:
            assert session.wait_ready(15).ready
            assert lab.curl(client_pod, f"http://{target_pod.ip}/mytest").returncode == 0
        finally:
            session.stop()
        result = session.run()
    assert result.complete and result.pid == stand_in.pid, result.messages
    seen = packets(tmp_path / "node.pcap")
    assert any(b"GET /mytest" in p for p in seen)
    assert cluster.helper_pods() == []


def test_selector_across_two_nodes_captures_each_pod_in_parallel(lab_cluster, tmp_path):
    cluster, kube, lab = lab_cluster
    query = locate.TargetQuery(selector="app=web", namespace=lab.pods[0].namespace)
    plan = kubeplan.plan(kube, query, helper.HelperSpec())
    assert sorted(plan.manifests) == sorted(n.name for n in lab.nodes)
    options = pods.SessionOptions(
        output_dir=tmp_path / "out",
        bpf_filter="tcp port 80",
        duration=6,
        merge_to=tmp_path / "all.pcapng",
    )
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(pods.run_session(kube, plan, options)))
    runner.start()
    assert wait_for(lambda: len(cluster.execs) >= 2, 15)
    time.sleep(2)
    a, b = lab.pods
    assert lab.curl(a, f"http://{b.ip}/to-b").returncode == 0
    assert lab.curl(b, f"http://{a.ip}/to-a").returncode == 0
    runner.join(40)
    assert not runner.is_alive() and len(outcome) == 1
    by_pod = {c.target.name: c for c in outcome[0].captures}
    for pod, path in ((a, "/to-a"), (b, "/to-b")):
        result = by_pod[pod.name].result
        assert result.output == str(tmp_path / "out" / f"{pod.namespace}_{pod.name}.pcap")
        assert result.complete and result.ended_by == "duration"
        assert any(f"GET {path}".encode() in p for p in packets(result.output))
        sidecar = json.loads(open(result.sidecar).read())
        facts = sidecar["cluster"]
        assert facts["pod_ip"] == pod.ip and facts["node_ip"] == pod.node.ip
        assert facts["pod_cidrs"] == [pod.node.pod_cidr]
        assert facts["pod"]["container_id"] == pod.container_id
        masq = facts["ip_masq_agent"]
        assert masq["configmap"] == "kube-system/ip-masq-agent"
        assert masq["config"]["nonMasqueradeCIDRs"] == lab.masq_config["nonMasqueradeCIDRs"]
    assert outcome[0].merged == tmp_path / "all.pcapng"
    names = subprocess.run(
        [
            "tshark",
            "-r",
            str(tmp_path / "all.pcapng"),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(names) == {f"{p.namespace}/{p.name}" for p in lab.pods}
    assert cluster.helper_pods() == []


def test_run_session_refuses_one_output_for_several_pods(make_kube_api, tmp_path):
    # The library's own check (the CLI calls it too): API users get the same UsageError.
    server = make_kube_api(shop_cluster())
    kube = locate.connect(str(server.kubeconfig_path))
    query = locate.TargetQuery(names=[], namespace="shop", selector="app=web")
    the_plan = kubeplan.plan(kube, query, helper.HelperSpec())
    assert len(the_plan.targets) == 2
    out = tmp_path / "out"
    options = pods.SessionOptions(output_dir=out, output_file=out / "x.pcap")
    with pytest.raises(UsageError, match=r"x\.pcap takes one Pod, and 2 match"):
        pods.run_session(kube, the_plan, options)
    assert not out.exists()


def test_node_rules_are_written_one_file_each_with_a_file_safe_node_name(tmp_path):
    rules = {"iptables-save": "*nat\nCOMMIT\n", "ipvsadm": "IP Virtual Server\n"}
    saved = node_rules.write_node_rules(rules, tmp_path / "rules", "root@node a:22")
    assert {name: path.name for name, path in saved.items()} == {
        "iptables-save": "root_node_a_22.iptables-save.txt",
        "ipvsadm": "root_node_a_22.ipvsadm.txt",
    }
    assert {name: path.read_text() for name, path in saved.items()} == rules
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(UsageError, match="a-file/rules: cannot create the directory"):
        node_rules.write_node_rules(rules, blocked / "rules", "node-a")


POD, PEER, OTHER = "10.244.0.10", "10.244.1.20", "10.244.1.30"
POD6, PEER6 = "fd00::10", "fd00::20"
NODE_A, NODE_B = "172.20.0.11", "172.20.0.12"


def _node_nic_frames() -> dict[int, bytes]:
    """What a node NIC sees, by a label carried as the inner TCP source port: the Pod's
    packets (IPv4 and IPv6) plain and inside each overlay (odd labels), and others' (even)."""
    from tests.decode_fixtures import ETH_IPV6, ethernet, geneve, ipv4, ipv6, tcp, udp, vxlan

    def inner(src, dst, label):
        return ipv4(src, dst, 6, tcp(label, 80))

    def inner6(src, dst, label):
        return ipv6(src, dst, 6, tcp(label, 80))

    def outer_udp(port, payload):
        return ethernet(ipv4(NODE_A, NODE_B, 17, udp(40000, port, payload)))

    return {
        1: ethernet(inner(POD, "198.51.100.10", 1)),
        2: ethernet(inner(NODE_A, "198.51.100.10", 2)),
        3: outer_udp(8472, vxlan(ethernet(inner(POD, PEER, 3)))),
        5: outer_udp(4789, vxlan(ethernet(inner(PEER, POD, 5)))),
        4: outer_udp(8472, vxlan(ethernet(inner(PEER, OTHER, 4)))),
        7: outer_udp(6081, geneve(ethernet(inner(POD, PEER, 7)), options=b"\x01" * 8)),
        9: outer_udp(6081, geneve(inner(PEER, POD, 9), protocol=0x0800)),
        6: outer_udp(6081, geneve(ethernet(inner(PEER, OTHER, 6)), options=b"\x01" * 4)),
        11: ethernet(ipv4(NODE_A, NODE_B, 4, inner(POD, PEER, 11))),
        8: ethernet(ipv4(NODE_A, NODE_B, 4, inner(OTHER, PEER, 8))),
        10: outer_udp(53, b"\x00" * 12),
        13: outer_udp(8472, vxlan(ethernet(inner6(POD6, PEER6, 13), ETH_IPV6))),
        15: outer_udp(6081, geneve(inner6(PEER6, POD6, 15), protocol=0x86DD, options=b"\x01" * 4)),
        12: outer_udp(4789, vxlan(ethernet(inner6(PEER6, "fd00::30", 12), ETH_IPV6))),
        17: ethernet(ipv4(NODE_A, NODE_B, 41, inner6(POD6, PEER6, 17))),
        14: ethernet(ipv4(NODE_A, NODE_B, 41, inner6("fd00::31", PEER6, 14))),
    }


def test_the_node_nic_filter_finds_the_pod_inside_every_overlay(tmp_path):
    from podcap.decode import read_capture
    from tests.decode_fixtures import write_pcap

    frames = _node_nic_frames()
    source = write_pcap(tmp_path / "nic.pcap", 1, list(frames.values()))
    kept = tmp_path / "kept.pcap"
    # The real tcpdump compiles the filter and runs it over the frames.
    bpf = overlay_filter.pod_traffic_filter([POD, POD6])
    subprocess.run(["tcpdump", "-r", str(source), "-w", str(kept), bpf], check=True,
                   capture_output=True)  # fmt: skip
    packets = read_capture(kept).packets
    labels = sorted(packets["sport"].where(packets["ip_proto"] == 6, 0).astype(int))
    assert labels == [label for label in sorted(frames) if label % 2]


def test_the_node_nic_filter_keeps_a_real_vxlan_capture_of_the_pod(tmp_path):
    from podcap.decode import read_capture

    # 05 was captured on a lab node's eth0: every packet is Pod to Pod inside VXLAN on 8472.
    sample = Path(__file__).resolve().parent.parent / "sample_pcaps" / "05-vxlan-node-nic.pcap"
    kept = tmp_path / "kept.pcap"
    for ip, expected in {"10.244.0.10": 22, "10.244.1.10": 22, "10.244.9.9": 0}.items():
        bpf = overlay_filter.pod_traffic_filter([ip])
        subprocess.run(["tcpdump", "-r", str(sample), "-w", str(kept), bpf], check=True,
                       capture_output=True)  # fmt: skip
        assert len(read_capture(kept).packets) == expected, ip
