"""The ``snat`` and ``dnat`` reports: one row per TCP connection, with a verdict and its reasons.

Verdicts: ``snat`` (the peer saw another source than the client sent), ``preserved`` (the peer
saw the client's own address), ``unknown`` (the captures and facts cannot tell; never a guess).

Evidence, strongest first: the same connection in several captures (matched by NAT-invariant
keys, see :mod:`podcap.snat.match`); then cluster facts for a connection seen once. The node's
rules (ConfigMap, iptables-save) explain the verdict and give the fix.
"""

from __future__ import annotations

import pandas as pd

from podcap.snat.explain import Explanation, explain
from podcap.snat.facts import ClusterFacts
from podcap.snat.inputs import SnatInputs, with_sidecars
from podcap.snat.match import (
    MatchedConnection,
    Observation,
    clock_offsets,
    match_connections,
    tcp_observations,
)

SNAT_COLUMNS = [
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "verdict",
    "original_src",
    "observed_src",
    "observed_sport",
    "rewritten_by",
    "dnat",
    "observed_dst",
    "observed_dport",
    "captures",
    "clock_offset_s",
    "evidence",
    "explanation",
    "fix",
]
KUBE_PROXY_MASQ_MARK = 0x4000


def snat_report(analysis) -> pd.DataFrame:
    """Report entry point: reads packets, the given ``snat`` inputs and ``sidecars`` off an
    Analysis.

    Matching runs over every packet of every file, so a display filter that selects packets
    in one capture (``ip.src == POD``) still finds the same connection in the others; the
    rows kept are the connections with at least one selected packet.
    """
    inputs = with_sidecars(analysis.snat_inputs or SnatInputs(), analysis.sidecars)
    selected = None
    if analysis.filter_text is not None:
        selected = _conversation_keys(analysis.packets)
    return snat_table(analysis.all_packets, inputs, selected, analysis.tcp_connections)


def dnat_report(analysis) -> pd.DataFrame:
    """Only the connections whose destination was rewritten (Service ClusterIP/NodePort)."""
    table = analysis.snat
    return table[table["dnat"] != ""].reset_index(drop=True)


def snat_table(
    packets: pd.DataFrame,
    inputs: SnatInputs | None = None,
    selected: set[tuple] | None = None,
    connections: list[MatchedConnection] | None = None,
) -> pd.DataFrame:
    """One row per TCP connection in ``packets`` (which need a ``file`` column).

    ``selected``: keep only connections seen by one of these (file, address, port, address,
    port) conversations, in either direction; None keeps all. ``connections``: the matches of
    ``packets`` when already made (``Analysis.tcp_connections``); None matches them here.
    """
    inputs = inputs or SnatInputs()
    if "file" not in packets.columns:
        packets = packets.assign(file="capture")
    if connections is None:
        connections = match_connections(tcp_observations(packets))
    if selected is not None:
        connections = [c for c in connections if _is_selected(c, selected)]
    several_captures = packets["file"].nunique() > 1
    rows = [_row(c, inputs, several_captures) for c in connections]
    table = pd.DataFrame(rows, columns=SNAT_COLUMNS + ["_ts"])
    table = table.sort_values("_ts", kind="stable").drop(columns="_ts").reset_index(drop=True)
    # What a terminal's table says under the rows (podcap.render.table), and the API keeps.
    table.attrs["note"] = "facts: " + ("; ".join(inputs.sources) or "none given or recorded")
    # Per pair of captures: the median SYN time difference (clock offset plus path delay), as
    # records: a DataFrame in attrs makes pandas fail on any operation between two such tables
    # (it compares the attrs of both), and JSON cannot hold it.
    table.attrs["clock_offsets"] = clock_offsets(connections).to_dict("records")
    return table


def _conversation_keys(packets: pd.DataFrame) -> set[tuple]:
    columns = packets[["file", "src", "sport", "dst", "dport"]].drop_duplicates()
    return {(str(f), s, int(sp), d, int(dp)) for f, s, sp, d, dp in columns.itertuples(index=False)}


def _is_selected(connection: MatchedConnection, selected: set[tuple]) -> bool:
    for o in connection.observations:
        forward = (o.file, o.client_ip, o.client_port, o.server_ip, o.server_port)
        backward = (o.file, o.server_ip, o.server_port, o.client_ip, o.client_port)
        if forward in selected or backward in selected:
            return True
    return False


def _row(connection: MatchedConnection, inputs: SnatInputs, several_captures: bool) -> dict:
    first = connection.original
    row = {
        "client_ip": first.client_ip,
        "client_port": first.client_port,
        "server_ip": first.server_ip,
        "server_port": first.server_port,
        "original_src": "",
        "observed_src": "",
        "observed_sport": -1,
        "rewritten_by": "",
        "dnat": "",
        "observed_dst": "",
        "observed_dport": -1,
        "captures": " -> ".join(f"{o.file}" for o in connection.observations),
        "clock_offset_s": float("nan"),
        "fix": "",
        "_ts": first.first_ts,
    }
    if len(connection.observations) > 1:
        row.update(_across_captures(connection, inputs))
    else:
        row.update(_one_capture(first, inputs, several_captures))
    return row


