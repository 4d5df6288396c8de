"""Pre-flight: may this user run helper Pods (RBAC), and will the helper namespace admit them.

Asked of the API server before anything is created, so a missing Role rule or a Pod Security
level that rejects the helper is one LocateError naming what is missing, not a failure halfway.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.rest import ApiException

from podcap.errors import LocateError
from podcap.locate.kube import Kube, api_error, call
from podcap.locate.targets import PodTarget


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
    """What a helper-Pod capture needs: create/get/patch/delete Pods and pods/exec in the
    helper namespace (patch: the heartbeat that keeps ``podcap cleanup`` off a live capture's
    helper), get the target Pods."""
    needed = [
        Permission("create", "pods", helper_namespace),
        Permission("get", "pods", helper_namespace),
        Permission("patch", "pods", helper_namespace),
        Permission("delete", "pods", helper_namespace),
        # A WebSocket exec is a GET ("get pods/exec" on 1.30); clusters with
        # AuthorizePodWebsocketUpgradeCreatePermission (1.35+) also require "create".
        Permission("get", "pods", helper_namespace, subresource="exec"),
        Permission("create", "pods", helper_namespace, subresource="exec"),
    ]
    for namespace in sorted({t.namespace for t in targets}):
        needed.append(Permission("get", "pods", namespace))
    return needed


def ephemeral_permissions(targets: list[PodTarget]) -> list[Permission]:
    """What ``--ephemeral`` needs in each target's namespace: add an ephemeral container to
    the Pod (patch pods/ephemeralcontainers), read it, exec into it."""
    needed = []
    for namespace in sorted({t.namespace for t in targets}):
        needed += [
            Permission("patch", "pods", namespace, subresource="ephemeralcontainers"),
            Permission("get", "pods", namespace),
            Permission("get", "pods", namespace, subresource="exec"),
            Permission("create", "pods", namespace, subresource="exec"),
        ]
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
    missing = [p for p, allowed in access_report(kube, needed) if not allowed]
    if missing:
        raise LocateError(
            "RBAC denied: you may not " + "; ".join(str(p) for p in missing),
            hint="deploy/rbac.yaml grants them; or use --via ssh/local",
        )


def access_report(kube: Kube, needed: list[Permission]) -> list[tuple[Permission, bool]]:
    """Each permission with the API server's answer (SelfSubjectAccessReview): granted or not."""
    api = client.AuthorizationV1Api(kube.api())
    return [(permission, _allowed(api, permission)) for permission in needed]


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
