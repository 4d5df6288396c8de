"""An in-test Kubernetes API server that the real ``kubernetes`` client talks to.

No kube-apiserver can be installed on the test machines, so this module serves the part of
the API podcap uses, over HTTPS with a bearer token, shaped like a Kubernetes 1.30 server:
Pods, Nodes, ConfigMaps, Namespaces, Deployments/StatefulSets/DaemonSets (read), list with
``labelSelector``/``fieldSelector``, Pod create/delete, SelfSubjectAccessReview, ``Status``
objects for 403/404, and ``pods/exec`` over the WebSocket ``v4.channel.k8s.io`` /
``v5.channel.k8s.io`` protocols. An exec runs its command ON THIS MACHINE (the machine plays
every node, as root), so a helper Pod's ``nsenter`` reaches the lab's Pod namespaces for real.

Every request is recorded in ``cluster.requests`` (method, path), so tests can prove that a
dry run sent no write.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import fcntl
import hashlib
import http.server
import json
import os
import pty
import re
import signal
import socket
import ssl
import struct
import subprocess
import termios
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

USER = "podcap-test"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
V4 = "v4.channel.k8s.io"
V5 = "v5.channel.k8s.io"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- objects shaped like a 1.30 cluster's -------------------------------------------------


def node_object(name: str, internal_ip: str, pod_cidr: str, os_name: str = "linux") -> dict:
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "1000",
            "creationTimestamp": now(),
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": os_name,
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": os_name,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": internal_ip},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": "2", "memory": "4026180Ki", "pods": "110"},
            "allocatable": {"cpu": "2", "memory": "3923780Ki", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": now(),
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": str(uuid.uuid4()),
                "containerRuntimeVersion": "containerd://1.7.13",
                "kernelVersion": os.uname().release,
                "kubeProxyVersion": "v1.30.2",
                "kubeletVersion": "v1.30.2",
                "machineID": uuid.uuid4().hex,
                "operatingSystem": os_name,
                "osImage": "Debian GNU/Linux 12 (bookworm)"
                if os_name == "linux"
                else "Windows Server 2022 Datacenter",
                "systemUUID": str(uuid.uuid4()),
            },
        },
    }


def pod_object(
    namespace: str,
    name: str,
    node: str,
    host_ip: str,
    pod_ip: str | None,
    container_id: str | None,
    labels: dict[str, str] | None = None,
    uid: str | None = None,
    phase: str = "Running",
    containers: tuple[str, ...] = ("app",),
    host_network: bool = False,
    ports: tuple[int, ...] = (),
) -> dict:
    """A Pod as a 1.30 API server returns it; only the first container gets ``container_id``."""
    started = now()
    statuses = []
    for index, cname in enumerate(containers):
        running = phase == "Running" and index == 0 and container_id is not None
        statuses.append(
            {
                "name": cname,
                "image": "docker.io/library/nginx:1.27",
                "imageID": "docker.io/library/nginx@sha256:" + "ab" * 32,
                "containerID": container_id if running else None,
                "ready": running,
                "restartCount": 0,
                "started": running,
                "lastState": {},
                "state": {"running": {"startedAt": started}}
                if running
                else {"waiting": {"reason": "ContainerCreating"}},
            }
        )
    status: dict = {
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            {
                "type": "Ready",
                "status": "True" if phase == "Running" else "False",
                "lastTransitionTime": started,
            },
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": started,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "resourceVersion": "2000",
            "creationTimestamp": started,
            "labels": dict(labels or {}),
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [
                {"name": c, "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent"}
                | (
                    {"ports": [{"containerPort": p, "protocol": "TCP"} for p in ports]}
                    if ports and i == 0
                    else {}
                )
                for i, c in enumerate(containers)
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
        },
        "status": status,
    }


def service_object(
    namespace: str,
    name: str,
    cluster_ip: str,
    ports: list[tuple[int, int]],
    selector: dict[str, str],
    node_port: int | None = None,
) -> dict:
    """A ClusterIP (or NodePort) Service as a 1.30 API server returns it."""
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()),
                     "resourceVersion": "4000", "creationTimestamp": now()},
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "selector": dict(selector),
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ports": [
                {"name": f"p{port}", "protocol": "TCP", "port": port, "targetPort": target}
                | ({"nodePort": node_port} if node_port else {})
                for port, target in ports
            ],
        },
        "status": {"loadBalancer": {}},
    }  # fmt: skip


def workload_object(
    kind: str, namespace: str, name: str, match_labels: dict[str, str], replicas: int = 2
) -> dict:
    return {
        "kind": kind,
        "apiVersion": "apps/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "3000",
            "creationTimestamp": now(),
            "generation": 1,
        },
        "spec": {
            "selector": {"matchLabels": dict(match_labels)},
            "template": {
                "metadata": {"labels": dict(match_labels)},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
            **({"serviceName": name} if kind == "StatefulSet" else {}),
            **({} if kind == "DaemonSet" else {"replicas": replicas}),
        },
        "status": {
            "DaemonSet": {
                "currentNumberScheduled": replicas,
                "desiredNumberScheduled": replicas,
                "numberMisscheduled": 0,
                "numberReady": replicas,
                "observedGeneration": 1,
            },
            "StatefulSet": {
                "replicas": replicas,
                "readyReplicas": replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "observedGeneration": 1,
            },
        }.get(
            kind,
            {
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "observedGeneration": 1,
            },
        ),
    }


def configmap_object(namespace: str, name: str, data: dict[str, str]) -> dict:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "4000",
            "creationTimestamp": now(),
        },
        "data": dict(data),
    }


def namespace_object(name: str) -> dict:
    return {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "5000",
            "creationTimestamp": now(),
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


# --- selectors ---------------------------------------------------------------------------


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """The label selector grammar of the API server: =, ==, !=, in, notin, exists, !exists."""
    for req in _split_requirements(selector or ""):
        set_match = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", req)
        if set_match:
            key, op, values = set_match.groups()
            allowed = {v.strip() for v in values.split(",")}
            inside = labels.get(key) in allowed
            if inside != (op == "in"):
                return False
        elif "!=" in req:
            key, value = (s.strip() for s in req.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in req:
            key, value = (s.strip() for s in req.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif req.startswith("!"):
            if req[1:].strip() in labels:
                return False
        elif req not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: dict) -> bool:
    paths = {
        "metadata.name": obj["metadata"].get("name"),
        "metadata.namespace": obj["metadata"].get("namespace"),
        "spec.nodeName": obj.get("spec", {}).get("nodeName"),
        "status.phase": obj.get("status", {}).get("phase"),
    }
    for req in _split_requirements(selector or ""):
        negate = "!=" in req
        key, value = (s.strip() for s in re.split(r"!=|==|=", req, maxsplit=1))
        if (paths.get(key) == value) == negate:
            return False
    return True


# --- the cluster state -------------------------------------------------------------------


@dataclass
class Exec:
    """One exec session the server ran: for assertions on what a helper did."""

    pod: str
    command: list[str]
    protocol: str
    process: subprocess.Popen
    stdin_closed: bool = False
    stderr: bytearray = field(default_factory=bytearray)  # a copy of what went to the client


@dataclass
class Cluster:
    """What the server serves. Tests mutate it directly (under ``lock``)."""

    nodes: dict[str, dict] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict] = field(default_factory=dict)
    configmaps: dict[tuple[str, str], dict] = field(default_factory=dict)
    services: dict[tuple[str, str], dict] = field(default_factory=dict)
    namespaces: dict[str, dict] = field(default_factory=dict)
    workloads: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    # (verb, resource, namespace or "*"), e.g. ("create", "pods/exec", "podcap-system").
    denied: set[tuple[str, str, str]] = field(default_factory=set)
    # Subprotocols the server accepts, in its order of preference.
    exec_protocols: tuple[str, ...] = (V5, V4)
    # Seconds a created Pod stays Pending before it runs (a kubelet pulling the image).
    start_delay: float = 0.3
    # Forward at most this many stdout bytes per exec (a stream whose tail got lost).
    stdout_limit: int | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)
    execs: list[Exec] = field(default_factory=list)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    patches: list[tuple[str, str, dict]] = field(default_factory=list)  # (ns, name, patch)
    # Admission: the Pod Security level of a namespace without the enforce label (a real
    # cluster's AdmissionConfiguration default), and refusals by namespace: (HTTP code, message
    # with {name}), as a quota or a validating webhook answers.
    pod_security_default: str = "privileged"
    admission_refusals: dict[str, tuple[int, str]] = field(default_factory=dict)
    dry_runs: list[tuple[str, str]] = field(default_factory=list)  # (ns, name) created dry
    # The lab's network namespace of each Pod: an ephemeral container's processes run there.
    pod_netns: dict[tuple[str, str], str] = field(default_factory=dict)
    ephemeral: list[subprocess.Popen] = field(default_factory=list)  # their main processes
    lock: threading.RLock = field(default_factory=threading.RLock)
    _rv: int = 10000

    def next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def add_namespace(self, name: str) -> None:
        self.namespaces.setdefault(name, namespace_object(name))

    def add_node(self, name: str, ip: str, pod_cidr: str, os_name: str = "linux") -> dict:
        self.nodes[name] = node_object(name, ip, pod_cidr, os_name)
        return self.nodes[name]

    def add_pod(self, pod: dict) -> dict:
        meta = pod["metadata"]
        self.add_namespace(meta["namespace"])
        self.pods[(meta["namespace"], meta["name"])] = pod
        return pod

    def add_workload(self, kind: str, namespace: str, name: str, labels: dict[str, str]) -> None:
        plural = {"Deployment": "deployments", "StatefulSet": "statefulsets"}.get(
            kind, "daemonsets"
        )
        self.workloads[(plural, namespace, name)] = workload_object(kind, namespace, name, labels)

    def add_service(self, service: dict) -> None:
        meta = service["metadata"]
        with self.lock:
            self.services[(meta["namespace"], meta["name"])] = service

    def add_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.add_namespace(namespace)
        self.configmaps[(namespace, name)] = configmap_object(namespace, name, data)

    def allowed(self, verb: str, resource: str, namespace: str | None) -> bool:
        return not any(
            v == verb and r == resource and ns in ("*", namespace or "") for v, r, ns in self.denied
        )

    def helper_pods(self) -> list[dict]:
        return [
            p
            for p in self.pods.values()
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "podcap"
        ]

    def age_helpers(self, seconds: float) -> None:
        """Make every helper Pod as old as a leftover: created (and last annotated) ``seconds``
        ago, so ``podcap cleanup`` sees no live capture behind it."""
        then = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        with self.lock:
            for pod in self.helper_pods():
                pod["metadata"]["creationTimestamp"] = then
                if "podcap.io/heartbeat" in pod["metadata"].get("annotations", {}):
                    pod["metadata"]["annotations"]["podcap.io/heartbeat"] = then

    def writes(self) -> list[tuple[str, str]]:
        """The requests that change something (a server-side dry run changes nothing)."""
        return [
            r
            for r in self.requests
            if r[0] in ("POST", "PUT", "PATCH", "DELETE") and not r[1].endswith("?dryRun=All")
        ]


def cluster_from_lab(lab, helper_namespace: str = "podcap-system") -> Cluster:
    """Nodes and Pods of a ``testbed.lab.Lab`` as a cluster serves them: ``containerd://`` IDs,
    node InternalIPs and pod CIDRs, labels ``app=web`` and ``podcap-lab/node=<node>``, and the
    lab's ip-masq-agent configuration as the ``kube-system/ip-masq-agent`` ConfigMap."""
    cluster = Cluster()
    cluster.add_namespace(helper_namespace)
    for node in lab.nodes:
        cluster.add_node(node.name, node.ip, node.pod_cidr)
    for pod in lab.pods:
        cluster.pod_netns[(pod.namespace, pod.name)] = pod.netns
        labels = {"app": "web", "podcap-lab/node": pod.node.name}
        cluster.add_pod(
            pod_object(
                pod.namespace,
                pod.name,
                pod.node.name,
                pod.node.ip,
                pod.ip,
                pod.container_id,
                labels=labels,
                uid=pod.uid,
                containers=("web",),
                ports=(pod.http_port, pod.marker_port),
            )
        )
    if getattr(lab, "masq_config", None):
        cluster.add_configmap(
            "kube-system", "ip-masq-agent", {"config": yaml.safe_dump(lab.masq_config)}
        )
    return cluster


