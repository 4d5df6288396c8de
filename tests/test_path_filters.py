"""Naming the node's rule that drops a packet, from what the real ``nft list ruleset`` and
``iptables-save`` print: a ruleset loaded with ``nft -f`` into a network namespace this test
makes (and deletes), with an iptables-nft rule and a FORWARD policy of DROP beside it, which
``iptables-save`` names instead."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from podcap.path.filters import dropping_rules
from podcap.path.nft_rules import Packet, dropping_nft_rules

RULESET = """
table inet podcap_test {
  chain forward_filter {
    type filter hook forward priority 0; policy accept;
    ct state invalid drop
    ip daddr 10.244.1.10 tcp dport 80 counter drop
    ip saddr 10.244.0.0/24 udp dport { 53, 5353 } reject
    meta l4proto icmp ip daddr 10.244.1.10 drop
    ip daddr != 10.0.0.0/8 tcp dport 443 drop
    iifname "eth0" tcp dport 8000-9000 drop comment "block range"
    ip daddr 10.244.2.0/24 jump to_pods
  }
  chain to_pods {
    tcp dport 81 reject with tcp reset
  }
}
table ip strict {
  chain forward_default {
    type filter hook forward priority 10; policy drop;
    ip saddr 10.244.0.0/16 ip daddr 10.244.0.0/16 accept
  }
  chain input_filter {
    type filter hook input priority 0; policy drop;
    tcp dport 22 accept
  }
}
"""


@pytest.fixture(scope="module")
def listed():
    """``nft list ruleset`` of a namespace holding RULESET and one iptables-nft rule."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/install-system-deps.sh installs nftables)")
    netns = f"podcap-nft-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        run = ["ip", "netns", "exec", netns]
        subprocess.run([*run, "nft", "-f", "-"], input=RULESET, text=True, check=True)
        subprocess.run([*run, "iptables", "-I", "FORWARD", "-d", "10.1.1.1", "-p", "tcp",
                        "--dport", "22", "-j", "DROP"], check=True)  # fmt: skip
        subprocess.run([*run, "iptables", "-P", "FORWARD", "DROP"], check=True)
        yield {
            "nft": subprocess.run([*run, "nft", "list", "ruleset"], capture_output=True,
                                  text=True, check=True).stdout,
            "iptables": subprocess.run([*run, "iptables-save"], capture_output=True, text=True,
                                       check=True).stdout,
        }  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


FORWARD = "table inet podcap_test chain forward_filter"


@pytest.mark.parametrize(
    "packet, sure",
    [
        (Packet("10.244.0.10", "10.244.1.10", 80, "tcp"),
         f"{FORWARD}: ip daddr 10.244.1.10 tcp dport 80 drop"),
        (Packet("10.244.0.10", "10.244.1.10", 5353, "udp"),
         f"{FORWARD}: ip saddr 10.244.0.0/24 udp dport {{ 53, 5353 }} reject"),
        (Packet("10.244.0.10", "10.244.1.10", None, "icmp"),
         f"{FORWARD}: meta l4proto icmp ip daddr 10.244.1.10 drop"),
        (Packet("10.244.0.10", "10.244.3.3", 8500, "tcp"),
         f'{FORWARD}: iifname "eth0" tcp dport 8000-9000 drop comment "block range"'),
    ],
)  # fmt: skip
def test_the_rule_that_drops_the_packet_is_named(listed, packet, sure):
    found, _ = dropping_nft_rules(listed["nft"], packet)
    assert [rule.split(" with ")[0] for rule in found] == [sure.split(" with ")[0]]


def test_what_cannot_be_read_here_may_drop_it(listed):
    # Behind a jump, a negation, or a chain whose policy drops: named as maybe, never sure.
    sure, maybe = dropping_nft_rules(listed["nft"], Packet("10.244.0.10", "10.244.2.5", 81, "tcp"))
    assert sure == []
    assert "table inet podcap_test chain to_pods: tcp dport 81 reject with tcp reset" in maybe
    assert "table ip strict chain forward_default: policy drop" in maybe
    assert not any("input_filter" in rule for rule in maybe)  # a Pod's packets are forwarded
    sure, maybe = dropping_nft_rules(listed["nft"], Packet("10.244.0.10", "8.8.8.8", 443, "tcp"))
    assert sure == [] and any("!= 10.0.0.0/8" in rule for rule in maybe)


def test_rules_that_cannot_match_are_not_named(listed):
    # Another port, another protocol, the invalid-state rule (a first packet is new).
    sure, maybe = dropping_nft_rules(
        listed["nft"], Packet("10.244.0.10", "10.244.1.10", 9999, "udp")
    )
    assert sure == [] and not any("invalid" in rule or "dport 80" in rule for rule in maybe)


def test_iptables_nft_tables_are_named_once_from_iptables_save(listed):
    assert "table ip filter" in listed["nft"]  # iptables-nft keeps its rule there
    packet = Packet("10.244.0.10", "10.1.1.1", 22, "tcp")
    assert dropping_nft_rules(listed["nft"], packet)[0] == []
    named = dropping_rules(listed["iptables"], "10.244.0.10", "10.1.1.1", 22, "tcp", listed["nft"])
    assert named == ["-A FORWARD -d 10.1.1.1/32 -p tcp -m tcp --dport 22 -j DROP"]


def test_a_forward_policy_of_drop_may_drop_what_no_rule_names(listed):
    named = dropping_rules(listed["iptables"], "10.244.0.10", "10.9.9.9", 8080, "tcp")
    assert named == [":FORWARD DROP (the filter table's FORWARD policy: what no rule accepts)"]
