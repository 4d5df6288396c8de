"""Which Pods, on which nodes, in which containers: what the user typed -> PodTarget records.

``web-0``, ``pod/web-0``, ``deploy/web``, ``-l app=web``, ``-n``/``-A`` and ``-c`` become
:class:`PodTarget` records that carry everything a node-side capture needs (node, container ID
and runtime) and the facts ``podcap analyze`` uses to explain SNAT offline (Pod IPs, node
InternalIP, pod CIDRs). Not found, not running, container not started and Windows nodes are
each one LocateError line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes import client

from podcap.errors import LocateError
from podcap.locate.kube import Kube, call

WORKLOAD_KINDS = {
    "deploy": "deployments",
    "deployment": "deployments",
    "deployments": "deployments",
    "sts": "statefulsets",
    "statefulset": "statefulsets",
    "statefulsets": "statefulsets",
    "ds": "daemonsets",
    "daemonset": "daemonsets",
    "daemonsets": "daemonsets",
}
READERS = {
    "deployments": "read_namespaced_deployment",
    "statefulsets": "read_namespaced_stateful_set",
    "daemonsets": "read_namespaced_daemon_set",
}
POD_KINDS = {"pod", "pods", "po"}


# --- what we learn --------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFacts:
    name: str
    internal_ip: str | None
    pod_cidrs: tuple[str, ...]
    os: str
    os_image: str
    kernel: str
    runtime_version: str
    architecture: str

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "internal_ip": self.internal_ip,
            "pod_cidrs": list(self.pod_cidrs),
            "os": self.os,
            "os_image": self.os_image,
            "kernel": self.kernel,
            "runtime_version": self.runtime_version,
            "architecture": self.architecture,
        }


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    uid: str
    node: NodeFacts
    host_ip: str | None
    pod_ips: tuple[str, ...]
    container: str
    container_id: str  # as the API gives it, e.g. containerd://0123...
    host_network: bool
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    # The TCP ports its containers declare (spec.containers[].ports), first the entered one's.
    ports: tuple[int, ...] = ()

    @property
    def runtime(self) -> str:
        return self.container_id.split("://", 1)[0] if "://" in self.container_id else ""

    @property
    def key(self) -> str:
        """``NAMESPACE_POD``: the capture file's name without extension."""
        return f"{self.namespace}_{self.name}"

    def facts(self) -> dict:
        """What the capture sidecar records about this Pod."""
        return {
            "namespace": self.namespace,
            "pod": self.name,
            "uid": self.uid,
            "container": self.container,
            "container_id": self.container_id,
            "runtime": self.runtime,
            "pod_ips": list(self.pod_ips),
            "host_ip": self.host_ip,
            "host_network": self.host_network,
            "node": self.node.as_dict(),
        }


@dataclass
class TargetQuery:
    """What the user asked for on the command line."""

    names: list[str] = field(default_factory=list)
    namespace: str | None = None
    all_namespaces: bool = False
    selector: str | None = None
    container: str | None = None


@dataclass
class Resolution:
    targets: list[PodTarget]
    warnings: list[str]


# --- resolving ----------------------------------------------------------------------------


def resolve(kube: Kube, query: TargetQuery) -> Resolution:
    """Find the Pods the query names, check they can be captured, and describe them."""
    if not query.names and not query.selector:
        raise LocateError("no target: name a Pod, a workload (deploy/NAME) or pass -l SELECTOR")
    if query.all_namespaces and query.names:
        raise LocateError("-A (all namespaces) goes with -l SELECTOR, not with Pod names")
    namespace = query.namespace or kube.default_namespace
    core = kube.core()
    warnings: list[str] = []
    pods: list = []
    for name in query.names:
        pods.extend(_pods_for_name(kube, core, name, namespace, warnings))
    if query.selector:
        pods.extend(
            _pods_for_selector(core, query.selector, namespace, query.all_namespaces, warnings)
        )
    unique = {(p.metadata.namespace, p.metadata.name): p for p in pods}
    nodes: dict[str, NodeFacts] = {}
    targets = []
    for pod in unique.values():
        target = _target(core, pod, query.container, nodes)
        if target.host_network:
            warnings.append(
                f"pod {target.namespace}/{target.name} uses hostNetwork: its network namespace is "
                f"the node's, so the capture sees all of node {target.node.name}'s traffic"
            )
        targets.append(target)
    return Resolution(targets, warnings)


def _pods_for_name(kube: Kube, core, name: str, namespace: str, warnings: list[str]) -> list:
    kind, _, bare = name.rpartition("/")
    kind = kind.lower()
    if not kind or kind in POD_KINDS:
        pod = call(
            core.read_namespaced_pod, "get", "pods", namespace, bare, name=bare, namespace=namespace
        )
        return [pod]
    if kind not in WORKLOAD_KINDS:
        raise LocateError(f"unknown kind '{kind}' in {name}: use pod/, deploy/, sts/ or ds/")
    plural = WORKLOAD_KINDS[kind]
    apps = client.AppsV1Api(kube.api())
    reader = getattr(apps, READERS[plural])
    workload = call(
        reader, "get", f"{plural}.apps", namespace, bare, name=bare, namespace=namespace
    )
    selector = selector_string(workload.spec.selector)
    pods = _pods_for_selector(core, selector, namespace, False, warnings)
    if not pods:
        raise LocateError(f"{plural[:-1]} {namespace}/{bare} has no running Pods")
    return pods


