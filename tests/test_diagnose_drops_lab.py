"""``podcap diagnose`` records the kernel's drops on the nodes by default (bpftrace on
skb:kfree_skb, in the lab behind the in-test API server): a FORWARD DROP on node-b shows up as
NETFILTER_DROP in node-b's own network namespace, on the probe's connection. ``--no-drops``
watches nothing; ``--capabilities --dry-run`` shows the capabilities the watcher needs."""

from __future__ import annotations

import io
import subprocess

import pandas as pd
import pytest

from podcap.dropsfile import read_drops
from testbed.helpers import podcap
from tests.diagnose_helpers import diagnose, drop_watchers_alive

pytestmark = pytest.mark.timeout(180)


def test_a_forward_drop_is_recorded_with_its_reason_on_the_node(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    rule = ["FORWARD", "-d", server.ip, "-p", "tcp", "--dport", "80", "-j", "DROP"]
    lab.run(node_b, ["iptables", "-I", *rule], check=True)
    try:
        out = tmp_path / "drops"
        run = diagnose(kube_lab, node_pids, out, f"{server.name}:80", "--timeout", "2s")
    finally:
        lab.run(node_b, ["iptables", "-D", *rule], check=True)
    assert run.returncode == 1, run.stderr
    assert "podcap: drops on node-b: " in run.stderr and "(bpftrace)" in run.stderr
    port = int(run.stderr.split("probe: tcp from port ", 1)[1].split()[0])
    header, drops = read_drops(out / "node-b.drops.jsonl")
    probe = [d for d in drops if d["sport"] == port and d["netns"] == header["root_netns"]]
    assert probe, drops  # in node-b's own namespace: where the FORWARD chain runs
    assert {(d["reason"], d["function"], d["dst"], d["dport"]) for d in probe} == {
        ("NETFILTER_DROP", "nft_do_chain", server.ip, 80)
    }
    assert all(d["tcp_flags"] == 0x02 for d in probe)  # the SYN and its retransmissions
    # The verdict carries the kernel's word, and so does the offline analysis of the bundle.
    said = "The kernel says: NETFILTER_DROP in nft_do_chain (node-b root netns)"
    assert said in run.stdout
    offline = podcap("analyze", *sorted(out.glob("*.pcap")), "-r", "drops", "-F", "csv")
    assert offline.returncode == 0, offline.stderr
    table = pd.read_csv(io.StringIO(offline.stdout))
    mine = table[table["sport"] == port]
    assert set(mine["where"]) == {"node-b root netns"} and set(mine["node"]) == {"node-b"}
    assert len(mine) == len(probe)  # each drop once, though both lab watchers saw it
    # Wireshark sees it too: the merged pcapng's last copy of each dropped SYN, node-b's NIC's,
    # carries the kernel's word as its packet comment.
    marked = subprocess.run(
        ["tshark", "-r", str(out / "diagnose.pcapng"), "-Y", "frame.comment", "-T", "fields",
         "-e", "frame.interface_name", "-e", "tcp.srcport", "-e", "frame.comment"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert len(marked) == len(probe) and all(
        line.split("\t") == ["node-b eth0", str(port), "podcap: then dropped by the kernel: "
                              "NETFILTER_DROP in nft_do_chain (node-b root netns)"]
        for line in marked
    ), marked  # fmt: skip
    assert drop_watchers_alive(kube_lab[0]) == []  # no watcher outlives the diagnosis


def test_no_drops_watches_nothing(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server = lab.pods[1]
    out = tmp_path / "quiet"
    run = diagnose(kube_lab, node_pids, out, f"{server.name}:80", "--no-drops")
    assert run.returncode == 0, run.stderr
    assert "drops on" not in run.stderr and not list(out.glob("*.drops.jsonl"))


def test_the_capabilities_helper_asks_for_bpf_only_with_drops(kube_lab):
    _, server, _ = kube_lab
    common = ["diagnose", "web-a0", "web-b0:80", "--capabilities", "--dry-run", "--kubeconfig",
              str(server.kubeconfig_path)]  # fmt: skip
    with_drops, without = podcap(*common), podcap(*common, "--no-drops")
    assert with_drops.returncode == 0 and without.returncode == 0, with_drops.stderr
    assert "- BPF" in with_drops.stdout and "- PERFMON" in with_drops.stdout
    assert "- BPF" not in without.stdout


def test_a_reject_is_refused_not_silently_dropped(kube_lab, node_pids, tmp_path):
    """A REJECT on node-b answers the SYN with ICMP port unreachable from node-b's address
    (the Pods' captures keep ICMP errors) and drops the SYN: refused, the rule and the
    kernel's drop named."""
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    rule = ["FORWARD", "-d", server.ip, "-p", "tcp", "--dport", "80", "-j", "REJECT"]
    lab.run(node_b, ["iptables", "-I", *rule], check=True)
    try:
        run = diagnose(kube_lab, node_pids, tmp_path / "rej", f"{server.name}:80")
    finally:
        lab.run(node_b, ["iptables", "-D", *rule], check=True)
    assert run.returncode == 1, run.stderr
    assert "NOT REACHABLE (refused)" in run.stdout
    assert f"rejected: an ICMP unreachable from node-b ({node_b.ip}) came back" in run.stdout
    assert "Refused, not silently dropped" in run.stdout
    assert "-j REJECT --reject-with icmp-port-unreachable" in run.stdout
    assert "The kernel says: NETFILTER_DROP in nft_do_chain (node-b root netns)" in run.stdout
