"""Kubernetes targets -> one helper Pod per node: the plan, its dry run and its pre-flight.

- :func:`plan` resolves what the user named (podcap.locate) and builds one helper manifest per
  node (podcap.reach.pod);
- :func:`dry_run_yaml` prints that plan without any write to the API;
- :func:`preflight` checks the helper namespace, asks the API server whether the user may do
  what the plan needs, and has it admit each helper in a server-side dry run.

``podcap capture``, ``netns`` and ``inspect`` start from here; podcap.capture.pods runs the
captures of a plan.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import yaml

from podcap import locate
from podcap.reach import pod as helper


@dataclass
class Plan:
    targets: list[locate.PodTarget]
    warnings: list[str]
    spec: helper.HelperSpec
    manifests: dict[str, dict]  # node name -> helper Pod manifest

    def targets_on(self, node: str) -> list[locate.PodTarget]:
        return [t for t in self.targets if t.node.name == node]


def containers_by_node(targets: list[locate.PodTarget]) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = defaultdict(list)
    for target in targets:
        by_node[target.node.name].append(target.container_id)
    return dict(by_node)


def targets_by_node(targets: list[locate.PodTarget]) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = defaultdict(list)
    for target in targets:
        by_node[target.node.name].append(f"{target.namespace}/{target.name}")
    return dict(by_node)


def plan(kube: locate.Kube, query: locate.TargetQuery, spec: helper.HelperSpec) -> Plan:
    """Resolve the targets and group them by node: one helper per node."""
    resolution = locate.resolve(kube, query)
    return plan_for(resolution.targets, resolution.warnings, spec)


def plan_for(targets: list[locate.PodTarget], warnings: list[str], spec) -> Plan:
    """The plan of ``targets`` already resolved: one helper per node they are on."""
    by_node, names = containers_by_node(targets), targets_by_node(targets)
    manifests = {
        node: helper.helper_manifest(spec, node, ids, names[node])
        for node, ids in sorted(by_node.items())
    }
    return Plan(list(targets), list(warnings), spec, manifests)


def dry_run_yaml(the_plan: Plan) -> str:
    """The helper Pods the plan would create, as a YAML stream (``kubectl apply -f`` ready),
    each preceded by a comment naming the Pods it would capture."""
    documents = []
    for node, manifest in the_plan.manifests.items():
        pods = ", ".join(f"{t.namespace}/{t.name}" for t in the_plan.targets_on(node))
        body = yaml.safe_dump(manifest, sort_keys=False)
        documents.append(f"# helper for node {node}: captures {pods}\n{body}")
    return "---\n".join(documents)


def ephemeral_yaml(the_plan: Plan) -> str:
    """``--ephemeral --dry-run``: the patch of each Pod's ephemeralcontainers, as YAML."""
    from podcap.reach.pod.ephemeral import ephemeral_container

    documents = []
    for target in the_plan.targets:
        patch = {"spec": {"ephemeralContainers": [
            ephemeral_container(the_plan.spec, target.container)]}}  # fmt: skip
        body = yaml.safe_dump(patch, sort_keys=False)
        documents.append(f"# pods/ephemeralcontainers of {target.namespace}/{target.name}\n{body}")
    return "---\n".join(documents)


def preflight(kube: locate.Kube, the_plan: Plan) -> None:
    """Before creating anything: the helper namespace exists and its PodSecurity level admits
    the helper, (SelfSubjectAccessReview) the user has every permission the helpers need (one
    error lists all that are missing), and the API server admits each helper in a server-side
    dry run (a cluster-wide PodSecurity default, a quota, a webhook say no here)."""
    locate.check_helper_namespace(kube, the_plan.spec.namespace, the_plan.spec.capabilities_only)
    locate.check_access(kube, locate.helper_permissions(the_plan.spec.namespace, the_plan.targets))
    admitted(kube, the_plan)


def admitted(kube: locate.Kube, the_plan: Plan) -> None:
    """Each helper created with ``dryRun=All``: ReachError with the API server's own reason
    when admission would refuse it; nothing is stored either way."""
    for manifest in the_plan.manifests.values():
        helper.HelperPod(kube, manifest).create(dry_run=True)


def check_report(
    kube: locate.Kube, the_plan: Plan, ephemeral: bool = False
) -> list[tuple[str, str | None]]:
    """What ``preflight`` checks, each answered instead of the first failure raised:
    ``(what, None)`` when it holds, ``(what, why not)`` when it does not. ``ephemeral``: the
    permissions of ``--ephemeral`` instead (no helper, so no helper namespace to check)."""
    from podcap.errors import LocateError, PodcapError

    if ephemeral:
        answers = locate.access_report(kube, locate.ephemeral_permissions(the_plan.targets))
        return [(f"may {p}", None if allowed else "denied") for p, allowed in answers]
    namespace = the_plan.spec.namespace
    lines: list[tuple[str, str | None]] = []
    try:
        locate.check_helper_namespace(kube, namespace, the_plan.spec.capabilities_only)
        lines.append((f"helper namespace {namespace} admits the helper", None))
    except LocateError as exc:
        lines.append((f"helper namespace {namespace} admits the helper", str(exc)))
    for permission, allowed in locate.access_report(
        kube, locate.helper_permissions(namespace, the_plan.targets)
    ):
        lines.append((f"may {permission}", None if allowed else "denied"))
    try:
        admitted(kube, the_plan)
        lines.append(("the API server admits the helpers (server-side dry run)", None))
    except PodcapError as exc:
        lines.append(("the API server admits the helpers (server-side dry run)", str(exc)))
    return lines


def cluster_facts_for_sidecar(target: locate.PodTarget, facts: dict) -> dict:
    """The sidecar's ``cluster`` section for one Pod: its own facts plus the cluster-wide ones
    (``facts`` from :func:`podcap.locate.cluster_facts`, read once per session)."""
    return {
        "source": "kubernetes",
        "pod": target.facts(),
        "pod_ip": target.pod_ips[0] if target.pod_ips else None,
        "node_ip": target.node.internal_ip or target.host_ip,
        "pod_cidrs": list(target.node.pod_cidrs),
        "service_cidr": facts.get("service_cidr"),
        "ip_masq_agent": facts.get("ip_masq_agent"),
    }
