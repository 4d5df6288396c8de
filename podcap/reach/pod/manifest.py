"""The helper Pod's manifest: how a helper looks, pinned to a node, ending on its own.

One helper per node, in its own namespace (never the target's), pinned with ``nodeName``,
``hostPID`` (so ``nsenter -t PID`` reaches any container's network namespace), tolerating every
taint, with requests/limits, and an ``activeDeadlineSeconds`` plus a ``sleep`` command that
both end it on their own if podcap dies without deleting it. Pure: no API call here.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from podcap.reach.base import DEFAULT_TIME_BOUND

# Pinned by digest (the v0.13 multi-arch index): a tag can be moved, a digest cannot, and an
# air-gapped mirror keeps it (docs/kubernetes.md says how: skopeo copy --all, then --image).
DEFAULT_IMAGE = (
    "docker.io/nicolaka/netshoot:v0.13"
    "@sha256:a20c2531bf35436ed3766cd6cfe89d352b050ccc4d7005ce6400adf97503da1b"
)
DEFAULT_HELPER_NAMESPACE = "podcap-system"
MANAGED_BY = "app.kubernetes.io/managed-by"
SESSION_LABEL = "podcap.io/session"
MANAGED_SELECTOR = f"{MANAGED_BY}=podcap"
CONTAINER = "capture"
CAPABILITIES = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"]
DROPS_CAPABILITIES = ["BPF", "PERFMON"]  # bpftrace's program and its tracepoint (--drops)
DEADLINE_MARGIN = 600  # seconds a helper may outlive the planned capture
DEFAULT_START_TIMEOUT = 120.0  # seconds a helper may take to run (pulling a large image)


@dataclass
class HelperSpec:
    """How helpers look; one ``HelperSpec`` per capture session."""

    namespace: str = DEFAULT_HELPER_NAMESPACE
    image: str = DEFAULT_IMAGE
    image_pull_secret: str | None = None
    capabilities_only: bool = False  # --capabilities: not privileged, just the four caps
    deadline_seconds: int = 3600 + DEADLINE_MARGIN
    drops: bool = False  # --drops: with --capabilities, also BPF and PERFMON (bpftrace)
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    start_timeout: float = DEFAULT_START_TIMEOUT  # --helper-timeout: seconds to reach Running
    requested_by: str = field(default_factory=lambda: local_user())  # user@host, annotated

    @classmethod
    def for_duration(
        cls,
        duration: float | None,
        *,
        namespace: str = DEFAULT_HELPER_NAMESPACE,
        image: str | None = None,
        image_pull_secret: str | None = None,
        capabilities_only: bool = False,
        drops: bool = False,
        start_timeout: float | None = None,
    ) -> HelperSpec:
        """The helpers for a capture of ``duration`` seconds (None: until stopped), as the
        command line gives them (``image`` None: :data:`DEFAULT_IMAGE`)."""
        return cls(
            namespace=namespace,
            image=image or DEFAULT_IMAGE,
            image_pull_secret=image_pull_secret,
            capabilities_only=capabilities_only,
            deadline_seconds=deadline_for(duration),
            drops=drops,
            start_timeout=start_timeout or DEFAULT_START_TIMEOUT,
        )


def deadline_for(duration: float | None) -> int:
    """activeDeadlineSeconds for a capture of ``duration`` seconds (None: until Ctrl-C, which
    the node script bounds at 4 h)."""
    return int(duration or DEFAULT_TIME_BOUND) + DEADLINE_MARGIN


def local_user() -> str:
    """``user@host`` of whoever runs podcap, for the helper's annotation."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def helper_manifest(
    spec: HelperSpec,
    node: str,
    container_ids: list[str],
    targets: list[str] = (),
    now: datetime | None = None,
) -> dict:
    """The helper Pod for ``node``, carrying the IDs of the containers it will enter and, for
    an admin who finds it, what it captures (``targets``: NAMESPACE/POD), who asked and when
    it ends by itself at the latest."""
    capabilities = [*CAPABILITIES, *(DROPS_CAPABILITIES if spec.drops else [])]
    security = (
        {"privileged": False, "capabilities": {"add": capabilities, "drop": ["ALL"]}}
        if spec.capabilities_only
        else {"privileged": True}
    )
    pod_spec: dict = {
        "nodeName": node,
        "hostPID": True,
        "restartPolicy": "Never",
        "activeDeadlineSeconds": spec.deadline_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "tolerations": [{"operator": "Exists"}],
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "imagePullPolicy": "IfNotPresent",
                # Expires by itself: a helper left by a crash goes away at its deadline.
                "command": ["sleep", str(spec.deadline_seconds)],
                "securityContext": security,
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"cpu": "1", "memory": "256Mi"},
                },
            }
        ],
    }
    if spec.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"podcap-{_dns_label(node)}-",
            "namespace": spec.namespace,
            "labels": {MANAGED_BY: "podcap", SESSION_LABEL: spec.session},
            "annotations": {
                "podcap.io/container-ids": ",".join(container_ids),
                "podcap.io/targets": ",".join(targets),
                "podcap.io/requested-by": spec.requested_by,
                "podcap.io/expires": _expiry(spec, now),
            },
        },
        "spec": pod_spec,
    }


def _expiry(spec: HelperSpec, now: datetime | None) -> str:
    """When the helper's deadline ends it, counted from ``now`` (its creation, near enough)."""
    ends = (now or datetime.now(UTC)) + timedelta(seconds=spec.deadline_seconds)
    return ends.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dns_label(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:40].rstrip("-") or "node"