# --- HTTP ---------------------------------------------------------------------------------


def status_object(code: int, reason: str, message: str, name: str = "", kind: str = "") -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": kind},
        "code": code,
    }


def forbidden(verb: str, resource: str, namespace: str | None, name: str = "") -> dict:
    base, _, sub = resource.partition("/")
    group = "authorization.k8s.io" if base == "selfsubjectaccessreviews" else ""
    what = f'{base} "{name}"' if name else base
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{what} is forbidden: User "{USER}" cannot {verb} resource "{base}"'
        + (f' subresource "{sub}"' if sub else "")
        + f' in API group "{group}"{where}'
    )
    return status_object(403, "Forbidden", message, name, base)


# Pod Security Standards "baseline": the capabilities a container may add (all others refused).
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def pod_security_violations(pod: dict, level: str) -> list[str]:
    """What the PodSecurity admission plugin says a Pod breaks at ``level`` (baseline checks:
    host namespaces, privileged, added capabilities), in its words; [] at ``privileged``."""
    if level == "privileged":
        return []
    spec, found = pod["spec"], []
    hosts = [f"{k}=true" for k in ("hostNetwork", "hostPID", "hostIPC") if spec.get(k)]
    if hosts:
        found.append(f"host namespaces ({', '.join(hosts)})")
    for ctr in spec.get("containers", []):
        security = ctr.get("securityContext") or {}
        if security.get("privileged"):
            found.append(f'privileged (container "{ctr["name"]}" must not set '
                         "securityContext.privileged=true)")  # fmt: skip
        added = [c for c in (security.get("capabilities") or {}).get("add", [])
                 if c not in BASELINE_CAPABILITIES]  # fmt: skip
        if added:
            listed = ", ".join(f'"{c}"' for c in added)
            found.append(f'non-default capabilities (container "{ctr["name"]}" must not include '
                         f"{listed} in securityContext.capabilities.add)")  # fmt: skip
    return found


