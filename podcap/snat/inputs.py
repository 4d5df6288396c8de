"""What the SNAT report knows besides packets: cluster facts, the ip-masq-agent ConfigMap and the
node's rules, gathered from the analyze options and the captures' sidecars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from podcap.snat.facts import ClusterFacts, facts_from_flags, facts_from_sidecar, load_facts
from podcap.snat.iptables import Ruleset, load_iptables, parse_iptables_save
from podcap.snat.masq_config import MasqConfig, load_masq_config, parse_masq_config


@dataclass(frozen=True)
class SnatInputs:
    """Everything besides packets that the report can use; every part is optional."""

    facts: ClusterFacts = field(default_factory=ClusterFacts)
    masq: MasqConfig | None = None
    rules: Ruleset | None = None
    # capture file -> IP of the Pod it was taken in (from capture sidecars)
    capture_pods: Mapping[str, str] = field(default_factory=dict)


def inputs_from_options(
    options: Mapping, sidecars: Mapping[str, Mapping] | None = None
) -> SnatInputs:
    """Build the inputs from the analyze options dict (CLI flags) and capture sidecars.

    Flags win over sidecars: a ``--masq-config`` or ``--iptables`` file replaces what a
    sidecar recorded, and flag facts are merged with sidecar facts.
    """
    facts = facts_from_flags(
        options.get("pod_cidr") or (),
        options.get("node_ip") or (),
        options.get("service_cidr") or (),
    )
    if options.get("facts"):
        facts = facts.merged(load_facts(options["facts"]))
    capture_pods: dict[str, str] = {}
    masq, rules = None, None
    for file, sidecar in (sidecars or {}).items():
        if not sidecar:
            continue
        found = facts_from_sidecar(sidecar, f"sidecar of {file}")
        facts = facts.merged(found.facts)
        if found.capture_pod_ip:
            capture_pods[str(file)] = found.capture_pod_ip
        if found.masq_config_text and masq is None:
            masq = parse_masq_config(found.masq_config_text, f"sidecar of {file}")
            masq = replace(masq, configmap_name=found.masq_configmap or masq.configmap_name)
        if found.iptables_save and rules is None:
            rules = parse_iptables_save(found.iptables_save, f"sidecar of {file}")
    if options.get("masq_config"):
        masq = load_masq_config(options["masq_config"])
    if options.get("iptables"):
        rules = load_iptables(options["iptables"])
    return SnatInputs(facts, masq, rules, capture_pods)
