#!/usr/bin/env python3
"""Make the captures in sample_pcaps/ for real, in the network-namespace lab (needs root).

    sudo python3 -m scripts.make_sample_pcaps            # all scenarios, into sample_pcaps/
    sudo python3 -m scripts.make_sample_pcaps --only 01 05 --out /tmp/pcaps

Each capture is made with tcpdump (dumpcap for the pcapng one) inside the lab namespace named in
its sidecar ``NAME.json`` (the same document ``podcap capture`` writes, see podcap/sidecar.py).
Beside it, ``NAME.truth.json`` holds the scenario, the lab's topology and the ground truth taken
from the lab itself (what was sent, what the servers logged, what the rules do), not from the
capture: tests/test_sample_pcaps.py checks it against what tshark sees in the file.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podcap.sidecar import sidecar_document, write_sidecar
from testbed.lab import CLUSTER_CIDR, VPC_CIDR, Lab
from testbed.lab.core import IDC_CIDR, VXLAN_PORT, VXLAN_VNI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# number -> (which lab it runs in, the function that makes its captures)
SCENARIOS: dict[str, tuple[str, Callable]] = {}


def scenario(number: str, lab: str):
    """Register a scenario; ``lab`` names the lab (see LAB_SHAPES) it needs, so only those start."""

    def register(fn):
        SCENARIOS[number] = (lab, fn)
        return fn

    return register


# pcap link-layer types of the captures made here: tcpdump -i any writes Linux cooked v2.
LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2 = 1, 276


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


# The sidecar's ``point``: where a capture ran (see podcap/sidecar.py).
def where_pod(pod) -> dict:
    return {
        "kind": "pod",
        "target": f"{pod.namespace}/{pod.name}",
        "pod": pod.name,
        "namespace": pod.namespace,
        "node": pod.node.name,
        "interface": pod.iface,
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
        "target": "idc",
        "interface": lab.idc.nic,
        "description": "at the IDC host outside the VPC (the peer)",
    }


def empty_truth() -> dict:
    """Every truth file's ground_truth has these keys; scenarios fill in what applies."""
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
        "dns_lookups": [],  # {name, verdict, queries, names_tried, nxdomain, lost}
        "mtu_blackhole": None,  # {sender, lost_size, path_mtu, icmp_dropped}
        "conntrack": None,  # {verdict, client, other, shared_end, syns_lost}
    }


def conversation(client, server, **facts) -> dict:
    """Ground truth of ``client`` talking to ``server``; src_ip_seen is per capture point (Take)."""
    return empty_truth() | {"client_ip": client.ip, "server_ip": server.ip} | facts


def http_request(server, uri: str, client_ip: str, method: str = "GET") -> dict:
    return {
        "method": method,
        "uri": uri,
        "client_ip": client_ip,
        "server_ip": server.ip,
        "server_port": server.http_port,
        "status": 200,
    }


def masqueraded_by(node) -> str:
    return "ip-masq-agent MASQUERADE --random-fully on " + node.name


# ---------------------------------------------------------------------------- capture scaffold
@dataclass(frozen=True)
class Point:
    """One capture of a scenario: the file, whose network namespace it runs in, what it keeps."""

    file: str
    host: Any  # the lab's Pod, node or IDC host; the capture runs in its namespace
    where: dict  # the sidecar's point: that place (where_pod/where_node/where_idc)
    bpf: str
    # The client's address as its packets pass here: differs from client_ip once SNAT happened
    # upstream of this point; None means no SNAT (the client's own address).
    src_ip_seen: str | None = None
    iface: str | None = None  # None: the lab's default (a Pod's eth0, a node's/host's NIC)
    tool: str = "tcpdump"


def in_pod(file: str, pod, bpf: str, tool: str = "tcpdump") -> Point:
    return Point(file, pod, where_pod(pod), bpf, tool=tool)


def on_node(file: str, node, bpf: str, src_ip_seen: str | None = None, iface=None) -> Point:
    return Point(file, node, where_node(node, iface), bpf, src_ip_seen, iface)