def _across_captures(connection: MatchedConnection, inputs: SnatInputs) -> dict:
    """Compare the client-side view with the server-side view of one matched connection."""
    orig, seen = connection.original, connection.observed
    snat = orig.client_ip != seen.client_ip
    dnat = (orig.server_ip, orig.server_port) != (seen.server_ip, seen.server_port)
    where = _where_rewritten(connection, lambda o: o.client_ip) if snat else ""
    row = {
        "verdict": "snat" if snat else "preserved",
        "original_src": orig.client_ip,
        "observed_src": seen.client_ip,
        "observed_sport": seen.client_port,
        "observed_dst": seen.server_ip,
        "observed_dport": seen.server_port,
        "dnat": f"{orig.server_ip}:{orig.server_port} -> {seen.server_ip}:{seen.server_port}"
        if dnat
        else "",
        "clock_offset_s": seen.first_ts - orig.first_ts if seen.file != orig.file else 0.0,
        "evidence": f"same connection at {len(connection.observations)} points in "
        f"{len(connection.files)} capture(s), matched by " + ", ".join(connection.evidence),
    }
    facts = inputs.facts
    if snat:
        by = (
            facts.describe_node(seen.client_ip) if facts.is_node(seen.client_ip) else seen.client_ip
        )
        row["rewritten_by"] = f"{by}, {where}"
        row["explanation"] = (
            f"{facts.describe_source(orig.client_ip)} connected to {orig.server_ip}:{orig.server_port}; "
            f"{seen.server_ip}:{seen.server_port} saw the source as {seen.client_ip}:{seen.client_port}."
        )
    else:
        row["explanation"] = (
            f"{seen.server_ip}:{seen.server_port} saw the client's own address {orig.client_ip}."
        )
    if dnat:
        row["explanation"] += " " + _dnat_words(
            orig, seen, facts, _where_rewritten(connection, _server)
        )
    reason = _rules_reason(orig.client_ip, seen, dnat and snat, inputs)
    _merge_reason(row, reason, snat, seen.server_ip)
    return row


def _server(obs: Observation) -> tuple[str, int]:
    return obs.server_ip, obs.server_port


def _where_rewritten(connection: MatchedConnection, field_of) -> str:
    observations = connection.observations
    for before, after in zip(observations, observations[1:], strict=False):
        if field_of(before) == field_of(after):
            continue
        if before.file == after.file:
            return f"seen before and after the rewrite in {before.file}"
        return f"between {before.file} and {after.file}"
    return ""


def _dnat_words(orig: Observation, seen: Observation, facts: ClusterFacts, where: str) -> str:
    if facts.is_service(orig.server_ip):
        kind = "Service ClusterIP"
    elif facts.is_node(orig.server_ip) or 30000 <= orig.server_port <= 32767:
        kind = "NodePort"
    else:
        kind = "Destination"
    return (
        f"{kind} {orig.server_ip}:{orig.server_port} was DNATed to {seen.server_ip}:{seen.server_port} "
        f"({where}; kube-proxy's Service rules do this)."
    )


def _rules_reason(
    pod_ip: str, seen: Observation, service_masq: bool, inputs: SnatInputs
) -> Explanation | None:
    reason = explain(
        pod_ip, seen.server_ip, seen.server_port, inputs.facts, inputs.masq, inputs.rules
    )
    if service_masq and inputs.rules is not None and not reason.masquerades:
        # The Service chains marked the connection on the way in; walk again with that mark.
        marked = explain(
            pod_ip, seen.server_ip, seen.server_port, inputs.facts, inputs.masq, inputs.rules,
            mark=KUBE_PROXY_MASQ_MARK,
        )  # fmt: skip
        reason = marked if marked.masquerades else reason
    if service_masq and (reason is None or not reason.masquerades):
        # A connection that went through a Service and came out with a new source: kube-proxy
        # marked it (0x4000) in its Service chains and KUBE-POSTROUTING masqueraded it.
        return Explanation(
            True,
            "kube-proxy (KUBE-MARK-MASQ, KUBE-POSTROUTING)",
            "kube-proxy masquerades Service traffic that arrives from outside the cluster CIDR "
            "(NodePort/LoadBalancer with externalTrafficPolicy: Cluster), so the backend sees the node IP.",
            "To keep the client IP, set externalTrafficPolicy: Local on the Service: kubectl edit service <name>",
        )
    return reason


