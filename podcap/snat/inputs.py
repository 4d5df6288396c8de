"""What the SNAT report knows besides packets: cluster facts, the ip-masq-agent ConfigMap and the
node's rules, from what the user gave (:func:`snat_inputs`) and the captures' sidecars
(:func:`with_sidecars`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    # Where the facts came from, in words: "--pod-cidr", "sidecar of pod.pcap (Pod IP, ...)".
    sources: tuple[str, ...] = ()


def snat_inputs(
    pod_cidrs: Iterable[str] = (),
    node_ips: Iterable[str] = (),
    service_cidrs: Iterable[str] = (),
    facts_file: str | Path | None = None,
    masq_config: str | Path | None = None,
    iptables: str | Path | None = None,
) -> SnatInputs:
    """What the user gave (``podcap analyze --pod-cidr ... --iptables FILE``), every address
    checked and every file read now: a typo or a missing file is one error before any capture
    is decoded, whichever reports were asked for."""
    pod_cidrs, node_ips, service_cidrs = list(pod_cidrs), list(node_ips), list(service_cidrs)
    facts = facts_from_flags(pod_cidrs, node_ips, service_cidrs)
    if facts_file is not None:
        facts = facts.merged(load_facts(facts_file))
    masq = load_masq_config(masq_config) if masq_config is not None else None
    rules = load_iptables(iptables) if iptables is not None else None
    given = {
        "--pod-cidr": pod_cidrs, "--node-ip": node_ips, "--service-cidr": service_cidrs,
        f"--facts {facts_file}": facts_file, f"--masq-config {masq_config}": masq_config,
        f"--iptables {iptables}": iptables,
    }  # fmt: skip
    return SnatInputs(facts, masq, rules, sources=tuple(name for name, v in given.items() if v))


def with_sidecars(given: SnatInputs, sidecars: Mapping[str, Mapping] | None) -> SnatInputs:
    """``given`` completed by what the captures' sidecars recorded.

    The user's word wins: a ``--masq-config`` or ``--iptables`` file replaces what a sidecar
    recorded, and the given facts are merged with the sidecars' facts."""
    facts, masq, rules = given.facts, given.masq, given.rules
    capture_pods = dict(given.capture_pods)
    sources = list(given.sources)
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
        told = _what_it_told(found)
        if told:
            sources.append(f"sidecar of {Path(str(file)).name} ({', '.join(told)})")
    return SnatInputs(facts, masq, rules, capture_pods, tuple(sources))


def _what_it_told(found) -> list[str]:
    facts = found.facts
    told = [
        ("Pod IP", found.capture_pod_ip), ("node IP", facts.nodes), ("Pod CIDRs", facts.pod_cidrs),
        ("Service CIDR", facts.service_cidrs), ("ip-masq-agent config", found.masq_config_text),
        ("iptables-save", found.iptables_save),
    ]  # fmt: skip
    return [name for name, value in told if value]