def at_idc(file: str, lab: Lab, bpf: str, src_ip_seen: str | None = None) -> Point:
    return Point(file, lab.idc, where_idc(lab), bpf, src_ip_seen)


class Run:
    """Writes captures, sidecars and truth files into a staging dir; moved into place at the end."""

    def __init__(self, staging: str) -> None:
        self.staging = staging
        self.written: list[str] = []

    def path(self, name: str) -> str:
        return os.path.join(self.staging, name)

    def write(self, point: Point, capture, when: dict, truth: dict) -> None:
        """The capture's sidecar ``STEM.json`` and its truth file ``STEM.truth.json``."""
        stem = point.file.rsplit(".", 1)[0]
        write_sidecar(self.path(stem + ".json"), self.sidecar(point, capture, when))
        with open(self.path(stem + ".truth.json"), "w", encoding="utf-8") as f:
            json.dump({"file": point.file, **truth}, f, indent=2)
            f.write("\n")
        self.written += [point.file, stem + ".json", stem + ".truth.json"]

    def sidecar(self, point: Point, capture, when: dict) -> dict:
        return sidecar_document(
            file={
                "name": point.file,
                "format": "pcapng" if point.file.endswith(".pcapng") else "pcap",
                "linktype": LINKTYPE_LINUX_SLL2 if capture.iface == "any" else LINKTYPE_ETHERNET,
            },
            point=point.where,
            how={
                "tool": capture.tool,
                "filter": capture.bpf,
                # argv()[4:] drops the "ip netns exec NS" prefix; the staging dir is throwaway
                "command": " ".join(capture.argv()[4:]).replace(self.staging + "/", ""),
            },
            when=when,
            counts={"packets": capture.packets, "bytes": os.path.getsize(capture.path)},
        )


class Take:
    """The captures of one scenario: all see the same traffic, then each gets its sidecar."""

    def __init__(self, run: Run, lab: Lab, points: tuple[Point, ...], set_name: str | None):
        self.run, self.lab, self.points, self.set_name = run, lab, points, set_name
        self.captures: list = []
        self.when: dict = {}

    def write(self, title: str, truth: dict, **extra) -> None:
        """A sidecar and a truth file per point; ``truth`` is shared, only src_ip_seen depends
        on the point."""
        for point, capture in zip(self.points, self.captures, strict=True):
            seen = {"src_ip_seen": point.src_ip_seen or truth["client_ip"]}
            facts = {"scenario": title, "topology": topology(self.lab)}
            facts |= {"ground_truth": truth | seen, **self._set_member(point), **extra}
            self.run.write(point, capture, self.when, facts)

    def _set_member(self, point: Point) -> dict:
        """Each file of a multi-point set names the others, which show the same connections."""
        if self.set_name is None:
            return {}
        files = sorted(p.file for p in self.points)
        kind = point.where["kind"]
        return {"multipoint_set": {"set": self.set_name, "point": kind, "files": files}}


@contextmanager
def capturing(run: Run, lab: Lab, *points: Point, set_name: str | None = None) -> Iterator[Take]:
    """Start a capture at every point, let the caller drive traffic, then stop them all.

    Every capture starts before the first packet and stops (after tcpdump's settle time) after
    the last one, so a multi-point set holds the same connections in each file.
    """
    take = Take(run, lab, points, set_name)
    started = now()
    with ExitStack() as stack:
        for point in points:
            path = run.path(point.file)
            cap = lab.capture(point.host, path, point.bpf, iface=point.iface, tool=point.tool)
            take.captures.append(stack.enter_context(cap))
        yield take
    take.when.update(started=started, ended=now())


def now() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------------------- traffic
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


@contextmanager
def security_group_drop(lab: Lab, node, port: int) -> Iterator[None]:
    """A DROP rule on ``node`` for the block's duration, removed even if the block fails."""
    rule = lab.add_security_group_drop(node, dport=port)
    try:
        yield
    finally:
        lab.remove_security_group_drop(rule)


