"""The helper Pod's life: created, waited for, deleted whatever happens; leftovers cleaned.

:func:`helper_transports` is how every helper-Pod command starts: one helper per node, a
:class:`~podcap.reach.pod.transport.PodTransport` each, and every helper deleted on the way
out (success, error, Ctrl-C, SIGTERM). :func:`cleanup` is ``podcap cleanup``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes.client.rest import ApiException

from podcap import signals
from podcap.errors import ReachError
from podcap.reach.pod import liveness
from podcap.reach.pod.manifest import (
    DEFAULT_START_TIMEOUT,
    MANAGED_SELECTOR,
    SESSION_LABEL,
    HelperSpec,
    helper_manifest,
)
from podcap.reach.pod.transport import PodTransport


class HelperPod:
    """Creates, waits for and deletes one helper Pod."""

    def __init__(self, kube, manifest: dict, on_step: Step | None = None):
        from kubernetes import client

        self.kube = kube
        self.manifest = manifest
        self.namespace = manifest["metadata"]["namespace"]
        self.node = manifest["spec"]["nodeName"]
        self.name: str | None = None
        self.core = client.CoreV1Api(kube.api())
        self.on_step = on_step or (lambda text: None)  # each phase, said in a line
        self.vanished: str | None = None  # where it was, when someone else deleted it first

    def create(self, dry_run: bool = False) -> str:
        """Create the helper; with ``dry_run`` the API server runs everything a create runs
        (RBAC, PodSecurity, quotas, webhooks) and stores nothing."""
        try:
            created = self.core.create_namespaced_pod(
                self.namespace, self.manifest, **({"dry_run": "All"} if dry_run else {})
            )
        except ApiException as exc:
            raise refusal_error(exc, f"create helper pod in namespace {self.namespace}") from exc
        if dry_run:
            return created.metadata.name
        self.name = created.metadata.name
        self.on_step(f"helper {self.where} on {self.node}: created")
        return self.name

    def wait_running(self, timeout: float = DEFAULT_START_TIMEOUT) -> None:
        """Until the helper runs; each phase it passes through said once (``pending
        (ContainerCreating)``: the image is being pulled)."""
        end, said = time.monotonic() + timeout, ""
        while True:
            pod = self._read()
            phase = pod.status.phase if pod.status else None
            waiting = _waiting_reason(pod)
            if (now := phase_words(phase, waiting)) != said:
                self.on_step(f"helper {self.where}: {now}")
                said = now
            if phase == "Running":
                return
            if phase in ("Failed", "Succeeded"):
                raise ReachError(f"helper pod {self.where} ended ({phase}) before the capture")
            if waiting in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                raise ReachError(
                    f"helper pod {self.where} cannot pull its image ({waiting})",
                    hint="pass --image with an image this node can pull, or --image-pull-secret",
                )
            if time.monotonic() > end:
                raise ReachError(
                    f"helper pod {self.where} on node {self.node} not running after "
                    f"{timeout:g} s ({now})",
                    hint="--helper-timeout gives it longer (a large image on a slow registry)",
                )
            time.sleep(0.2)

    def _read(self):
        try:
            return self.core.read_namespaced_pod(self.name, self.namespace)
        except ApiException as exc:
            raise refusal_error(exc, f"read helper pod {self.where}") from exc

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def beat(self) -> None:
        """Mark the helper in use now (podcap.reach.pod.liveness)."""
        patch = {"metadata": {"annotations": {liveness.HEARTBEAT: liveness.stamp()}}}
        try:
            self.core.patch_namespaced_pod(self.name, self.namespace, patch,
                                           _content_type="application/merge-patch+json")  # fmt: skip
        except ApiException as exc:
            raise refusal_error(exc, f"annotate helper pod {self.where}") from exc

    def delete(self) -> None:
        """Delete the helper; a helper already gone is fine."""
        if self.name is None:
            return
        try:
            self.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise refusal_error(exc, f"delete helper pod {self.where}") from exc
            self.vanished = self.where  # gone before us: a forced cleanup, an admin, a drain
        self.on_step(f"helper {self.where}: {'already gone' if self.vanished else 'deleted'}")
        self.name = None


def phase_words(phase: str | None, waiting: str) -> str:
    """``pending``, ``pending (ContainerCreating)``, ``running``: a phase as a step says it."""
    words = (phase or "pending").lower()
    return f"{words} ({waiting})" if waiting else words


def _waiting_reason(pod) -> str:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.state and status.state.waiting and status.state.waiting.reason:
            return status.state.waiting.reason
    return ""


def refusal_error(exc: ApiException, what: str) -> ReachError:
    """The API server's refusal in its own words: RBAC's, PodSecurity's, a quota's, a
    webhook's all come as 403 (a webhook may say 400), told apart by their message."""
    message = _server_message(exc)
    if exc.status == 403 and RBAC_REFUSAL.search(message):
        return ReachError(f"RBAC denied: cannot {what}",
                          hint="deploy/rbac.yaml grants it; or use --via ssh/local")  # fmt: skip
    if "violates PodSecurity" in message:
        return ReachError(f"cannot {what}: {message}", hint=(
            f"label the namespace {PSA_ENFORCE}=privileged, or pass --helper-namespace with "
            "one that is"))  # fmt: skip
    return ReachError(f"cannot {what}: {exc.status} {message}".strip())


