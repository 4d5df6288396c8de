"""Tests of the lab itself: that its Pods, cgroups, servers and cleanup are what they claim."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess

import pytest

from tests.lab import Lab
from tests.lab.cgroups import hierarchies


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