def _merge_reason(row: dict, reason: Explanation | None, snat: bool, dst: str) -> None:
    """Add what the rules say to a verdict the captures already decided."""
    if reason is None:
        if snat:
            row["explanation"] += (
                f" No node rules were given (--masq-config, --iptables), so the NonMasqueradeCIDRs "
                f"list {dst} was checked against is unknown; ip-masq-agent masquerades every "
                "destination not in it."
            )
            row["fix"] = (
                f"If the peer must see Pod IPs, add {dst}'s CIDR to NonMasqueradeCIDRs: "
                "kubectl -n kube-system edit configmap ip-masq-agent-config"
            )
        return
    if reason.evidence:
        row["evidence"] += "; " + reason.evidence
    if snat and reason.masquerades:
        row["explanation"] += " " + reason.explanation
        row["fix"] = reason.fix
        row["rewritten_by"] = f"{reason.rewritten_by}; {row['rewritten_by']}"
    elif snat:
        row["explanation"] += (
            f" The node's rules would keep the Pod IP ({reason.explanation}), so the rewrite "
            "happened beyond them (another node, a NAT gateway or a firewall)."
        )
    elif reason.masquerades:
        row["explanation"] += (
            f" The rules given would masquerade it ({reason.explanation}); they are not the rules "
            "of the node this connection left by, or they changed since."
        )
    else:
        row["explanation"] += " " + reason.explanation


def _one_capture(obs: Observation, inputs: SnatInputs, several_captures: bool) -> dict:
    """A connection only one capture saw: only facts (and rules) can say anything."""
    facts = inputs.facts
    row = {"observed_src": obs.client_ip, "observed_sport": obs.client_port}
    alone = "seen in one capture only" if several_captures else "single capture"
    if facts.is_node(obs.client_ip) and not facts.in_cluster(obs.server_ip):
        row.update(_snat_from_node_fact(obs, facts, inputs))
        row["evidence"] = (
            f"{alone}; facts: {obs.client_ip} is a node IP and {obs.server_ip} is outside the cluster"
        )
        return row
    if facts.is_pod(obs.client_ip):
        return row | _from_pod_client(obs, inputs, alone)
    row.update(
        verdict="unknown",
        evidence=f"{alone}; no facts place {obs.client_ip} on a node or in a pod CIDR",
        explanation=(
            f"Only one capture saw {obs.client_ip}:{obs.client_port} -> {obs.server_ip}:{obs.server_port}, "
            "and the facts given do not say whether that source is a Pod or a node; capture the same "
            "traffic at the Pod and at the peer, or give --pod-cidr/--node-ip."
        ),
    )
    return row


def _snat_from_node_fact(obs: Observation, facts: ClusterFacts, inputs: SnatInputs) -> dict:
    node = facts.describe_node(obs.client_ip)
    row = {
        "verdict": "snat",
        "rewritten_by": node,
        "explanation": (
            f"{obs.server_ip} is outside the cluster (pod CIDRs {', '.join(facts.pod_cidrs) or 'unknown'}) "
            f"and the connection arrives from {node}: the node masqueraded a Pod's traffic."
        ),
    }
    if inputs.masq is not None:
        row["explanation"] += (
            f" ip-masq-agent checks {obs.server_ip} against NonMasqueradeCIDRs ({inputs.masq.cidr_list_text()})."
        )
        if inputs.masq.decide(None, obs.server_ip).masquerade:
            row["fix"] = (
                f"To let the peer see Pod IPs, add {obs.server_ip}'s CIDR to NonMasqueradeCIDRs: "
                f"kubectl -n kube-system edit configmap {inputs.masq.configmap_name}"
            )
    return row


def _from_pod_client(obs: Observation, inputs: SnatInputs, alone: str) -> dict:
    facts = inputs.facts
    reason = explain(
        obs.client_ip, obs.server_ip, obs.server_port, facts, inputs.masq, inputs.rules
    )
    # Where was this taken? The sidecar says; else, when the rules masquerade this destination,
    # a packet still carrying the Pod IP was captured before the node's NAT.
    at_source = inputs.capture_pods.get(obs.file) == obs.client_ip or bool(
        reason and reason.masquerades
    )
    row: dict = {"original_src": obs.client_ip}
    if not at_source:
        row.update(
            verdict="preserved",
            evidence=f"{alone}; facts: client {obs.client_ip} is a Pod address ({facts.describe_source(obs.client_ip)})",
            explanation=f"{obs.server_ip} saw the Pod address {obs.client_ip} as the source.",
        )
        if reason is not None:
            row["explanation"] += " " + reason.explanation
        return row
    # Captured inside the client Pod: the peer's view is not in the captures; only rules can predict it.
    if inputs.capture_pods.get(obs.file) == obs.client_ip:
        row["evidence"] = f"{alone}, taken in the client Pod {obs.client_ip}"
    else:
        row["evidence"] = f"{alone}, taken before the node's NAT (it still shows the Pod IP)"
    if reason is None:
        row.update(
            verdict="unknown",
            explanation=(
                f"Captured in the client Pod, so it shows the Pod IP before any NAT; whether {obs.server_ip} "
                "sees it needs a capture at the peer, or the node's rules (--masq-config, --iptables)."
            ),
        )
        return row
    row.update(
        verdict="snat" if reason.masquerades else "preserved",
        rewritten_by=reason.rewritten_by,
        explanation="Predicted from the node's rules: " + reason.explanation,
        fix=reason.fix,
    )
    row["evidence"] += "; " + reason.evidence
    return row
