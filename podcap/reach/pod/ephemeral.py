"""An ephemeral container in the target Pod instead of a helper Pod on its node (``--ephemeral``).

Where a cluster admits no privileged, hostPID helper (Pod Security ``baseline`` everywhere, no
namespace of its own for podcap), ``kubectl debug``'s way still works: an ephemeral container
added to the Pod (the ``pods/ephemeralcontainers`` subresource) shares the Pod's network
namespace, and the target container's process namespace (``targetContainerName``). tcpdump runs
there as is, with the runtime's default capabilities (NET_RAW), no nsenter and nothing
privileged: the node script's ``--here``. The container sleeps until podcap ends it (through
an exec) or its deadline does. Kubernetes cannot remove an ephemeral container: it stays in the
Pod's spec, terminated, until the Pod goes; each capture adds one named after its session.
"""

from __future__ import annotations

import contextlib
import time

from kubernetes.client.rest import ApiException

from podcap import signals
from podcap.errors import ReachError
from podcap.reach.pod.helper import Step, phase_words, refusal_error
from podcap.reach.pod.manifest import HelperSpec
from podcap.reach.pod.transport import PodTransport

PID_FILE = "/tmp/podcap-{name}.pid"  # in the ephemeral container's own filesystem


def ephemeral_container(spec: HelperSpec, target_container: str) -> dict:
    """The ephemeral container for one capture session: the helper image, sleeping for the
    session's deadline, its shell's PID kept so podcap can end it. Nothing privileged."""
    name = f"podcap-{spec.session}"
    pid_file = PID_FILE.format(name=name)
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "sh",
            "-c",
            f'echo $$ >{pid_file} && exec sleep "$0"',
            str(spec.deadline_seconds),
        ],  # fmt: skip
        "targetContainerName": target_container,
        "stdin": False,
        "tty": False,
    }


class EphemeralContainer:
    """Adds, waits for and ends one ephemeral container in a target Pod. Stands where a
    HelperPod stands for :class:`~podcap.reach.pod.transport.PodTransport`: ``name`` and
    ``namespace`` are the target Pod's, ``container`` the ephemeral one's."""

    def __init__(self, kube, target, spec: HelperSpec, on_step: Step | None = None):
        from kubernetes import client

        self.core = client.CoreV1Api(kube.api())
        self.namespace, self.name, self.node = target.namespace, target.name, target.node.name
        self.body = ephemeral_container(spec, target.container)
        self.container = self.body["name"]
        self.on_step = on_step or (lambda text: None)

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name} (container {self.container})"

    def add(self) -> None:
        patch = {"spec": {"ephemeralContainers": [self.body]}}
        try:
            self.core.patch_namespaced_pod_ephemeralcontainers(
                self.name, self.namespace, patch,
                _content_type="application/strategic-merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            raise refusal_error(exc, f"add an ephemeral container to pod {self.namespace}/"
                               f"{self.name}") from exc  # fmt: skip
        self.on_step(f"ephemeral container {self.where}: added")

    def wait_running(self, timeout: float) -> None:
        end, said = time.monotonic() + timeout, ""
        while True:
            state = self._state()
            phase = "Running" if state and state.running else None
            if state and state.terminated:
                raise ReachError(f"ephemeral container {self.where} ended before the capture "
                                 f"({state.terminated.reason})")  # fmt: skip
            waiting = (state.waiting.reason or "") if state and state.waiting else ""
            if (now := phase_words(phase, waiting)) != said:
                self.on_step(f"ephemeral container {self.where}: {now}")
                said = now
            if phase:
                return
            if time.monotonic() > end:
                raise ReachError(f"ephemeral container {self.where} not running after "
                                 f"{timeout:g} s ({now})",
                                 hint="--helper-timeout gives it longer")  # fmt: skip
            time.sleep(0.2)

    def _state(self):
        try:
            pod = self.core.read_namespaced_pod(self.name, self.namespace)
        except ApiException as exc:
            raise refusal_error(exc, f"read pod {self.namespace}/{self.name}") from exc
        for status in (pod.status.ephemeral_container_statuses or []) if pod.status else []:
            if status.name == self.container:
                return status.state
        return None

    def end(self, transport) -> None:
        """Stop its sleep through one more exec (an ephemeral container cannot be deleted);
        one already ended is fine."""
        pid_file = PID_FILE.format(name=self.container)
        try:
            transport.run(["sh", "-c", f'kill "$(cat {pid_file})"'], timeout=15)
        except ReachError:
            return
        self.on_step(f"ephemeral container {self.where}: ended")


@contextlib.contextmanager
def ephemeral_transports(kube, spec: HelperSpec, targets: list, on_step: Step | None = None):
    """One ephemeral container per target Pod, all running, as ``{"NAMESPACE/POD":
    PodTransport}``; each ended on the way out, whatever happens."""
    containers = [EphemeralContainer(kube, target, spec, on_step) for target in targets]
    transports = {f"{c.namespace}/{c.name}": PodTransport(kube, c) for c in containers}
    added = []
    try:
        for container in containers:
            container.add()
            added.append(container)
        for container in containers:
            container.wait_running(spec.start_timeout)
        yield transports
    finally:
        with signals.deferred():
            for container in added:
                container.end(transports[f"{container.namespace}/{container.name}"])