def admission_refusal(cluster: Cluster, ns: str, pod: dict) -> dict | None:
    """The Status a real API server answers a Pod create with when admission refuses it:
    PodSecurity (the namespace's enforce label, else the cluster's default level), then what
    the test set in ``cluster.admission_refusals`` (a quota, a webhook); None when admitted."""
    name = pod["metadata"]["name"]
    if (refusal := cluster.admission_refusals.get(ns)) is not None:
        code, message = refusal
        reason = {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}.get(code, "Forbidden")
        return status_object(code, reason, message.format(name=name), name, "pods")
    labels = cluster.namespaces.get(ns, {}).get("metadata", {}).get("labels", {})
    level = labels.get("pod-security.kubernetes.io/enforce", cluster.pod_security_default)
    if violations := pod_security_violations(pod, level):
        message = (f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": '
                   + ", ".join(violations))  # fmt: skip
        return status_object(403, "Forbidden", message, name, "pods")
    return None


def not_found(resource: str, name: str) -> dict:
    return status_object(404, "NotFound", f'{resource} "{name}" not found', name, resource)


def list_object(kind: str, items: list[dict], rv: str) -> dict:
    return {
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": rv},
        "items": items,
    }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: APIServer

    def setup(self) -> None:
        super().setup()
        # As Go's net/http does: without it Nagle holds back each frame's last segment until
        # the client's delayed ACK, and exec streams crawl at ~1 MB/s.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet test output
        pass

    # -- plumbing
    def _send_json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.server.token}":
            return True
        self._send_json(401, status_object(401, "Unauthorized", "Unauthorized"))
        return False

    def _route(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        cluster = self.server.cluster
        with cluster.lock:  # a dry run is marked: it writes nothing (see Cluster.writes)
            dry = "?dryRun=All" if "dryRun=All" in url.query else ""
            cluster.requests.append((method, url.path + dry))
        if not self._authorized():
            return
        parts = [p for p in url.path.split("/") if p]
        try:
            self._dispatch(method, parts, query, parse_qs(url.query))
        except BrokenPipeError:
            pass

    do_GET = lambda self: self._route("GET")  # noqa: E731
    do_POST = lambda self: self._route("POST")  # noqa: E731
    do_DELETE = lambda self: self._route("DELETE")  # noqa: E731
    do_PATCH = lambda self: self._route("PATCH")  # noqa: E731

    # -- dispatch
    def _dispatch(self, method: str, parts: list[str], q: dict, multi: dict) -> None:
        c = self.server.cluster
        if (
            parts[:2] == ["apis", "authorization.k8s.io"]
            and parts[-1] == "selfsubjectaccessreviews"
        ):
            return self._access_review(self._body())
        group_base = 2 if parts[0] == "api" else 3
        rest = parts[group_base:]
        namespace = None
        if rest[:1] == ["namespaces"] and len(rest) == 2:  # the Namespace object itself
            resource, name, sub = "namespaces", rest[1], None
        else:
            if rest[:1] == ["namespaces"]:
                namespace, rest = rest[1], rest[2:]
            resource, name, sub = (rest + [None, None, None])[:3]
        full = f"{resource}/{sub}" if sub else resource
        verb = {"POST": "create", "DELETE": "delete", "PATCH": "patch"}.get(
            method, "get" if name else "list"
        )
        if sub == "exec" and not c.allowed("create", full, namespace):
            # 1.30 authorizes the WebSocket GET as "get"; 1.35+ also wants "create".
            verb = "create"
        if not c.allowed(verb, full, namespace):
            return self._send_json(403, forbidden(verb, full, namespace, name or ""))
        if sub == "exec":
            return self._exec(namespace, name, multi)
        if sub == "ephemeralcontainers" and verb == "patch":
            return self._add_ephemeral(namespace, name)
        handler = getattr(self, f"_{resource}_{verb}", None)
        if handler is None:
            return self._send_json(
                404,
                status_object(404, "NotFound", "the server could not find the requested resource"),
            )
        handler(namespace, name, q)

    # -- resources
    def _send_stored(self, store: dict, key, kind: str, name: str) -> None:
        """GET of one object: a copy of ``store[key]`` (taken under the lock), or 404."""
        with self.server.cluster.lock:
            obj = copy.deepcopy(store.get(key))
        if obj is None:
            return self._send_json(404, not_found(kind, name))
        self._send_json(200, obj)

    def _pods_get(self, ns, name, _q):
        self._send_stored(self.server.cluster.pods, (ns, name), "pods", name)

    def _pods_list(self, ns, _name, q):
        c = self.server.cluster
        with c.lock:
            items = [
                copy.deepcopy(p)
                for (pns, _), p in sorted(c.pods.items())
                if (ns is None or pns == ns)
                and label_selector_matches(
                    q.get("labelSelector", ""), p["metadata"].get("labels", {})
                )
                and field_selector_matches(q.get("fieldSelector", ""), p)
            ]
            rv = c.next_rv()
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        self._send_json(200, list_object("PodList", items, rv))

    def _pods_create(self, ns, _name, q):
        c = self.server.cluster
        pod = self._body()
        meta = pod.setdefault("metadata", {})
        with c.lock:
            if ns not in c.namespaces:
                return self._send_json(404, not_found("namespaces", ns))
            name = meta.get("name") or meta["generateName"] + uuid.uuid4().hex[:5]
            node_name = pod["spec"].get("nodeName")
            node = c.nodes.get(node_name, {})
            host_ip = next(
                (
                    a["address"]
                    for a in node.get("status", {}).get("addresses", [])
                    if a["type"] == "InternalIP"
                ),
                "",
            )
            meta.update(
                name=name,
                namespace=ns,
                uid=str(uuid.uuid4()),
                resourceVersion=c.next_rv(),
                creationTimestamp=now(),
            )
            pod["kind"], pod["apiVersion"] = "Pod", "v1"
            # Bound to its node already (nodeName): the kubelet reports its containers waiting
            # while it pulls the image, as a real one does.
            pod["status"] = {
                "phase": "Pending", "hostIP": host_ip, "qosClass": "Burstable",
                "containerStatuses": [
                    {"name": ctr["name"], "image": ctr["image"], "imageID": "", "ready": False,
                     "restartCount": 0, "started": False,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}
                    for ctr in pod["spec"].get("containers", [])
                ],
            }  # fmt: skip
            if (refusal := admission_refusal(c, ns, pod)) is not None:
                return self._send_json(refusal["code"], refusal)
            if q.get("dryRun") == "All":  # admitted, answered, never stored
                c.dry_runs.append((ns, name))
                return self._send_json(201, pod)
            c.pods[(ns, name)] = pod
        threading.Timer(c.start_delay, self.server.start_pod, args=(ns, name)).start()
        self._send_json(201, pod)

    def _pods_patch(self, ns, name, _q):
        """A JSON merge patch (RFC 7386) of the Pod's labels and annotations, the only fields
        podcap patches; another content type is refused as a real server refuses a patch it
        cannot apply."""
        if self.headers.get("Content-Type") != "application/merge-patch+json":
            return self._send_json(415, status_object(
                415, "UnsupportedMediaType", f"the in-test server applies merge patches only, "
                f"not {self.headers.get('Content-Type')}"))  # fmt: skip
        patch = self._body()
        c = self.server.cluster
        with c.lock:
            pod = c.pods.get((ns, name))
            if pod is None:
                return self._send_json(404, not_found("pods", name))
            for key in ("labels", "annotations"):
                for field_name, value in patch.get("metadata", {}).get(key, {}).items():
                    fields = pod["metadata"].setdefault(key, {})
                    if value is None:
                        fields.pop(field_name, None)
                    else:
                        fields[field_name] = value
            pod["metadata"]["resourceVersion"] = c.next_rv()
            c.patches.append((ns, name, patch))
            answer = copy.deepcopy(pod)
        self._send_json(200, answer)

    def _add_ephemeral(self, ns, name):
        """PATCH pods/NAME/ephemeralcontainers (a strategic merge patch, as kubectl debug
        sends): the new ephemeral containers join the spec, wait ContainerCreating, then run
        their command in the Pod's network namespace (the lab's) until it ends."""
        if self.headers.get("Content-Type") != "application/strategic-merge-patch+json":
            return self._send_json(415, status_object(415, "UnsupportedMediaType",
                                                      "expected a strategic merge patch"))  # fmt: skip
        c = self.server.cluster
        added = self._body().get("spec", {}).get("ephemeralContainers", [])
        with c.lock:
            pod = c.pods.get((ns, name))
            if pod is None:
                return self._send_json(404, not_found("pods", name))
            # Pod Security admission judges ephemeral containers as it judges the others.
            labels = c.namespaces.get(ns, {}).get("metadata", {}).get("labels", {})
            level = labels.get("pod-security.kubernetes.io/enforce", c.pod_security_default)
            judged = {"spec": {**pod["spec"], "containers": added}}
            if violations := pod_security_violations(judged, level):
                message = (f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": '
                           + ", ".join(violations))  # fmt: skip
                return self._send_json(403, status_object(403, "Forbidden", message, name, "pods"))
            have = {e["name"] for e in pod["spec"].setdefault("ephemeralContainers", [])}
            statuses = pod["status"].setdefault("ephemeralContainerStatuses", [])
            for container in (e for e in added if e["name"] not in have):
                pod["spec"]["ephemeralContainers"].append(container)
                statuses.append({"name": container["name"], "image": container["image"],
                                 "imageID": "", "ready": False, "restartCount": 0,
                                 "state": {"waiting": {"reason": "ContainerCreating"}}})  # fmt: skip
                threading.Timer(c.start_delay, self.server.start_ephemeral,
                                args=(ns, name, container)).start()  # fmt: skip
            pod["metadata"]["resourceVersion"] = c.next_rv()
            answer = copy.deepcopy(pod)
        self._send_json(200, answer)

    def _pods_delete(self, ns, name, _q):
        c = self.server.cluster
        with c.lock:
            pod = c.pods.pop((ns, name), None)
            if pod is not None:
                c.deleted.append((ns, name))
        if pod is None:
            return self._send_json(404, not_found("pods", name))
        self.server.kill_execs(name)
        self._send_json(200, pod)

    def _nodes_get(self, _ns, name, _q):
        self._send_stored(self.server.cluster.nodes, name, "nodes", name)

    def _services_get(self, ns, name, _q):
        self._send_stored(self.server.cluster.services, (ns, name), "services", name)

    def _configmaps_get(self, ns, name, _q):
        self._send_stored(self.server.cluster.configmaps, (ns, name), "configmaps", name)

    def _namespaces_get(self, _ns, name, _q):
        self._send_stored(self.server.cluster.namespaces, name, "namespaces", name)

    def _workload_get(self, plural, ns, name):
        workloads = self.server.cluster.workloads
        self._send_stored(workloads, (plural, ns, name), f"{plural}.apps", name)

    def _deployments_get(self, ns, name, _q):
        self._workload_get("deployments", ns, name)

    def _statefulsets_get(self, ns, name, _q):
        self._workload_get("statefulsets", ns, name)

    def _daemonsets_get(self, ns, name, _q):
        self._workload_get("daemonsets", ns, name)

    def _access_review(self, review: dict) -> None:
        attrs = review.get("spec", {}).get("resourceAttributes", {})
        resource = attrs.get("resource", "")
        if attrs.get("subresource"):
            resource += "/" + attrs["subresource"]
        allowed = self.server.cluster.allowed(
            attrs.get("verb", ""), resource, attrs.get("namespace")
        )
        review.update(kind="SelfSubjectAccessReview", apiVersion="authorization.k8s.io/v1")
        review.setdefault("metadata", {})["creationTimestamp"] = None
        review["status"] = {"allowed": allowed}
        if not allowed:
            review["status"]["reason"] = ""
        self._send_json(201, review)

    # -- pods/exec over WebSocket
    def _exec(self, ns: str, name: str, multi: dict) -> None:
        c = self.server.cluster
        with c.lock:
            pod = c.pods.get((ns, name))
        if pod is None:
            return self._send_json(404, not_found("pods", name))
        if pod["status"].get("phase") != "Running":
            container = pod["spec"]["containers"][0]["name"]
            message = f'unable to upgrade connection: container not found ("{container}")'
            return self._send_json(400, status_object(400, "BadRequest", message))
        offered = [p.strip() for p in (self.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
        protocol = next((p for p in c.exec_protocols if p in offered), None)
        if self.headers.get("Upgrade", "").lower() != "websocket" or protocol is None:
            return self._send_json(
                400, status_object(400, "BadRequest", "Upgrade request required")
            )
        accept = base64.b64encode(
            hashlib.sha1((self.headers["Sec-WebSocket-Key"] + WS_GUID).encode()).digest()
        ).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        command = multi.get("command", [])
        ephemeral = {e["name"] for e in pod["spec"].get("ephemeralContainers", [])}
        if (multi.get("container") or [""])[0] in ephemeral:  # in the Pod's network namespace
            command = ["ip", "netns", "exec", c.pod_netns[(ns, name)], *command]
        stdin, tty = ("true" in multi.get(key, []) for key in ("stdin", "tty"))
        ExecSession(self, ns, name, command, protocol, stdin, tty).run()
        self.close_connection = True


class ExecSession:
    """One exec: runs the command here and multiplexes its streams onto channel frames.

    With ``tty`` the command gets a pseudo-terminal as a kubelet gives it: stdin, stdout and
    stderr are that one terminal (so what it writes arrives in the order written, on the
    stdout channel alone), it is the command's controlling terminal, and the resize channel
    sets its size."""

    def __init__(
        self,
        handler: Handler,
        ns: str,
        pod: str,
        command: list[str],
        protocol: str,
        stdin: bool,
        tty: bool = False,
    ):
        self.handler = handler
        self.protocol = protocol
        self.send_lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        self.record: Exec | None = None
        self.outputs: list[tuple[int, int]] = []  # (fd, channel) pumped to the client
        self.stdin_fd: int | None = None
        self.terminal: int | None = None  # the pty's master side, with tty
        self.stdin_lock = threading.Lock()  # the terminal is closed only between writes
        cluster = handler.server.cluster
        # The upgrade was answered before the process starts (as on a real node), so the Pod
        # may have been deleted meanwhile. Checking, starting and registering under the lock
        # that Pod deletion takes means either this exec is in ``execs`` before the delete
        # kills that Pod's execs, or it sees the Pod gone and never starts.
        with cluster.lock:
            if (ns, pod) not in cluster.pods:
                return
            self.process = self._start_on_terminal(command) if tty else self._start(command, stdin)
            self.record = Exec(pod, command, protocol, self.process)
            cluster.execs.append(self.record)

    def _start(self, command: list[str], stdin: bool) -> subprocess.Popen:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.outputs = [(process.stdout.fileno(), 1), (process.stderr.fileno(), 2)]
        self.stdin_fd = process.stdin.fileno() if process.stdin else None
        return process

    def _start_on_terminal(self, command: list[str]) -> subprocess.Popen:
        self.terminal, child_side = pty.openpty()
        try:
            # setsid -c: a new session (its own process group, for kill_execs) whose
            # controlling terminal is the pty, as a container's process gets it.
            process = subprocess.Popen(
                ["setsid", "-c", *command], stdin=child_side, stdout=child_side, stderr=child_side
            )
        finally:
            os.close(child_side)
        self.outputs = [(self.terminal, 1)]
        self.stdin_fd = self.terminal
        return process

    def send(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + n.to_bytes(2, "big")
        else:
            header += bytes([127]) + n.to_bytes(8, "big")
        with self.send_lock:
            self.handler.wfile.write(header + payload)

    def recv(self) -> tuple[int, bytes] | None:
        rfile = self.handler.rfile
        try:
            head = rfile.read(2)
        except (OSError, ValueError):  # the connection is gone
            return None
        if len(head) < 2:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(rfile.read(2), "big")
        elif length == 127:
            length = int.from_bytes(rfile.read(8), "big")
        mask = rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = rfile.read(length)
        return opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def pump(self, fd: int, channel: int) -> None:
        budget = self.handler.server.cluster.stdout_limit if channel == 1 else None
        while chunk := self._read(fd):
            if budget is not None:
                chunk, budget = chunk[:budget], max(budget - len(chunk), 0)
                if not chunk:
                    continue
            if channel == 2:
                self.record.stderr += chunk
            try:
                self.send(0x2, bytes([channel]) + chunk)
            except OSError:
                return

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 32768)
        except OSError:  # EIO: a pty whose last user closed it, which is its EOF
            return b""

    def read_client(self) -> None:
        while (frame := self.recv()) is not None:
            opcode, data = frame
            if opcode == 0x8:  # close: the client went away; the process keeps running,
                return  # as on a real node (kubernetes#89031)
            with self.stdin_lock:
                if data and self.stdin_fd is not None:
                    self._from_client(data)

    def _from_client(self, data: bytes) -> None:
        if data[0] == 0 and len(data) > 1:
            self._write_stdin(data[1:])
        elif data[0] == 4 and self.terminal is not None:
            self._resize(json.loads(data[1:]))
        elif data[0] == 255 and self.protocol == V5 and data[1:2] == b"\0":
            self.record.stdin_closed = True
            if self.terminal is None:  # a terminal stays open, as a kubelet's does
                self.process.stdin.close()
                self.stdin_fd = None

    def _write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.stdin_fd, view) :]
        except OSError:
            pass

    def _resize(self, size: dict) -> None:
        winsize = struct.pack("HHHH", size.get("Height", 0), size.get("Width", 0), 0, 0)
        fcntl.ioctl(self.terminal, termios.TIOCSWINSZ, winsize)

    def run(self) -> None:
        for channel in (1, 2, 3):  # the API server opens each channel with an empty frame
            self.send(0x2, bytes([channel]))
        if self.process is None:
            self.finish({"metadata": {}, "status": "Failure", "message": "pod not found"})
            return
        pumps = [
            threading.Thread(target=self.pump, args=output, daemon=True) for output in self.outputs
        ]
        for thread in pumps:
            thread.start()
        threading.Thread(target=self.read_client, daemon=True).start()
        for thread in pumps:
            thread.join()
        code = self.process.wait()
        with self.stdin_lock:
            if self.terminal is not None:
                os.close(self.terminal)
                self.stdin_fd = None
            # The record keeps the Popen for the tests' assertions, so its pipes would stay
            # open for the whole session: a suite of diagnoses ran out of descriptors.
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.stdin_fd = None
        if code == 0:
            status = {"metadata": {}, "status": "Success"}
        else:
            status = {
                "metadata": {},
                "status": "Failure",
                "message": f"command terminated with non-zero exit code: exit status {code}",
                "reason": "NonZeroExitCode",
                "details": {
                    "causes": [
                        {
                            "reason": "ExitCode",
                            "message": str(code % 256 if code >= 0 else 128 - code),
                        }
                    ]
                },
            }
        self.finish(status)

    def finish(self, status: dict) -> None:
        """The exec's v1 Status on the error channel, then the WebSocket close."""
        try:
            self.send(0x2, b"\x03" + json.dumps(status).encode())
            self.send(0x8, (1000).to_bytes(2, "big"))
        except OSError:
            pass


class APIServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that hangs up mid-stream is normal (Ctrl-C tests); anything else is a bug
        # in this server and must show.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, ValueError)):
            super().handle_error(request, client_address)

    def __init__(self, cluster: Cluster, workdir: Path, tls: bool = True):
        super().__init__(("127.0.0.1", 0), Handler)
        self.cluster = cluster
        self.token = uuid.uuid4().hex
        self.workdir = workdir
        cert, key = make_certificate(workdir)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.ca = cert
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start_pod(self, ns: str, name: str) -> None:
        """The kubelet's part: a created Pod turns Running (or Failed at its deadline)."""
        c = self.cluster
        with c.lock:
            pod = c.pods.get((ns, name))
            if pod is None:
                return
            pod["status"].update(
                phase="Running",
                podIP=pod["status"]["hostIP"],
                startTime=now(),
                containerStatuses=[
                    {
                        "name": ctr["name"],
                        "image": ctr["image"],
                        "imageID": ctr["image"].split(":")[0] + "@sha256:" + "cd" * 32,
                        "containerID": "containerd://" + uuid.uuid4().hex * 2,
                        "ready": True,
                        "restartCount": 0,
                        "started": True,
                        "state": {"running": {"startedAt": now()}},
                    }
                    for ctr in pod["spec"]["containers"]
                ],
            )
            pod["metadata"]["resourceVersion"] = c.next_rv()
            deadline = pod["spec"].get("activeDeadlineSeconds")
        if deadline:
            timer = threading.Timer(deadline, self.expire_pod, args=(ns, name))
            timer.daemon = True
            timer.start()

    def start_ephemeral(self, ns: str, name: str, container: dict) -> None:
        """The kubelet's part for an ephemeral container: its command runs in the Pod's network
        namespace; the status says running, then terminated when it ends."""
        c = self.cluster
        with c.lock:
            netns = c.pod_netns.get((ns, name))
            if (ns, name) not in c.pods or netns is None:
                return
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, *container["command"], *container.get("args", [])],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            c.ephemeral.append(process)
            self._set_ephemeral_state(
                ns, name, container["name"], {"running": {"startedAt": now()}}
            )
        threading.Thread(target=self._ephemeral_ended, args=(ns, name, container["name"], process),
                         daemon=True).start()  # fmt: skip

    def _ephemeral_ended(self, ns: str, name: str, container: str, process) -> None:
        code = process.wait()
        with self.cluster.lock:
            self._set_ephemeral_state(ns, name, container, {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": now(), "finishedAt": now()}})  # fmt: skip

    def _set_ephemeral_state(self, ns: str, name: str, container: str, state: dict) -> None:
        pod = self.cluster.pods.get((ns, name))
        for status in pod["status"].get("ephemeralContainerStatuses", []) if pod else []:
            if status["name"] == container:
                status["state"] = state
                status["ready"] = "running" in state
        if pod:
            pod["metadata"]["resourceVersion"] = self.cluster.next_rv()

    def expire_pod(self, ns: str, name: str) -> None:
        with self.cluster.lock:
            pod = self.cluster.pods.get((ns, name))
            if pod is None:
                return
            pod["status"].update(phase="Failed", reason="DeadlineExceeded")
        self.kill_execs(name)

    def kill_execs(self, pod: str) -> None:
        """Like a kubelet stopping a container: every exec process in it dies."""
        with self.cluster.lock:
            sessions = [e for e in self.cluster.execs if e.pod == pod]
        for session in sessions:
            if session.process.poll() is None:
                try:
                    os.killpg(session.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def kubeconfig(self, path: Path, context: str = "lab") -> Path:
        ca = base64.b64encode(Path(self.ca).read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "lab", "cluster": {"server": self.url, "certificate-authority-data": ca}}
            ],
            "users": [{"name": USER, "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "lab", "user": USER}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def __enter__(self) -> APIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        with self.cluster.lock:
            pods = {e.pod for e in self.cluster.execs}
        for pod in pods:
            self.kill_execs(pod)
        for process in self.cluster.ephemeral:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for session in self.cluster.execs:
            try:
                session.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def make_certificate(workdir: Path) -> tuple[str, str]:
    cert, key = workdir / "apiserver.crt", workdir / "apiserver.key"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kube-apiserver",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    return str(cert), str(key)


# --- fixtures (listed in tests/conftest.py's pytest_plugins) -------------------------------

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def kube_cert_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("kube-api")
    make_certificate(directory)
    return directory


@pytest.fixture
def kube_lab(lab, make_kube_api):
    """(cluster, server, lab): the module's lab served as a cluster by a fresh API server."""
    cluster = cluster_from_lab(lab)
    return cluster, make_kube_api(cluster), lab


@pytest.fixture
def make_kube_api(kube_cert_dir, tmp_path):
    """``make_kube_api(cluster)`` starts a server for ``cluster`` and returns it; its
    kubeconfig is at ``server.kubeconfig_path``. Every server stops at the end of the test."""
    servers: list[APIServer] = []

    def start(cluster: Cluster, context: str = "lab") -> APIServer:
        server = APIServer(cluster, kube_cert_dir).__enter__()
        server.kubeconfig_path = server.kubeconfig(tmp_path / f"kubeconfig-{len(servers)}", context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def main() -> None:
    """``python3 -m testbed.kube_api KUBECONFIG``: a lab (2 nodes, 1 Pod each) behind this server,
    until Ctrl-C, for trying podcap by hand (the README's examples ran this way)."""
    import sys
    import tempfile

    from testbed.lab.core import Lab

    # Started with & from a script, a process inherits SIGINT ignored: Ctrl-C (or kill -INT)
    # must still end it and tear the lab down, as SIGTERM does.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    with Lab(nodes=2, pods_per_node=1) as lab, tempfile.TemporaryDirectory() as workdir:
        cluster = cluster_from_lab(lab)
        with APIServer(cluster, Path(workdir)) as server:
            path = server.kubeconfig(Path(sys.argv[1]))
            for pod in lab.pods:
                print(
                    f"pod {pod.namespace}/{pod.name} ip {pod.ip} node {pod.node.name} netns {pod.netns}",
                    flush=True,
                )
            # A process in each node's namespace stands for the node's PID 1 (the machine
            # plays every node): give podcap --node-pid this for --also-node and diagnose.
            stand_ins = {n.name: lab.popen(n, ["sleep", "infinity"]) for n in lab.nodes}
            pids = ",".join(f"{name}={proc.pid}" for name, proc in stand_ins.items())
            print(f"node-pid {pids}", flush=True)
            print(f"serving {server.url}; kubeconfig {path}; Ctrl-C stops", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
