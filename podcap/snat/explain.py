"""Why a source was (or was not) rewritten, and the configuration change that fixes it.

Given the Pod's address and the destination as the node's POSTROUTING sees it (after any
Service DNAT), ask the node's rules: ``iptables-save`` when given, else the ip-masq-agent
ConfigMap. Each explanation names the destination and the CIDR list it was checked against;
each fix uses the troubleshooting guide's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from podcap.snat.facts import ClusterFacts
from podcap.snat.iptables import (
    Packet,
    Ruleset,
    WalkResult,
    chain_owner,
    exempt_destinations,
    walk_postrouting,
)
from podcap.snat.masq_config import MasqConfig


@dataclass(frozen=True)
class Explanation:
    masquerades: bool | None  # what the rules predict; None when no rules were given
    rewritten_by: str
    explanation: str
    fix: str
    evidence: str = ""


def explain(
    pod_ip: str,
    dst: str,
    dport: int | None,
    facts: ClusterFacts,
    masq: MasqConfig | None,
    rules: Ruleset | None,
    mark: int = 0,
) -> Explanation | None:
    """What the node's rules do to traffic from ``pod_ip`` to ``dst``; None when no rules given.

    ``mark`` is the packet mark on the way out: 0x4000 for a connection kube-proxy's Service
    chains marked for masquerading (known when the captures show it went through a Service).
    """
    if rules is not None:
        return _from_iptables(pod_ip, dst, dport, facts, masq, rules, mark)
    if masq is not None:
        return _from_masq_config(pod_ip, dst, masq)
    return None


def _from_masq_config(pod_ip: str, dst: str, masq: MasqConfig) -> Explanation:
    decision = masq.decide(pod_ip, dst)
    checked = f"checked against NonMasqueradeCIDRs {masq.cidr_list_text()} from {masq.source}"
    if decision.masquerade:
        return Explanation(
            True,
            f"ip-masq-agent ({masq.source})",
            f"{dst} is not in NonMasqueradeCIDRs ({masq.cidr_list_text()}), so ip-masq-agent "
            "masquerades traffic to it with the node IP.",
            _masq_agent_fix(dst, masq.configmap_name),
            f"ip-masq-agent config {masq.source}",
        )
    return Explanation(
        False,
        "",
        f"{decision.reason}, so ip-masq-agent leaves the Pod IP ({checked}).",
        "",
        f"ip-masq-agent config {masq.source}",
    )


def _masq_agent_fix(dst: str, configmap: str) -> str:
    return (
        f"To let the peer see Pod IPs, add {dst}'s CIDR to NonMasqueradeCIDRs: "
        f"kubectl -n kube-system edit configmap {configmap}"
    )


def _from_iptables(
    pod_ip: str,
    dst: str,
    dport: int | None,
    facts: ClusterFacts,
    masq: MasqConfig | None,
    rules: Ruleset,
    mark: int,
) -> Explanation:
    packet = Packet(
        src=pod_ip,
        dst=dst,
        dport=dport,
        mark=mark,
        local_addresses=frozenset(facts.nodes),
        ipsets=_known_ipsets(facts),
    )
    walk = walk_postrouting(rules, packet)
    evidence = f"iptables {rules.source}: nat POSTROUTING walked for {pod_ip} -> {dst}"
    if mark:
        evidence += f" with mark {mark:#x}"
    if walk.assumptions:
        evidence += " (assumed: " + "; ".join(walk.assumptions) + ")"
    if walk.masquerades:
        owner = chain_owner(walk.rule.chain, walk.rule.comment)
        checked = exempt_destinations(rules, walk.rule.chain)
        text, fix = _owner_words(owner, dst, checked, walk, masq)
        where = f"{rules.source}:{walk.rule.line_no}"
        evidence += f"; matched {where}: {walk.rule.text}"
        by = f"{owner}: chain {walk.rule.chain} -j {walk.rule.target} at {where}"
        return Explanation(True, by, text, fix, evidence)
    decider = walk.rule
    if decider is None:
        text = f"No rule in nat POSTROUTING masquerades {pod_ip} -> {dst}, so the Pod IP is kept."
    else:
        owner = chain_owner(decider.chain, decider.comment)
        checked = ", ".join(exempt_destinations(rules, decider.chain)) or "none"
        text = (
            f"{dst} matches '{decider.text}' ({owner}, checked against {checked}), "
            "so the Pod IP is kept."
        )
    return Explanation(False, "", text, "", evidence)


def _owner_words(
    owner: str, dst: str, checked: list[str], walk: WalkResult, masq: MasqConfig | None
) -> tuple[str, str]:
    listed = ", ".join(checked) or "no exceptions"
    if owner.startswith("ip-masq-agent"):
        configmap = masq.configmap_name if masq else "ip-masq-agent-config"
        if owner.endswith("(GKE)"):
            configmap = "ip-masq-agent"
        return (
            f"{dst} is not in NonMasqueradeCIDRs ({listed}), so ip-masq-agent masquerades "
            "traffic to it with the node IP.",
            _masq_agent_fix(dst, configmap),
        )
    if owner == "kube-proxy":
        return (
            f"kube-proxy marked the connection to {dst} for SNAT (Service traffic from outside the "
            "cluster CIDR, or a NodePort/LoadBalancer with externalTrafficPolicy: Cluster), so it "
            "leaves with the node IP.",
            "To keep the client IP, set externalTrafficPolicy: Local on the Service: "
            "kubectl edit service <name>",
        )
    if owner == "flannel":
        return (
            f"{dst} is outside the flannel network, and flanneld --ip-masq masquerades everything "
            f"leaving the cluster CIDR (exceptions: {listed}).",
            "flannel has no per-destination exception: run flanneld without --ip-masq and let "
            "ip-masq-agent decide (then list the destination in NonMasqueradeCIDRs).",
        )
    if owner == "Calico":
        return (
            f"{dst} is outside every Calico IP pool and the Pod's pool has natOutgoing: true, so "
            f"Calico masquerades traffic to it (rule {walk.rule.comment or walk.rule.chain}).",
            f"To keep Pod IPs towards {dst}, create a disabled IPPool covering its CIDR "
            "(spec.disabled: true) or set natOutgoing: false: kubectl edit ippool <name>",
        )
    if owner == "AWS VPC CNI":
        return (
            f"{dst} is not in the VPC CIDRs or AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS ({listed}), so "
            "the AWS VPC CNI SNATs traffic to it to the node's primary IP.",
            f"To keep Pod IPs, add {dst}'s CIDR: kubectl -n kube-system set env daemonset aws-node "
            "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS=<cidr>",
        )
    if owner == "Cilium":
        return (
            f"{dst} is outside the native-routing CIDR ({listed}), so Cilium masquerades traffic "
            "to it with the node IP.",
            "To keep Pod IPs, widen ipv4-native-routing-cidr or configure Cilium's ip-masq-agent "
            "(nonMasqueradeCIDRs): kubectl -n kube-system edit configmap cilium-config",
        )
    return (
        f"Rule '{walk.rule.text}' masquerades traffic to {dst} (exceptions before it: {listed}).",
        "Find who installs this rule on the node and exclude the destination there.",
    )


def _known_ipsets(facts: ClusterFacts) -> dict[str, tuple[str, ...]]:
    # Calico's pool ipsets and Cilium's node set follow from the facts when not given explicitly.
    derived = {
        "cali40masq-ipam-pools": facts.pod_cidrs,
        "cali40all-ipam-pools": facts.pod_cidrs,
        "cilium_node_set_v4": tuple(facts.nodes),
    }
    known = {name: members for name, members in derived.items() if members}
    known.update(facts.ipsets)
    return known
