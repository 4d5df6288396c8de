"""Locate: Kubernetes targets, RBAC pre-flight, cluster facts; the only reader of the API.

The only package that imports the ``kubernetes`` client for reading the cluster:

- :mod:`.kube`: ``connect`` (kubeconfig or in-cluster) and API failures as one line;
- :mod:`.targets`: what the user typed (``web-0``, ``deploy/web``, ``-l app=web``, ``-n``/``-A``,
  ``-c``) -> :class:`PodTarget` records with everything a node-side capture needs (node,
  container ID and runtime) and the facts SNAT analysis uses (Pod IPs, node InternalIP, pod
  CIDRs);
- :mod:`.access`: may the user run helper Pods (SelfSubjectAccessReview), will the helper
  namespace's Pod Security level admit them;
- :mod:`.facts`: the ip-masq-agent configuration and the Service CIDR.

Every API failure becomes a one-line :class:`~podcap.errors.LocateError`: not found, not
running, container not started, Windows node, and RBAC denials that name the verb and the
resource, so the user knows which Role rule is missing.
"""

from podcap.locate.access import (
    PSA_ENFORCE,
    Permission,
    access_report,
    check_access,
    check_helper_namespace,
    ephemeral_permissions,
    helper_permissions,
)
from podcap.locate.facts import cluster_facts, ip_masq_agent, service_cidr
from podcap.locate.kube import Kube, api_error, call, connect
from podcap.locate.services import ServiceFacts, is_service, read_service
from podcap.locate.targets import (
    WORKLOAD_KINDS,
    NodeFacts,
    PodTarget,
    Resolution,
    TargetQuery,
    node_facts,
    resolve,
    selector_string,
)

__all__ = [
    "WORKLOAD_KINDS",
    "ServiceFacts",
    "is_service",
    "read_service",
    "PSA_ENFORCE",
    "Kube",
    "NodeFacts",
    "Permission",
    "PodTarget",
    "Resolution",
    "TargetQuery",
    "api_error",
    "call",
    "access_report",
    "check_access",
    "check_helper_namespace",
    "cluster_facts",
    "connect",
    "ephemeral_permissions",
    "helper_permissions",
    "ip_masq_agent",
    "node_facts",
    "resolve",
    "selector_string",
    "service_cidr",
]
