#!/usr/bin/env python3
"""Make the captures in sample_pcaps/ for real, in the network-namespace lab (needs root).

    sudo python3 scripts/make_sample_pcaps.py            # all scenarios, into sample_pcaps/
    sudo python3 scripts/make_sample_pcaps.py --only 01 05 --out /tmp/pcaps

Each capture is made with tcpdump (dumpcap for the pcapng one) inside the lab namespace named in
its sidecar ``NAME.json``, which also holds the scenario and the ground truth taken from the
lab itself (what was sent, what the servers logged, what the rules do), not from the capture:
tests/test_sample_pcaps.py checks each sidecar against what tshark sees in its file.
Re-runnable: a run replaces the files of the scenarios it makes and leaves the rest alone.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.lab import CLUSTER_CIDR, VPC_CIDR, Lab  # noqa: E402
from tests.lab.core import IDC_CIDR, VXLAN_PORT, VXLAN_VNI  # noqa: E402

SCENARIOS: dict[str, Callable] = {}


def scenario(number: str):
    def register(fn):
        SCENARIOS[number] = fn
        return fn

    return register


# ---------------------------------------------------------------------------- sidecar parts
def pod_info(pod) -> dict:
    return {
        "name": pod.name,
        "namespace": pod.namespace,
        "uid": pod.uid,
        "ip": pod.ip,
        "node": pod.node.name,
        "node_ip": pod.node.ip,
        "container_id": pod.container_id,
        "cgroup_path": pod.cgroup_path,
    }


def topology(lab: Lab) -> dict:
    return {
        "overlay": lab.overlay,
        "vpc_cidr": VPC_CIDR,
        "cluster_cidr": CLUSTER_CIDR,
        "nodes": [
            {"name": n.name, "ip": n.ip, "pod_cidr": n.pod_cidr, "nic": n.nic} for n in lab.nodes
        ],
        "pods": [pod_info(p) for p in lab.pods],
        "idc": {"ip": lab.idc.ip, "cidr": IDC_CIDR} if lab.idc else None,
        "ip_masq_agent": lab.masq_config,
    }


def where_pod(pod, iface: str | None = None) -> dict:
    return {
        "kind": "pod",
        "pod": pod.name,
        "namespace": pod.namespace,
        "node": pod.node.name,
        "interface": iface or pod.iface,
        "description": f"inside Pod {pod.namespace}/{pod.name}'s network namespace",
    }


def where_node(node, iface: str | None = None) -> dict:
    return {
        "kind": "node",
        "node": node.name,
        "interface": iface or node.nic,
        "description": f"on node {node.name}'s VPC-facing NIC"
        if (iface or node.nic) == node.nic
        else f"on node {node.name}, interface {iface}",
    }


def where_idc(lab: Lab) -> dict:
    return {
        "kind": "peer",
        "host": "idc",
        "interface": lab.idc.nic,
        "description": "at the IDC host outside the VPC (the peer)",
    }


def empty_truth() -> dict:
    """Every sidecar's ground_truth has these keys; scenarios fill in what applies."""
    return {
        "http_requests": [],  # {method, uri, client_ip, server_ip, server_port, status}
        "markers": [],  # strings sent over TCP (the guide's lbtest)
        "client_ip": None,  # the Pod/host that started the traffic
        "server_ip": None,
        "src_ip_seen": None,  # source address of client->server packets at this capture point
        "snat_applied": False,
        "snat": None,  # {pod_ip, pod_port, wire_ip, wire_port, by}
        "dropped": None,  # {what, by, syns_unanswered: true}
        "refused": None,  # {server_ip, port}
        "encapsulation": None,  # {type, udp_port, vni, outer_src, outer_dst}
    }