def _pods_for_selector(core, selector: str, namespace: str, everywhere: bool, warnings) -> list:
    if everywhere:
        found = call(
            core.list_pod_for_all_namespaces, "list", "pods", None, label_selector=selector
        )
    else:
        found = call(
            core.list_namespaced_pod,
            "list",
            "pods",
            namespace,
            namespace=namespace,
            label_selector=selector,
        )
    running = [p for p in found.items if p.status and p.status.phase == "Running"]
    for pod in found.items:
        if pod not in running:
            warnings.append(
                f"skipping pod {pod.metadata.namespace}/{pod.metadata.name}: "
                f"{pod.status.phase if pod.status else 'unknown'}"
            )
    where = "in any namespace" if everywhere else f"in namespace {namespace}"
    if not running:
        raise LocateError(f"no running Pod matches selector '{selector}' {where}")
    return running


def selector_string(selector) -> str:
    """A LabelSelector object as the ``labelSelector`` query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or []:
        values = ",".join(expr.values or [])
        parts.append(
            {
                "In": f"{expr.key} in ({values})",
                "NotIn": f"{expr.key} notin ({values})",
                "Exists": expr.key,
                "DoesNotExist": f"!{expr.key}",
            }[expr.operator]
        )
    if not parts:
        raise LocateError("the workload's selector is empty: it would match every Pod")
    return ",".join(parts)


def _target(core, pod, container: str | None, nodes: dict[str, NodeFacts]) -> PodTarget:
    where = f"{pod.metadata.namespace}/{pod.metadata.name}"
    phase = pod.status.phase if pod.status else None
    if phase != "Running":
        reason = f": {pod.status.reason}" if pod.status and pod.status.reason else ""
        raise LocateError(f"pod {where} is not running (phase {phase}{reason})")
    node_name = pod.spec.node_name
    if node_name not in nodes:
        nodes[node_name] = node_facts(core, node_name)
    node = nodes[node_name]
    if node.os == "windows":
        raise LocateError(
            f"pod {where} runs on Windows node {node_name}: podcap captures on Linux nodes only"
        )
    name, container_id = _pick_container(pod, container, where)
    return PodTarget(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=pod.metadata.uid,
        node=node,
        host_ip=pod.status.host_ip,
        pod_ips=_pod_ips(pod.status),
        container=name,
        container_id=container_id,
        host_network=bool(pod.spec.host_network),
        labels=dict(pod.metadata.labels or {}),
        ports=_declared_ports(pod, name),
    )


def _declared_ports(pod, entered: str) -> tuple[int, ...]:
    """The TCP containerPorts of the Pod, the entered container's first."""
    containers = sorted(pod.spec.containers, key=lambda c: c.name != entered)
    ports = [
        port.container_port
        for container in containers
        for port in container.ports or []
        if (port.protocol or "TCP") == "TCP"
    ]
    return tuple(dict.fromkeys(ports))


def _pod_ips(status) -> tuple[str, ...]:
    """``status.podIPs`` (dual-stack: one per family), else the older single ``podIP``."""
    if status.pod_ips:
        return tuple(entry.ip for entry in status.pod_ips)
    return (status.pod_ip,) if status.pod_ip else ()


def _pick_container(pod, wanted: str | None, where: str) -> tuple[str, str]:
    """The container to enter: ``-c NAME`` or the first running one. All containers of a Pod
    share its network namespace, so any running one will do."""
    statuses = {s.name: s for s in (pod.status.container_statuses or [])}
    names = [c.name for c in pod.spec.containers]
    if wanted and wanted not in names:
        raise LocateError(f"pod {where} has no container {wanted} (it has: {', '.join(names)})")
    for name in [wanted] if wanted else names:
        status = statuses.get(name)
        if status and status.state and status.state.running and status.container_id:
            return name, status.container_id
    if wanted:
        status = statuses.get(wanted)
        waiting = status.state.waiting if status and status.state else None
        why = f" (waiting: {waiting.reason})" if waiting and waiting.reason else ""
        raise LocateError(f"container {wanted} of pod {where} has not started{why}")
    raise LocateError(f"no container of pod {where} has started yet")


def node_facts(core, name: str) -> NodeFacts:
    node = call(core.read_node, "get", "nodes", None, name, name=name)
    info = node.status.node_info
    addresses = node.status.addresses or []
    internal = next((a.address for a in addresses if a.type == "InternalIP"), None)
    cidrs = tuple(node.spec.pod_cidrs or ([node.spec.pod_cidr] if node.spec.pod_cidr else []))
    return NodeFacts(
        name=name,
        internal_ip=internal,
        pod_cidrs=cidrs,
        os=info.operating_system if info else "linux",
        os_image=info.os_image if info else "",
        kernel=info.kernel_version if info else "",
        runtime_version=info.container_runtime_version if info else "",
        architecture=info.architecture if info else "",
    )
