"""A Service as ``podcap diagnose`` needs it: its ClusterIP, its ports and the Pods behind it.

``svc/NAME`` names one; its selector finds the endpoint Pods the way kube-proxy's endpoints do
(Running Pods matching it), so they can be captured while traffic to the ClusterIP reaches one.
"""

from __future__ import annotations

from dataclasses import dataclass

from podcap.errors import LocateError
from podcap.locate.kube import Kube, call

SERVICE_KINDS = {"svc", "service", "services"}


@dataclass(frozen=True)
class ServiceFacts:
    namespace: str
    name: str
    cluster_ip: str | None
    ports: tuple[tuple[int, str], ...]  # (port, targetPort as given: a number or a name)
    selector: str  # as a labelSelector query; "" for a Service without one

    @property
    def label(self) -> str:
        return f"svc {self.namespace}/{self.name}"


def is_service(name: str) -> bool:
    kind, slash, _ = name.partition("/")
    return bool(slash) and kind.lower() in SERVICE_KINDS


def read_service(kube: Kube, name: str, namespace: str | None) -> ServiceFacts:
    """The Service ``svc/NAME``; LocateError (one line) when it is missing or has no ClusterIP
    or no selector (podcap follows traffic to Pods a selector picks)."""
    bare = name.partition("/")[2]
    namespace = namespace or kube.default_namespace
    core = kube.core()
    service = call(core.read_namespaced_service, "get", "services", namespace, bare,
                   name=bare, namespace=namespace)  # fmt: skip
    spec = service.spec
    cluster_ip = spec.cluster_ip if spec.cluster_ip not in (None, "", "None") else None
    if cluster_ip is None:
        raise LocateError(f"service {namespace}/{bare} is headless (no ClusterIP): name a Pod")
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.selector or {}).items()))
    if not selector:
        raise LocateError(
            f"service {namespace}/{bare} has no selector: its endpoints are set by hand; "
            "name one of their Pods"
        )
    ports = tuple(
        (int(p.port), str(p.target_port if p.target_port is not None else p.port))
        for p in spec.ports or []
        if (p.protocol or "TCP") == "TCP"
    )
    return ServiceFacts(namespace, bare, cluster_ip, ports, selector)
