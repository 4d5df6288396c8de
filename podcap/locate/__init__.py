"""Kubernetes targets: which Pods, on which nodes, in which containers.

The only module that imports the ``kubernetes`` client for reading the cluster. It turns what
the user typed (``web-0``, ``pod/web-0``, ``deploy/web``, ``-l app=web``, ``-n``/``-A``,
``-c``) into :class:`PodTarget` records that carry everything a node-side capture needs
(node, container ID and runtime) and the facts ``podcap analyze`` uses to explain SNAT
offline (Pod IPs, node InternalIP, pod CIDRs, ip-masq-agent configuration).

Every API failure becomes a one-line :class:`~podcap.errors.LocateError`: not found, not
running, container not started, Windows node, and RBAC denials that name the verb and the
resource, so the user knows which Role rule is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from podcap.errors import LocateError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
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
IP_MASQ_CONFIGMAPS = ("ip-masq-agent-config", "ip-masq-agent")


# --- connecting ---------------------------------------------------------------------------


@dataclass
class Kube:
    """A loaded client configuration. ``api()`` gives a fresh ApiClient per thread/stream,
    because the client is not safe to share between a running exec and REST calls
    (kubernetes-client/python#928)."""

    configuration: client.Configuration
    default_namespace: str
    source: str

    def api(self) -> client.ApiClient:
        return client.ApiClient(self.configuration)

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api())


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """Load credentials: ``--kubeconfig``, then ``$KUBECONFIG``, then ``~/.kube/config``,
    then the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    configuration = client.Configuration()
    first_file = path.split(os.pathsep)[0]
    if kubeconfig or os.environ.get("KUBECONFIG") or Path(first_file).exists():
        return _from_kubeconfig(path, context, configuration)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise LocateError(f"in-cluster configuration unusable: {exc}") from exc
        namespace = (
            IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else "default"
        )
        return Kube(configuration, namespace, "in-cluster service account")
    raise LocateError(
        "no Kubernetes configuration: no kubeconfig at ~/.kube/config and not inside a cluster",
        hint="pass --kubeconfig or set KUBECONFIG",
    )


def _from_kubeconfig(path: str, context: str | None, configuration) -> Kube:
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise LocateError(f"cannot load kubeconfig {path}: {exc}") from exc
    if context:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return Kube(configuration, namespace, f"kubeconfig {path}")


# --- turning API failures into one line ---------------------------------------------------


def api_error(exc: Exception, verb: str, resource: str, namespace: str | None, name: str = ""):
    """The LocateError for a failed call ``verb resource/name`` in ``namespace``."""
    where = f" in namespace {namespace}" if namespace else ""
    what = f"{resource} {name}".strip()
    if isinstance(exc, ApiException):
        if exc.status == 403:
            return LocateError(
                f"RBAC denied: cannot {verb} {resource}{where} (need '{verb}' on '{resource}')"
            )
        if exc.status == 404:
            return LocateError(f"{what} not found{where}")
        if exc.status == 401:
            return LocateError("the API server rejected the credentials (401 Unauthorized)")
        return LocateError(f"{verb} {what}{where} failed: {exc.status} {exc.reason or ''}".rstrip())
    return LocateError(f"cannot reach the Kubernetes API server: {exc}")


def call(fn, verb: str, resource: str, namespace: str | None, name: str = "", /, **kwargs):
    """Call one API method, mapping its failures to LocateError."""
    try:
        return fn(**kwargs)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise api_error(exc, verb, resource, namespace, name) from exc


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
    )


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


# --- pre-flight ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    namespace: str | None
    subresource: str = ""
    name: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.verb} {resource}{where}"


def helper_permissions(helper_namespace: str, targets: list[PodTarget]) -> list[Permission]:
    """What a helper-Pod capture needs: create/get/delete Pods and pods/exec in the helper
    namespace, get the target Pods."""
    needed = [
        Permission("create", "pods", helper_namespace),
        Permission("get", "pods", helper_namespace),
        Permission("delete", "pods", helper_namespace),
        # A WebSocket exec is a GET ("get pods/exec" on 1.30); clusters with
        # AuthorizePodWebsocketUpgradeCreatePermission (1.35+) also require "create".
        Permission("get", "pods", helper_namespace, subresource="exec"),
        Permission("create", "pods", helper_namespace, subresource="exec"),
    ]
    for namespace in sorted({t.namespace for t in targets}):
        needed.append(Permission("get", "pods", namespace))
    return needed


PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


def check_helper_namespace(kube: Kube, namespace: str, capabilities_only: bool) -> None:
    """The helper namespace must exist, and its Pod Security Admission level must admit a
    hostPID, privileged (or capability-adding) Pod: only ``privileged`` does. A namespace we
    may not read is left for the create call to judge."""
    core = kube.core()
    try:
        found = core.read_namespace(namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise LocateError(
                f"helper namespace {namespace} does not exist",
                hint=f"kubectl create namespace {namespace} && kubectl label namespace "
                f"{namespace} {PSA_ENFORCE}=privileged, or pass --helper-namespace",
            ) from exc
        if exc.status == 403:
            return
        raise api_error(exc, "get", "namespaces", None, namespace) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise api_error(exc, "get", "namespaces", None, namespace) from exc
    level = (found.metadata.labels or {}).get(PSA_ENFORCE, "privileged")
    if level != "privileged":
        kind = "capability-adding" if capabilities_only else "privileged"
        raise LocateError(
            f"helper namespace {namespace} enforces Pod Security '{level}', which rejects the "
            f"{kind} hostPID helper",
            hint=f"label it {PSA_ENFORCE}=privileged or pass --helper-namespace",
        )


def check_access(kube: Kube, needed: list[Permission]) -> None:
    """Ask the API server (SelfSubjectAccessReview) whether each permission is granted, and
    raise one LocateError listing every missing one."""
    api = client.AuthorizationV1Api(kube.api())
    missing = [p for p in needed if not _allowed(api, p)]
    if missing:
        raise LocateError(
            "RBAC denied: you may not " + "; ".join(str(p) for p in missing),
            hint="ask for a Role granting these, or use --via ssh/local",
        )


def _allowed(api, permission: Permission) -> bool:
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=permission.verb,
                resource=permission.resource,
                subresource=permission.subresource or None,
                namespace=permission.namespace,
                name=permission.name or None,
            )
        )
    )
    result = call(
        api.create_self_subject_access_review,
        "create",
        "selfsubjectaccessreviews.authorization.k8s.io",
        None,
        body=review,
    )
    return bool(result.status and result.status.allowed)


# --- cluster facts for SNAT analysis --------------------------------------------------------


def cluster_facts(kube: Kube) -> dict:
    """ip-masq-agent configuration and service CIDR, when readable (else None: a missing
    ConfigMap or a denied read is normal and not an error)."""
    core = kube.core()
    return {"ip_masq_agent": ip_masq_agent(core), "service_cidr": service_cidr(core)}


def _read_configmap(core, name: str, namespace: str = "kube-system"):
    try:
        return core.read_namespaced_config_map(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise api_error(exc, "get", "configmaps", namespace, name) from exc


def ip_masq_agent(core) -> dict | None:
    """The ip-masq-agent ConfigMap (``kube-system/ip-masq-agent-config`` or ``ip-masq-agent``):
    which destinations are NOT masqueraded (``nonMasqueradeCIDRs``)."""
    for name in IP_MASQ_CONFIGMAPS:
        cm = _read_configmap(core, name)
        if cm is None or not cm.data:
            continue
        text = cm.data.get("config") or next(iter(cm.data.values()))
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        return {"configmap": f"kube-system/{name}", "config": parsed, "raw": text}
    return None


def service_cidr(core) -> str | None:
    """The Service CIDR from kubeadm's ClusterConfiguration, where the cluster has one."""
    cm = _read_configmap(core, "kubeadm-config")
    if cm is None or not cm.data or "ClusterConfiguration" not in cm.data:
        return None
    try:
        cluster = yaml.safe_load(cm.data["ClusterConfiguration"]) or {}
    except yaml.YAMLError:
        return None
    return (cluster.get("networking") or {}).get("serviceSubnet")