# ---------------------------------------------------------------------------- scenarios
@scenario("01", lab="routed")
def http_mytest(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    uris = ["/mytest", "/healthz", "/api/v1/items?id=7"]
    point = in_pod("01-http-mytest.pcap", b, f"tcp port {b.http_port}")
    with capturing(run, lab, point) as take:
        for uri in uris:
            curl_ok(lab, a, f"http://{b.ip}{uri}")
    take.write(
        f"curl http://<pod>/mytest (and two other paths) from Pod {a.name} on {a.node.name} to "
        f"Pod {b.name} on {b.node.name}, routed; captured in the destination Pod",
        conversation(a, b, http_requests=[http_request(b, u, a.ip) for u in uris]),
        guide_filter='http.request.uri == "/mytest"',
    )


@scenario("02", lab="routed")
def lbtest_marker(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    payloads = ["hello\r\n", "lbtest\r\n", "bye\r\n"]  # one TCP connection each
    point = in_pod("02-lbtest-marker.pcap", b, f"tcp port {b.marker_port}")
    with capturing(run, lab, point) as take:
        for text in payloads:
            marker_ok(lab, a, b, text.encode())
    take.write(
        f"three TCP connections from Pod {a.name} to Pod {b.name}:{b.marker_port}, one of them "
        "carrying the guide's telnet marker 'lbtest'; captured in the destination Pod",
        conversation(
            a,
            b,
            markers=["lbtest"],
            tcp_connections=len(payloads),
            payloads=payloads,
            server_port=b.marker_port,
        ),
        guide_filter='tcp contains "lbtest"',
    )


@scenario("03", lab="routed")
def snat_to_idc(run: Run, lab: Lab) -> None:
    a, idc = lab.pods[0], lab.idc
    point = at_idc("03-snat-to-idc.pcap", lab, f"tcp port {idc.http_port}", a.node.ip)
    with capturing(run, lab, point) as take:
        _, pod_port = curl_ok(lab, a, f"http://{idc.ip}/from-pod")
    seen = idc.received("http")[-1]  # the server logs the address the request arrived from
    snat = {
        "pod_ip": a.ip,
        "pod_port": pod_port,
        "wire_ip": seen["peer_ip"],
        "wire_port": seen["peer_port"],
        "by": masqueraded_by(a.node),
    }
    take.write(
        f"Pod {a.name} -> IDC host {idc.ip} (outside nonMasqueradeCIDRs): masqueraded to node "
        f"{a.node.name}'s IP with the source port rewritten; captured at the IDC host",
        conversation(
            a,
            idc,
            http_requests=[http_request(idc, "/from-pod", a.ip)],
            snat_applied=True,
            snat=snat,
        ),
    )


@scenario("04", lab="nonmasq")
def nonmasq_preserved(run: Run, lab: Lab) -> None:
    a, idc = lab.pods[0], lab.idc
    point = at_idc("04-nonmasq-preserved.pcap", lab, f"tcp port {idc.http_port}")
    with capturing(run, lab, point) as take:
        _, pod_port = curl_ok(lab, a, f"http://{idc.ip}/keep-pod-ip")
    seen = idc.received("http")[-1]
    assert seen["peer_ip"] == a.ip and seen["peer_port"] == pod_port, seen
    take.write(
        f"Pod {a.name} -> IDC host {idc.ip} with {IDC_CIDR} in ip-masq-agent's "
        "nonMasqueradeCIDRs: the Pod IP arrives unchanged; captured at the IDC host",
        conversation(
            a,
            idc,
            http_requests=[http_request(idc, "/keep-pod-ip", a.ip)],
            non_masquerade_cidr=IDC_CIDR,
        ),
    )


@scenario("05", lab="vxlan")
def vxlan_node_nic(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    # src_ip_seen stays the Pod's: the inner packet, not the node-to-node outer header
    point = on_node("05-vxlan-node-nic.pcap", a.node, f"udp port {VXLAN_PORT}")
    with capturing(run, lab, point) as take:
        curl_ok(lab, a, f"http://{b.ip}/across-nodes")
        marker_ok(lab, a, b, b"lbtest\r\n")
    encapsulation = {
        "type": "vxlan",
        "udp_port": VXLAN_PORT,
        "vni": VXLAN_VNI,
        "outer_src": a.node.ip,
        "outer_dst": b.node.ip,
        "decode_as": "udp.port==8472,vxlan",
    }
    take.write(
        f"Pod {a.name} -> Pod {b.name} across nodes through a flannel-like VXLAN overlay "
        "(flannel.1, VNI 1, UDP 8472); captured on the source node's NIC, so every packet is "
        "encapsulated between the node IPs",
        conversation(
            a,
            b,
            http_requests=[http_request(b, "/across-nodes", a.ip)],
            markers=["lbtest"],
            encapsulation=encapsulation,
        ),
    )


@scenario("06", lab="routed")
def syn_dropped(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    point = in_pod("06-syn-dropped.pcap", a, f"tcp port {b.http_port}")
    with security_group_drop(lab, b.node, b.http_port), capturing(run, lab, point) as take:
        r = lab.curl(a, f"http://{b.ip}/blocked", timeout=3.5)
    if r.returncode != 28:
        raise SystemExit(f"expected a timeout through the security group, got {r.returncode}")
    dropped = {
        "what": f"tcp to {b.ip}:{b.http_port}",
        "by": f"security group on {b.node.name} (iptables -j DROP on {b.node.nic})",
        "syns_unanswered": True,
        "client_error": "curl: (28) timed out",
    }
    take.write(
        f"Pod {a.name} -> Pod {b.name}:{b.http_port} while a security group on {b.node.name} "
        "drops it: the SYN and its retransmissions go unanswered; captured in the client Pod",
        conversation(a, b, dropped=dropped),
    )


@scenario("07", lab="routed")
def conn_refused(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    point = in_pod("07-conn-refused.pcap", a, f"tcp port {b.closed_port}")
    with capturing(run, lab, point) as take:
        r = lab.send_marker(a, b.ip, b.closed_port)
    if r.returncode == 0:
        raise SystemExit("the closed port accepted a connection")
    take.write(
        f"Pod {a.name} -> Pod {b.name}:{b.closed_port}, where nothing listens: the SYN is "
        "answered with RST; captured in the client Pod",
        conversation(a, b, refused={"server_ip": b.ip, "port": b.closed_port}),
    )


@scenario("08", lab="routed")
def any_sll2(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    point = on_node("08-any-sll2.pcap", a.node, f"tcp port {b.http_port}", iface="any")
    with capturing(run, lab, point) as take:
        curl_ok(lab, a, f"http://{b.ip}/any-interface")
    take.write(
        f"tcpdump -i any on node {a.node.name} while Pod {a.name} fetches from Pod {b.name}: "
        "Linux cooked capture v2 (SLL2), each packet seen on the Pod's veth, cni0 and eth0. "
        "Interface indexes in the file are those of the node's namespace.",
        conversation(
            a,
            b,
            http_requests=[http_request(b, "/any-interface", a.ip)],
            copies_per_packet=3,
            interfaces=[a.host_veth, "cni0", a.node.nic],
        ),
    )


@scenario("09", lab="routed")
def pcapng(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    bpf = f"tcp port {b.http_port} or tcp port {b.marker_port}"
    point = in_pod("09-pcapng-dumpcap.pcapng", b, bpf, tool="dumpcap")
    with capturing(run, lab, point) as take:
        curl_ok(lab, a, f"http://{b.ip}/pcapng")
        marker_ok(lab, a, b, b"lbtest\r\n")
    take.write(
        f"dumpcap (pcapng) in Pod {b.name} while Pod {a.name} sends an HTTP request and the "
        "lbtest marker",
        conversation(a, b, http_requests=[http_request(b, "/pcapng", a.ip)], markers=["lbtest"]),
    )


@scenario("10", lab="routed")
def snat_multipoint(run: Run, lab: Lab) -> None:
    a, idc = lab.pods[0], lab.idc
    uris = ["/snat/1", "/snat/2"]
    bpf = f"tcp port {idc.http_port} or tcp port {idc.marker_port}"
    points = (
        in_pod("10-snat-pod.pcap", a, bpf),
        on_node("10-snat-node.pcap", a.node, bpf, a.node.ip),
        at_idc("10-snat-peer.pcap", lab, bpf, a.node.ip),
    )
    with capturing(run, lab, *points, set_name="10-snat") as take:
        logged_before = len(idc.received())
        pod_ports = [curl_ok(lab, a, f"http://{idc.ip}{uri}")[1] for uri in uris]
        marker_ok(lab, a, idc, b"lbtest\r\n")
    got = idc.received()[logged_before:]
    http = [e for e in got if e["kind"] == "http"]
    marker = next(e for e in got if e["kind"] == "marker")
    conns = [
        {
            "uri": uri,
            "pod_ip": a.ip,
            "pod_port": pod_port,
            "wire_ip": logged["peer_ip"],
            "wire_port": logged["peer_port"],
            "server": f"{idc.ip}:{idc.http_port}",
        }
        for uri, pod_port, logged in zip(uris, pod_ports, http, strict=True)
    ]
    snat = {
        "pod_ip": a.ip,
        "wire_ip": a.node.ip,
        "by": masqueraded_by(a.node),
        "connections": conns,
        "marker_wire_port": marker["peer_port"],
    }
    take.write(
        f"one set, three capture points: Pod {a.name} -> IDC host {idc.ip} (two HTTP requests "
        f"and the lbtest marker), masqueraded by ip-masq-agent on {a.node.name}; the same "
        "connections captured in the Pod (Pod IP), on the node's NIC and at the peer (node IP, "
        "rewritten ports)",
        conversation(
            a,
            idc,
            http_requests=[http_request(idc, uri, a.ip) for uri in uris],
            markers=["lbtest"],
            snat_applied=True,
            snat=snat,
        ),
    )


# A CoreDNS of the lab's own (testbed/lab/dns_server.py) in Pod b; the names Pod a resolves.
DNS_ZONE = {
    "addresses": {"api.shop": "93.184.216.34", "db.prod.svc.cluster.local": "10.96.3.3"},
    "lose_once": {"db.prod.svc.cluster.local": 28},  # the AAAA of the parallel pair, once
}
DNS_LOOKUPS = {"api.shop": "ndots_expansion", "db.prod": "conntrack_race", "nothere": "nxdomain"}


@scenario("11", lab="routed")
def dns_lookups(run: Run, lab: Lab) -> None:
    from testbed.lab.dns_server import logged, resolv_conf, resolve, serving

    a, b = lab.pods
    log = os.path.join(run.staging, "dns.log")
    point = in_pod("11-dns-lookups.pcap", a, "udp port 53")
    with serving(lab, b, DNS_ZONE, Path(log)), resolv_conf(a, b.ip):
        with capturing(run, lab, point) as take:
            for name in DNS_LOOKUPS:
                resolve(lab, a, name)
    entries = logged(Path(log))
    os.unlink(log)
    lookups = [dns_truth(name, verdict, entries) for name, verdict in DNS_LOOKUPS.items()]
    take.write(
        f"Pod {a.name} resolves api.shop, db.prod and nothere with a kubelet's resolv.conf "
        f"(search list, ndots:5) against a DNS server in Pod {b.name}, which loses the first "
        "AAAA answer for db.prod; captured in the client Pod",
        conversation(a, b, dns_lookups=lookups),
        guide_filter="dns",
    )


def dns_truth(name: str, verdict: str, entries: list[dict]) -> dict:
    """What the server logged of the lookup of ``name`` (its search-domain tries included)."""
    mine = [e for e in entries if e["name"] == name or e["name"].startswith(name + ".")]
    return {
        "name": name,
        "verdict": verdict,
        "queries": len(mine),
        "names_tried": list(dict.fromkeys(e["name"] for e in mine)),
        "nxdomain": sum(e["done"] == "NXDOMAIN" for e in mine),
        "lost": sum(e["done"] == "lost" for e in mine),
    }


# node-b's NIC carries 1000 bytes and node-b drops the ICMP that would say so.
NO_FRAG_NEEDED = ["OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP"]
BLACK_HOLE_MTU, BLACK_HOLE_BODY = 1000, 5000  # a body the first flight carries whole


@scenario("12", lab="routed")
def mtu_blackhole(run: Run, lab: Lab) -> None:
    a, b = lab.pods
    node_b = b.node
    uri = f"/large?size={BLACK_HOLE_BODY}"
    point = in_pod("12-mtu-blackhole.pcap", b, f"tcp port {b.http_port} or icmp")
    lab.run(node_b, ["ip", "link", "set", node_b.nic, "mtu", str(BLACK_HOLE_MTU)], check=True)
    lab.run(node_b, ["iptables", "-I", *NO_FRAG_NEEDED], check=True)
    try:
        with capturing(run, lab, point) as take:
            hung = lab.curl(a, f"http://{b.ip}{uri}", timeout=3)
    finally:
        lab.run(node_b, ["iptables", "-D", *NO_FRAG_NEEDED], check=True)
        lab.run(node_b, ["ip", "link", "set", node_b.nic, "mtu", "1500"], check=True)
        lab.run(b, ["ip", "route", "flush", "cache"])
    if hung.returncode == 0:
        raise SystemExit("the large response got through: no black hole was made")
    take.write(
        f"Pod {a.name} asks Pod {b.name} for a {BLACK_HOLE_BODY}-byte response; {node_b.name}'s "
        f"NIC carries {BLACK_HOLE_MTU} bytes and {node_b.name} drops the ICMP 'fragmentation "
        "needed' it would send: the handshake and the request pass, the full-size segments "
        "are sent again and again and never acknowledged; captured in the server Pod",
        conversation(
            a,
            b,
            http_requests=[http_request(b, uri, a.ip)],
            mtu_blackhole={
                "sender": b.ip,
                "lost_size": 1448,
                "path_mtu": BLACK_HOLE_MTU,
                "icmp_dropped": True,
            },
        ),  # fmt: skip
    )


COLLISION_PORT = 40000


@scenario("13", lab="pair")
def snat_collision(run: Run, lab: Lab) -> None:
    """Two Pods of one node reach the IDC host from one source port; ip-masq-agent's
    MASQUERADE without --random-fully, its range narrowed to that port so the race's loser
    is certain (in a cluster, two connections at once). Three files, each its own truth."""
    from testbed.lab import masq  # noqa: PLC0415
    from testbed.lab.conntrack import counter  # noqa: PLC0415

    a, b, idc, node = lab.pods[0], lab.pods[1], lab.idc, lab.nodes[0]
    rules = masq.restore_text(lab.masq_config, random_fully=False).replace(
        "-j MASQUERADE", f"-p tcp -j MASQUERADE --to-ports {COLLISION_PORT}")  # fmt: skip
    lab.run(node, ["iptables-restore", "--noflush"], input=rules, check=True)
    bpf = f"tcp port {idc.http_port}"
    points = (
        in_pod("13-collision-pod-a.pcap", a, bpf),
        in_pod("13-collision-pod-b.pcap", b, bpf),
        on_node("13-collision-node.pcap", node, bpf, node.ip),
    )
    port = ("--local-port", str(COLLISION_PORT))
    before = counter(lab, node, "insert_failed")
    with capturing(run, lab, *points) as take:
        first = lab.curl(a, f"http://{idc.ip}/first", *port, "-o", "/dev/null")
        second = lab.curl(b, f"http://{idc.ip}/second", *port, "-o", "/dev/null", timeout=3)
    if first.returncode != 0 or second.returncode == 0:
        raise SystemExit(f"no collision: {first.stderr} {second.stderr}")
    held = {"uri": "/first", "pod_ip": a.ip, "pod_port": COLLISION_PORT, "wire_ip": node.ip,
            "wire_port": COLLISION_PORT, "server": f"{idc.ip}:{idc.http_port}"}  # fmt: skip
    snat = {"pod_ip": a.ip, "wire_ip": node.ip, "connections": [held],
            "by": masqueraded_by(node).replace(" --random-fully", "")}  # fmt: skip
    holder = conversation(a, idc, http_requests=[http_request(idc, "/first", a.ip)],
                          snat_applied=True, snat=snat)  # fmt: skip
    syns = counter(lab, node, "insert_failed") - before  # the kernel's count of its drops
    loser = conversation(
        b, idc,
        dropped={"what": "SYN", "by": "conntrack: the node's SNAT port was taken",
                 "syns_unanswered": True},
        conntrack={"verdict": "snat_port_collision", "client": f"{b.ip}:{COLLISION_PORT}",
                   "other": f"{a.ip}:{COLLISION_PORT}",
                   "shared_end": f"{node.ip}:{COLLISION_PORT}", "syns_lost": syns,
                   "files": [p.file for p in points]},
    )  # fmt: skip
    title = (f"Pods {a.name} and {b.name} of {node.name} reach the IDC host {idc.ip} from port "
             f"{COLLISION_PORT} through MASQUERADE without --random-fully: {a.name}'s request "
             f"goes out as {node.ip}:{COLLISION_PORT}, {b.name}'s SYNs are dropped at "
             "conntrack insert; captured in both Pods and on the node's NIC")  # fmt: skip
    for point, capture, truth in zip(points, take.captures, (holder, loser, holder),
                                     strict=True):  # fmt: skip
        seen = {"src_ip_seen": point.src_ip_seen or truth["client_ip"]}
        facts = {"scenario": title, "topology": topology(lab), "ground_truth": truth | seen}
        run.write(point, capture, take.when, facts)


# ---------------------------------------------------------------------------- driver
LAB_SHAPES: dict[str, Callable[[], Lab]] = {
    "routed": lambda: Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True),
    "nonmasq": lambda: Lab(
        nodes=1,
        pods_per_node=1,
        idc=True,
        masq_non_masquerade=[VPC_CIDR, CLUSTER_CIDR, IDC_CIDR],
    ),
    "vxlan": lambda: Lab(nodes=2, pods_per_node=1, overlay="vxlan"),
    "pair": lambda: Lab(nodes=1, pods_per_node=2, idc=True),
}


def build_labs(wanted: set[str], labs: dict[str, Lab]) -> None:
    """Start only the labs the wanted scenarios run in; fills ``labs`` as it goes so the
    caller can close the ones that started even if a later one fails."""
    needed = {SCENARIOS[number][0] for number in wanted}
    for shape, make_lab in LAB_SHAPES.items():  # in LAB_SHAPES order, as before
        if shape in needed:
            labs[shape] = make_lab().start()


def replace_outputs(run: Run, out: str, wanted: set[str]) -> None:
    """Remove the old files of the scenarios made (a renamed capture leaves none behind)."""
    for number in sorted(wanted):
        for old in glob.glob(os.path.join(out, f"{number}-*")):
            if old.endswith((".pcap", ".pcapng", ".json")):
                os.unlink(old)
    for name in run.written:
        shutil.move(run.path(name), os.path.join(out, name))
        print(os.path.join(out, name))


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
    labs: dict[str, Lab] = {}
    try:
        build_labs(wanted, labs)
        run = Run(staging)
        for number in sorted(wanted):
            shape, make = SCENARIOS[number]
            started = time.monotonic()
            make(run, labs[shape])
            print(f"{number}: {time.monotonic() - started:.1f}s")
        replace_outputs(run, args.out, wanted)
    finally:
        for lab in labs.values():
            lab.close()
        shutil.rmtree(staging, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
