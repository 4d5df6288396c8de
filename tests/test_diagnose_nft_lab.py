"""A drop by a native nftables rule on the destination node (firewalld, kube-proxy's nftables
mode and hand-written rulesets live outside iptables-save): ``podcap diagnose`` saves the node's
``nft list ruleset`` with its rules and names the rule, in the lab behind the in-test API server."""

from __future__ import annotations

import pytest

from tests.diagnose_helpers import diagnose

pytestmark = pytest.mark.timeout(180)


def test_a_native_nftables_drop_on_the_destination_node_is_named(kube_lab, node_pids, tmp_path):
    _, _, lab = kube_lab
    server, node_b = lab.pods[1], lab.nodes[1]
    ruleset = (
        "table inet podcap_test {\n"
        "  chain forward_filter {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        f"    ip daddr {server.ip} tcp dport {server.http_port} counter drop\n"
        "  }\n"
        "}\n"
    )
    lab.run(node_b, ["nft", "-f", "-"], input=ruleset, check=True)
    try:
        out = tmp_path / "nft"
        run = diagnose(kube_lab, node_pids, out, f"{server.name}:{server.http_port}",
                       "--timeout", "1s")  # fmt: skip
    finally:
        lab.run(node_b, ["nft", "delete", "table", "inet", "podcap_test"], check=True)
    assert run.returncode == 1, run.stderr
    assert "lost between: node-b eth0 -> pod default/web-b0" in run.stdout
    assert (f"table inet podcap_test chain forward_filter: ip daddr {server.ip} tcp dport "
            f"{server.http_port} drop") in run.stdout  # fmt: skip
    assert "nft delete rule FAMILY TABLE CHAIN handle N" in run.stdout
    assert "podcap_test" in (out / "node-b.nft.txt").read_text()