class Run:
    """Writes captures and sidecars into a staging dir; moved into place at the end."""

    def __init__(self, staging: str) -> None:
        self.staging = staging
        self.written: list[str] = []

    def path(self, name: str) -> str:
        return os.path.join(self.staging, name)

    def sidecar(self, name: str, lab: Lab, title: str, where: dict, capture, truth: dict, **extra):
        fmt = "pcapng" if name.endswith(".pcapng") else "pcap"
        linktype = "LINUX_SLL2" if capture.iface == "any" else "EN10MB"
        doc = {
            "file": name,
            "scenario": title,
            "format": fmt,
            "linktype": linktype,
            "captured_at": where,
            "capture": {
                "tool": capture.tool,
                "netns_role": where["kind"],
                "interface": capture.iface,
                "filter": capture.bpf,
                "command": " ".join(capture.argv()[4:]).replace(self.staging + "/", ""),
                "packets": capture.packets,
            },
            "topology": topology(lab),
            "ground_truth": truth,
            **extra,
        }
        stem = name.rsplit(".", 1)[0]
        with open(self.path(stem + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        self.written += [name, stem + ".json"]


def http_request(server, uri: str, client_ip: str, method: str = "GET") -> dict:
    return {
        "method": method,
        "uri": uri,
        "client_ip": client_ip,
        "server_ip": server.ip,
        "server_port": server.http_port,
        "status": 200,
    }


def curl_ok(lab: Lab, client, url: str) -> tuple[str, int]:
    """curl that must work; returns the client's (local IP, local port) as curl saw them."""
    r = lab.curl(client, url, "-o", "/dev/null", "-w", "%{http_code} %{local_ip} %{local_port}")
    code, ip, port = r.stdout.split()
    if r.returncode != 0 or code != "200":
        raise SystemExit(f"curl {url} from {client.name} failed: {r.stderr}")
    return ip, int(port)


def marker_ok(lab: Lab, client, server, text: bytes) -> None:
    r = lab.send_marker(client, server.ip, server.marker_port, text=text)
    if r.returncode != 0:
        raise SystemExit(f"marker to {server.ip} failed: {r.stderr!r}")


# ---------------------------------------------------------------------------- scenarios
@scenario("01")
def http_mytest(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "01-http-mytest.pcap"
    uris = ["/mytest", "/healthz", "/api/v1/items?id=7"]
    with lab.capture(b, run.path(name), f"tcp port {b.http_port}") as cap:
        for uri in uris:
            curl_ok(lab, a, f"http://{b.ip}{uri}")
    truth = empty_truth() | {
        "http_requests": [http_request(b, u, a.ip) for u in uris],
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
    }
    run.sidecar(
        name,
        lab,
        f"curl http://<pod>/mytest (and two other paths) from Pod {a.name} on {a.node.name} to "
        f"Pod {b.name} on {b.node.name}, routed; captured in the destination Pod",
        where_pod(b),
        cap,
        truth,
        guide_filter='http.request.uri == "/mytest"',
    )


@scenario("02")
def lbtest_marker(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "02-lbtest-marker.pcap"
    with lab.capture(b, run.path(name), f"tcp port {b.marker_port}") as cap:
        marker_ok(lab, a, b, b"hello\r\n")
        marker_ok(lab, a, b, b"lbtest\r\n")
        marker_ok(lab, a, b, b"bye\r\n")
    truth = empty_truth() | {
        "markers": ["lbtest"],
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
        "tcp_connections": 3,
        "payloads": ["hello\r\n", "lbtest\r\n", "bye\r\n"],
        "server_port": b.marker_port,
    }
    run.sidecar(
        name,
        lab,
        f"three TCP connections from Pod {a.name} to Pod {b.name}:{b.marker_port}, one of them "
        "carrying the guide's telnet marker 'lbtest'; captured in the destination Pod",
        where_pod(b),
        cap,
        truth,
        guide_filter='tcp contains "lbtest"',
    )


@scenario("03")
def snat_to_idc(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a = lab.pods[0]
    idc = lab.idc
    name = "03-snat-to-idc.pcap"
    with lab.capture(idc, run.path(name), f"tcp port {idc.http_port}") as cap:
        _, pod_port = curl_ok(lab, a, f"http://{idc.ip}/from-pod")
    seen = idc.received("http")[-1]
    truth = empty_truth() | {
        "http_requests": [http_request(idc, "/from-pod", a.ip)],
        "client_ip": a.ip,
        "server_ip": idc.ip,
        "src_ip_seen": a.node.ip,
        "snat_applied": True,
        "snat": {
            "pod_ip": a.ip,
            "pod_port": pod_port,
            "wire_ip": seen["peer_ip"],
            "wire_port": seen["peer_port"],
            "by": "ip-masq-agent MASQUERADE --random-fully on " + a.node.name,
        },
    }
    run.sidecar(
        name,
        lab,
        f"Pod {a.name} -> IDC host {idc.ip} (outside nonMasqueradeCIDRs): masqueraded to node "
        f"{a.node.name}'s IP with the source port rewritten; captured at the IDC host",
        where_idc(lab),
        cap,
        truth,
    )


@scenario("04")
def nonmasq_preserved(run: Run, labs: dict) -> None:
    lab = labs["nonmasq"]
    a = lab.pods[0]
    idc = lab.idc
    name = "04-nonmasq-preserved.pcap"
    with lab.capture(idc, run.path(name), f"tcp port {idc.http_port}") as cap:
        _, pod_port = curl_ok(lab, a, f"http://{idc.ip}/keep-pod-ip")
    seen = idc.received("http")[-1]
    assert seen["peer_ip"] == a.ip and seen["peer_port"] == pod_port, seen
    truth = empty_truth() | {
        "http_requests": [http_request(idc, "/keep-pod-ip", a.ip)],
        "client_ip": a.ip,
        "server_ip": idc.ip,
        "src_ip_seen": a.ip,
        "snat_applied": False,
        "non_masquerade_cidr": IDC_CIDR,
    }
    run.sidecar(
        name,
        lab,
        f"Pod {a.name} -> IDC host {idc.ip} with {IDC_CIDR} in ip-masq-agent's "
        "nonMasqueradeCIDRs: the Pod IP arrives unchanged; captured at the IDC host",
        where_idc(lab),
        cap,
        truth,
    )


@scenario("05")
def vxlan_node_nic(run: Run, labs: dict) -> None:
    lab = labs["vxlan"]
    a, b = lab.pods
    name = "05-vxlan-node-nic.pcap"
    with lab.capture(a.node, run.path(name), f"udp port {VXLAN_PORT}") as cap:
        curl_ok(lab, a, f"http://{b.ip}/across-nodes")
        marker_ok(lab, a, b, b"lbtest\r\n")
    truth = empty_truth() | {
        "http_requests": [http_request(b, "/across-nodes", a.ip)],
        "markers": ["lbtest"],
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
        "encapsulation": {
            "type": "vxlan",
            "udp_port": VXLAN_PORT,
            "vni": VXLAN_VNI,
            "outer_src": a.node.ip,
            "outer_dst": b.node.ip,
            "decode_as": "udp.port==8472,vxlan",
        },
    }
    run.sidecar(
        name,
        lab,
        f"Pod {a.name} -> Pod {b.name} across nodes through a flannel-like VXLAN overlay "
        "(flannel.1, VNI 1, UDP 8472); captured on the source node's NIC, so every packet is "
        "encapsulated between the node IPs",
        where_node(a.node),
        cap,
        truth,
    )


@scenario("06")
def syn_dropped(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "06-syn-dropped.pcap"
    rule = lab.add_security_group_drop(b.node, dport=b.http_port)
    try:
        with lab.capture(a, run.path(name), f"tcp port {b.http_port}") as cap:
            r = lab.curl(a, f"http://{b.ip}/blocked", timeout=3.5)
    finally:
        lab.remove_security_group_drop(rule)
    if r.returncode != 28:
        raise SystemExit(f"expected a timeout through the security group, got {r.returncode}")
    truth = empty_truth() | {
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
        "dropped": {
            "what": f"tcp to {b.ip}:{b.http_port}",
            "by": f"security group on {b.node.name} (iptables -j DROP on {b.node.nic})",
            "syns_unanswered": True,
            "client_error": "curl: (28) timed out",
        },
    }
    run.sidecar(
        name,
        lab,
        f"Pod {a.name} -> Pod {b.name}:{b.http_port} while a security group on {b.node.name} "
        "drops it: the SYN and its retransmissions go unanswered; captured in the client Pod",
        where_pod(a),
        cap,
        truth,
    )


@scenario("07")
def conn_refused(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "07-conn-refused.pcap"
    with lab.capture(a, run.path(name), f"tcp port {b.closed_port}") as cap:
        r = lab.send_marker(a, b.ip, b.closed_port)
    if r.returncode == 0:
        raise SystemExit("the closed port accepted a connection")
    truth = empty_truth() | {
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
        "refused": {"server_ip": b.ip, "port": b.closed_port},
    }
    run.sidecar(
        name,
        lab,
        f"Pod {a.name} -> Pod {b.name}:{b.closed_port}, where nothing listens: the SYN is "
        "answered with RST; captured in the client Pod",
        where_pod(a),
        cap,
        truth,
    )


@scenario("08")
def any_sll2(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "08-any-sll2.pcap"
    with lab.capture(a.node, run.path(name), f"tcp port {b.http_port}", iface="any") as cap:
        curl_ok(lab, a, f"http://{b.ip}/any-interface")
    truth = empty_truth() | {
        "http_requests": [http_request(b, "/any-interface", a.ip)],
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
        "copies_per_packet": 3,
        "interfaces": [a.host_veth, "cni0", a.node.nic],
    }
    run.sidecar(
        name,
        lab,
        f"tcpdump -i any on node {a.node.name} while Pod {a.name} fetches from Pod {b.name}: "
        "Linux cooked capture v2 (SLL2), each packet seen on the Pod's veth, cni0 and eth0. "
        "Interface indexes in the file are those of the node's namespace.",
        where_node(a.node, "any"),
        cap,
        truth,
    )


@scenario("09")
def pcapng(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a, b = lab.pods
    name = "09-pcapng-dumpcap.pcapng"
    bpf = f"tcp port {b.http_port} or tcp port {b.marker_port}"
    with lab.capture(b, run.path(name), bpf, tool="dumpcap") as cap:
        curl_ok(lab, a, f"http://{b.ip}/pcapng")
        marker_ok(lab, a, b, b"lbtest\r\n")
    truth = empty_truth() | {
        "http_requests": [http_request(b, "/pcapng", a.ip)],
        "markers": ["lbtest"],
        "client_ip": a.ip,
        "server_ip": b.ip,
        "src_ip_seen": a.ip,
    }
    run.sidecar(
        name,
        lab,
        f"dumpcap (pcapng) in Pod {b.name} while Pod {a.name} sends an HTTP request and the "
        "lbtest marker",
        where_pod(b),
        cap,
        truth,
    )


@scenario("10")
def snat_multipoint(run: Run, labs: dict) -> None:
    lab = labs["routed"]
    a = lab.pods[0]
    idc = lab.idc
    names = {
        "pod": "10-snat-pod.pcap",
        "node": "10-snat-node.pcap",
        "peer": "10-snat-peer.pcap",
    }
    bpf = f"tcp port {idc.http_port} or tcp port {idc.marker_port}"
    with (
        lab.capture(a, run.path(names["pod"]), bpf) as cap_pod,
        lab.capture(a.node, run.path(names["node"]), bpf) as cap_node,
        lab.capture(idc, run.path(names["peer"]), bpf) as cap_peer,
    ):
        before = len(idc.received())
        _, port1 = curl_ok(lab, a, f"http://{idc.ip}/snat/1")
        _, port2 = curl_ok(lab, a, f"http://{idc.ip}/snat/2")
        marker_ok(lab, a, idc, b"lbtest\r\n")
    got = idc.received()[before:]
    http = [e for e in got if e["kind"] == "http"]
    conns = [
        {
            "uri": "/snat/1",
            "pod_ip": a.ip,
            "pod_port": port1,
            "wire_ip": http[0]["peer_ip"],
            "wire_port": http[0]["peer_port"],
            "server": f"{idc.ip}:{idc.http_port}",
        },
        {
            "uri": "/snat/2",
            "pod_ip": a.ip,
            "pod_port": port2,
            "wire_ip": http[1]["peer_ip"],
            "wire_port": http[1]["peer_port"],
            "server": f"{idc.ip}:{idc.http_port}",
        },
    ]
    marker = next(e for e in got if e["kind"] == "marker")
    title = (
        f"one set, three capture points: Pod {a.name} -> IDC host {idc.ip} (two HTTP requests "
        f"and the lbtest marker), masqueraded by ip-masq-agent on {a.node.name}; the same "
        "connections captured in the Pod (Pod IP), on the node's NIC and at the peer (node IP, "
        "rewritten ports)"
    )
    for point, cap, where, src in (
        ("pod", cap_pod, where_pod(a), a.ip),
        ("node", cap_node, where_node(a.node), a.node.ip),
        ("peer", cap_peer, where_idc(lab), a.node.ip),
    ):
        truth = empty_truth() | {
            "http_requests": [http_request(idc, c["uri"], a.ip) for c in conns],
            "markers": ["lbtest"],
            "client_ip": a.ip,
            "server_ip": idc.ip,
            "src_ip_seen": src,
            "snat_applied": True,
            "snat": {
                "pod_ip": a.ip,
                "wire_ip": a.node.ip,
                "by": "ip-masq-agent MASQUERADE --random-fully on " + a.node.name,
                "connections": conns,
                "marker_wire_port": marker["peer_port"],
            },
        }
        run.sidecar(
            names[point],
            lab,
            title,
            where,
            cap,
            truth,
            multipoint_set={"set": "10-snat", "point": point, "files": sorted(names.values())},
        )


# ---------------------------------------------------------------------------- driver
def build_labs(wanted: set[str]) -> dict:
    labs: dict[str, Lab] = {}
    needs = {
        "routed": {"01", "02", "03", "06", "07", "08", "09", "10"},
        "nonmasq": {"04"},
        "vxlan": {"05"},
    }
    if wanted & needs["routed"]:
        labs["routed"] = Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True).start()
    if wanted & needs["nonmasq"]:
        labs["nonmasq"] = Lab(
            nodes=1,
            pods_per_node=1,
            idc=True,
            masq_non_masquerade=[VPC_CIDR, CLUSTER_CIDR, IDC_CIDR],
        ).start()
    if wanted & needs["vxlan"]:
        labs["vxlan"] = Lab(nodes=2, pods_per_node=1, overlay="vxlan").start()
    return labs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "sample_pcaps"))
    parser.add_argument("--only", nargs="*", help="scenario numbers (default: all)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("make_sample_pcaps: needs root (network namespaces)", file=sys.stderr)
        return 2
    wanted = set(args.only or SCENARIOS)
    unknown = wanted - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)} (have {sorted(SCENARIOS)})")
    os.makedirs(args.out, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="podcap-samples-")
    labs: dict = {}
    try:
        labs = build_labs(wanted)
        run = Run(staging)
        for number in sorted(wanted):
            started = time.monotonic()
            SCENARIOS[number](run, labs)
            print(f"{number}: {time.monotonic() - started:.1f}s")
        for number in sorted(wanted):
            for old in glob.glob(os.path.join(args.out, f"{number}-*")):
                if old.endswith((".pcap", ".pcapng", ".json")):
                    os.unlink(old)
        for name in run.written:
            shutil.move(run.path(name), os.path.join(args.out, name))
            print(os.path.join(args.out, name))
    finally:
        for lab in labs.values():
            lab.close()
        shutil.rmtree(staging, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