Step = Callable[[str], None]

# How the RBAC authorizer words a refusal, unlike admission (PodSecurity, quota, webhook).
RBAC_REFUSAL = re.compile(r'User "[^"]*" cannot \S+ resource')
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


def _server_message(exc: ApiException) -> str:
    """The Status object's message (what the API server says), else the HTTP reason."""
    if exc.body:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            return json.loads(exc.body).get("message") or exc.reason or ""
    return exc.reason or ""


@contextlib.contextmanager
def helper_transports(
    kube,
    spec: HelperSpec,
    containers_by_node: dict[str, list[str]] | None = None,
    on_step: Step | None = None,
    targets_by_node: dict[str, list[str]] | None = None,
    *,
    manifests: dict[str, dict] | None = None,
):
    """Create one helper per node, wait until all run (``spec.start_timeout``), yield ``{node:
    PodTransport}``, and delete every helper on the way out (success, error, Ctrl-C, SIGTERM:
    with :func:`podcap.signals.install` both raise, and a signal while deleting waits its
    end). ``on_step`` hears each helper's phases: created, pending, running, deleted;
    ``targets_by_node`` names the Pods each helper captures, in its annotations.
    ``manifests``: the helpers' manifests by node when a plan made them already
    (``podcap.capture.plan``), instead of ``containers_by_node``."""
    if manifests is None:
        names = targets_by_node or {}
        manifests = {node: helper_manifest(spec, node, ids, names.get(node, []))
                     for node, ids in (containers_by_node or {}).items()}  # fmt: skip
    helpers = [HelperPod(kube, manifest, on_step) for manifest in manifests.values()]
    try:
        for helper in helpers:
            helper.create()
        for helper in helpers:
            helper.wait_running(spec.start_timeout)
        with liveness.Heartbeat(helpers, HelperPod.beat):  # `podcap cleanup` leaves them be
            yield {h.node: PodTransport(kube, h) for h in helpers}
    finally:
        with signals.deferred():
            _delete_all(helpers)


def _delete_all(helpers: list[HelperPod]) -> None:
    failures = []
    for helper in helpers:
        try:
            helper.delete()
        except ReachError as exc:
            failures.append(str(exc))
    if failures:
        raise ReachError("; ".join(failures), hint="run `podcap cleanup` to remove leftovers")


@dataclass
class Cleaned:
    """What ``podcap cleanup`` did: helpers deleted, and helpers left to a live capture."""

    deleted: list[str] = field(default_factory=list)  # namespace/name
    in_use: list[tuple[str, float]] = field(default_factory=list)  # (namespace/name, seconds)


def cleanup(kube, namespace: str | None, session: str | None = None,
            force: bool = False) -> Cleaned:  # fmt: skip
    """Delete leftover helpers by label (all namespaces when ``namespace`` is None), except
    those a live capture still uses (its heartbeat is recent) unless ``force``."""
    from kubernetes import client

    core = client.CoreV1Api(kube.api())
    selector = MANAGED_SELECTOR + (f",{SESSION_LABEL}={session}" if session else "")
    try:
        if namespace is None:
            pods = core.list_pod_for_all_namespaces(label_selector=selector).items
        else:
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    except ApiException as exc:
        raise refusal_error(exc, f"list helper pods ({selector})") from exc
    cleaned = Cleaned()
    for pod in pods:
        where = f"{pod.metadata.namespace}/{pod.metadata.name}"
        if not force and liveness.in_use(pod):
            cleaned.in_use.append((where, liveness.seconds_since_alive(pod)))
            continue
        try:
            core.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
            )
        except ApiException as exc:
            if exc.status != 404:
                raise refusal_error(exc, f"delete pod {where}") from exc
        cleaned.deleted.append(where)
    return cleaned
