"""The helper-Pod transport: a short-lived privileged Pod on the node, driven through pods/exec.

One helper per node, in its own namespace (never the target's), pinned with ``nodeName``,
``hostPID`` (so ``nsenter -t PID`` reaches any container's network namespace), tolerating every
taint, with requests/limits, and an ``activeDeadlineSeconds`` plus a ``sleep`` command that
both end it on their own if podcap dies without deleting it.

Commands run through the exec API over WebSocket. Pitfalls of the Python client, and what this
module does about them (see /work/shared/notes/capture-peers.md §4):

- stdout must stay binary and flow: frames are read one by one (:class:`ExecChannels`), not
  through ``stream()``/``WSClient``, which decode or buffer (``_all``, ``bytes +=``);
- one ApiClient per stream: nothing here shares the REST client the rest of podcap uses;
- stopping: under ``v5.channel.k8s.io`` stdin is half-closed, which the node script takes as
  "stop"; under ``v4`` (no half-close) "stop" is written on stdin and, if the command is still
  running after a grace period, a second exec sends ``kill -INT`` to it;
- the stream's tail can get lost: the node script reports how many bytes it wrote and
  :meth:`PodProcess.check_complete` compares them with what arrived;
- idle exec sessions get cut by proxies: a WebSocket ping goes out every 30 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from kubernetes.client.rest import ApiException
from kubernetes.stream import ws_client
from websocket import ABNF, WebSocketException

from podcap.capture.command import DEFAULT_TIME_BOUND
from podcap.errors import ReachError
from podcap.reach.base import Completed

DEFAULT_IMAGE = "docker.io/nicolaka/netshoot:v0.13"
DEFAULT_HELPER_NAMESPACE = "podcap-system"
MANAGED_BY = "app.kubernetes.io/managed-by"
SESSION_LABEL = "podcap.io/session"
MANAGED_SELECTOR = f"{MANAGED_BY}=podcap"
CONTAINER = "capture"
CAPABILITIES = ["SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"]
DEADLINE_MARGIN = 600  # seconds a helper may outlive the planned capture
PING_INTERVAL = 30
STDIN, STDOUT, STDERR, ERROR, CLOSE = 0, 1, 2, 3, 255  # channel.k8s.io channel numbers
STOP_GRACE = 5.0
EXEC_PID = re.compile(rb"^podcap-exec pid=(\d+)\n", re.M)
WRITTEN = re.compile(r"podcap-node: stats .*\bwritten=(-?\d+)")
# Prints its own PID (so a v4 session can be stopped by a second exec), then becomes the command.
PID_WRAPPER = 'printf "podcap-exec pid=%s\\n" "$$" >&2; exec "$@"'


# --- the manifest -------------------------------------------------------------------------


@dataclass
class HelperSpec:
    """How helpers look; one ``HelperSpec`` per capture session."""

    namespace: str = DEFAULT_HELPER_NAMESPACE
    image: str = DEFAULT_IMAGE
    image_pull_secret: str | None = None
    capabilities_only: bool = False  # --capabilities: not privileged, just the four caps
    deadline_seconds: int = 3600 + DEADLINE_MARGIN
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


def deadline_for(duration: float | None) -> int:
    """activeDeadlineSeconds for a capture of ``duration`` seconds (None: until Ctrl-C, which
    the node script bounds at 4 h)."""
    return int(duration or DEFAULT_TIME_BOUND) + DEADLINE_MARGIN


def helper_manifest(spec: HelperSpec, node: str, container_ids: list[str]) -> dict:
    """The helper Pod for ``node``, carrying the IDs of the containers it will enter."""
    security = (
        {"privileged": False, "capabilities": {"add": list(CAPABILITIES), "drop": ["ALL"]}}
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
            "annotations": {"podcap.io/container-ids": ",".join(container_ids)},
        },
        "spec": pod_spec,
    }


def _dns_label(text: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:40].rstrip("-") or "node"


# --- the helper Pod's life ----------------------------------------------------------------


class HelperPod:
    """Creates, waits for and deletes one helper Pod."""

    def __init__(self, kube, manifest: dict):
        from kubernetes import client

        self.kube = kube
        self.manifest = manifest
        self.namespace = manifest["metadata"]["namespace"]
        self.node = manifest["spec"]["nodeName"]
        self.name: str | None = None
        self.core = client.CoreV1Api(kube.api())

    def create(self) -> str:
        try:
            created = self.core.create_namespaced_pod(self.namespace, self.manifest)
        except ApiException as exc:
            raise _reach_error(exc, f"create helper pod in namespace {self.namespace}") from exc
        self.name = created.metadata.name
        return self.name

    def wait_running(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while True:
            pod = self._read()
            phase = pod.status.phase if pod.status else None
            if phase == "Running":
                return
            if phase in ("Failed", "Succeeded"):
                raise ReachError(f"helper pod {self.where} ended ({phase}) before the capture")
            waiting = _waiting_reason(pod)
            if waiting in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
                raise ReachError(
                    f"helper pod {self.where} cannot pull its image ({waiting})",
                    hint="pass --image with an image this node can pull, or --image-pull-secret",
                )
            if time.monotonic() > end:
                raise ReachError(
                    f"helper pod {self.where} on node {self.node} not running after "
                    f"{timeout:.0f} s (phase {phase}{', ' + waiting if waiting else ''})"
                )
            time.sleep(0.2)

    def _read(self):
        try:
            return self.core.read_namespaced_pod(self.name, self.namespace)
        except ApiException as exc:
            raise _reach_error(exc, f"read helper pod {self.where}") from exc

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def delete(self) -> None:
        """Delete the helper; a helper already gone is fine."""
        if self.name is None:
            return
        try:
            self.core.delete_namespaced_pod(self.name, self.namespace, grace_period_seconds=0)
        except ApiException as exc:
            if exc.status != 404:
                raise _reach_error(exc, f"delete helper pod {self.where}") from exc
        self.name = None


def _waiting_reason(pod) -> str:
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.state and status.state.waiting and status.state.waiting.reason:
            return status.state.waiting.reason
    return ""


def _reach_error(exc: ApiException, what: str) -> ReachError:
    if exc.status == 403:
        return ReachError(f"RBAC denied: cannot {what}")
    detail = exc.reason or ""
    if exc.body:
        with contextlib.suppress(ValueError, TypeError):
            detail = json.loads(exc.body).get("message", detail)
    return ReachError(f"cannot {what}: {exc.status} {detail}".strip())


# --- exec ---------------------------------------------------------------------------------


class ExecChannels:
    """One exec WebSocket, read frame by frame.

    The client's ``WSClient.update()`` is not used to read: it gathers every frame already on
    the socket into ``bytes +=`` buffers before returning, which is quadratic in the backlog
    (measured: 4 MB/s on a 20 MB stream). Here each frame goes straight to its destination.
    The connection itself (URL, auth header, TLS options, subprotocol offer ``v5,v4``) is the
    client's ``create_websocket``. Writers (``write_channel``, ``write_stdin``,
    ``close_channel``) match ``WSClient``'s, so callers may treat it as one.
    """

    def __init__(self, sock):
        self.sock = sock
        # websocket-client fills ``subprotocol`` only when it made the offer itself; the
        # kubernetes client offers through a raw header, so read the server's answer there.
        headers = {k.lower(): v for k, v in (sock.getheaders() or {}).items()}
        self.subprotocol = (
            getattr(sock, "subprotocol", None) or headers.get("sec-websocket-protocol") or ""
        )
        self.send_lock = threading.Lock()

    def next_frame(self, timeout: float) -> tuple[int, bytes] | None:
        """``(channel, data)``; ``(-1, b"")`` on close; None when nothing came in ``timeout``."""
        raw = self.sock.sock
        pending = isinstance(raw, ssl.SSLSocket) and raw.pending()
        if not pending:
            poller = select.poll()
            poller.register(raw, select.POLLIN)
            if not poller.poll(timeout * 1000):
                return None
        opcode, frame = self.sock.recv_data_frame(True)
        if opcode == ABNF.OPCODE_CLOSE:
            return -1, b""
        data = frame.data if opcode in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) else b""
        if isinstance(data, str):
            data = data.encode()
        if not data:
            return None  # a pong or an empty frame: nothing for any channel
        return data[0], data[1:]

    def write_channel(self, channel: int, data: bytes | str) -> None:
        payload = bytes([channel]) + (data.encode() if isinstance(data, str) else data)
        with self.send_lock:
            self.sock.send(payload, opcode=ABNF.OPCODE_BINARY)

    def write_stdin(self, data: bytes) -> None:
        self.write_channel(STDIN, data)

    def close_channel(self, channel: int) -> bool:
        """Half-close a channel (v5 only); False under v4, which has no way to say EOF."""
        if self.subprotocol != ws_client.V5_CHANNEL_PROTOCOL:
            return False
        self.write_channel(CLOSE, bytes([channel]))
        return True

    def ping(self) -> None:
        with self.send_lock:
            self.sock.ping()

    def close(self) -> None:
        with contextlib.suppress(OSError, WebSocketException):
            self.sock.close()


class PodProcess:
    """A command running in the helper through one exec WebSocket."""

    def __init__(self, transport: PodTransport, argv: list[str], tty: bool = False):
        self.transport = transport
        self.argv = argv
        self.bytes_received = 0
        self._stderr = bytearray()
        self._status = bytearray()
        self._returncode: int | None = None
        # podcap netns: with a tty the command runs as is (its output is the user's screen, and
        # the kubelet hangs up the tty's session when the stream closes).
        command = list(argv) if tty else ["sh", "-c", PID_WRAPPER, "podcap-exec", *argv]
        self.ws = transport.open_exec(command, tty=tty)
        read_fd, self._write_fd = os.pipe()
        self.stdout = os.fdopen(read_fd, "rb", buffering=0)
        self._pump = threading.Thread(target=self._run_pump, daemon=True, name="podcap-exec")
        self._pump.start()

    # The pump moves frames from the WebSocket into the stdout pipe and the stderr buffer.
    def _run_pump(self) -> None:
        last_ping = time.monotonic()
        try:
            while (frame := self.ws.next_frame(timeout=1)) != (-1, b""):
                if frame is not None:
                    self._deliver(*frame)
                if time.monotonic() - last_ping > PING_INTERVAL:
                    self.ws.ping()
                    last_ping = time.monotonic()
            self._returncode = self._exit_status()
        except (OSError, WebSocketException):
            self._returncode = -1
        finally:
            with contextlib.suppress(OSError):
                os.close(self._write_fd)
            self.ws.close()

    def _deliver(self, channel: int, data: bytes) -> None:
        if channel == STDOUT and data:
            self.bytes_received += len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(self._write_fd, view) :]
        elif channel == STDERR:
            self._stderr += data
        elif channel == ERROR:
            self._status += data

    def _exit_status(self) -> int:
        """The exit code from the error channel's v1 Status (``NonZeroExitCode`` cause)."""
        if not self._status:  # the stream ended without saying how: it was cut
            return -1
        status = json.loads(bytes(self._status))
        if status.get("status") == "Success":
            return 0
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        return 1

    # RemoteProcess
    def stderr_text(self) -> str:
        return EXEC_PID.sub(b"", bytes(self._stderr)).decode("utf-8", "replace")

    def _exec_pid(self) -> int | None:
        match = EXEC_PID.search(bytes(self._stderr))
        return int(match.group(1)) if match else None

    def stop(self) -> None:
        """Ask for a clean end: EOF on stdin (v5), else a "stop" line and, later, kill -INT."""
        if not self._pump.is_alive():
            return
        with contextlib.suppress(OSError, WebSocketException):
            self.ws.write_stdin(b"stop\n")
            if self.ws.close_channel(STDIN):
                return
        threading.Thread(target=self._signal_later, args=("INT", STOP_GRACE), daemon=True).start()

    def _signal_later(self, sig: str, delay: float) -> None:
        self._pump.join(delay)
        if self._pump.is_alive():
            self.signal(sig)

    def signal(self, sig: str) -> None:
        """Send ``sig`` to the command through a second exec (works under v4 too)."""
        pid = self._exec_pid()
        if pid is not None:
            with contextlib.suppress(ReachError):
                self.transport.run(["kill", f"-{sig}", str(pid)], timeout=15)

    def kill(self) -> None:
        """End it now: SIGTERM (the node script stops tcpdump on it), then drop the stream."""
        if self._pump.is_alive():
            self.signal("TERM")
            self._pump.join(3)
        self.ws.close()

    def wait(self, timeout: float | None = None) -> int:
        self._pump.join(timeout)
        if self._pump.is_alive():
            raise ReachError(
                f"exec in {self.transport.helper.where} still running after {timeout:g} s"
            )
        return self._returncode if self._returncode is not None else -1

    def bytes_written(self) -> int | None:
        """What the node script says it wrote on stdout (its last ``stats`` line), if known."""
        counts = [int(n) for n in WRITTEN.findall(self.stderr_text())]
        return counts[-1] if counts and counts[-1] >= 0 else None

    def check_complete(self) -> None:
        """Raise ReachError when fewer bytes arrived than the node script says it wrote."""
        written = self.bytes_written()
        if written is None:
            return
        if self.bytes_received < written:
            raise ReachError(
                f"the exec stream from {self.transport.helper.where} lost "
                f"{written - self.bytes_received} of {written} bytes: the pcap is truncated"
            )


class PodTransport:
    """Runs commands on a node through its helper Pod (``--via pod``)."""

    name = "pod"

    def __init__(self, kube, helper: HelperPod):
        self.kube = kube
        self.helper = helper
        self.node = helper.node

    def open_exec(self, command: list[str], tty: bool = False) -> ExecChannels:
        """A WebSocket exec session (stdin, stdout, stderr; a TTY if asked) in the helper."""
        configuration = self.kube.configuration
        url = (
            f"{configuration.host}/api/v1/namespaces/{self.helper.namespace}"
            f"/pods/{self.helper.name}/exec"
        )
        query = [("command", command), ("container", CONTAINER), ("stdin", "true")]
        query += [("stdout", "true"), ("stderr", "true"), ("tty", "true" if tty else "false")]
        headers = {}
        token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["authorization"] = token
        try:
            sock = ws_client.create_websocket(
                configuration, ws_client.get_websocket_url(url, query), headers
            )
        except (OSError, WebSocketException) as exc:
            raise ReachError(f"exec into helper pod {self.helper.where} failed: {exc}") from exc
        return ExecChannels(sock)

    def start(self, argv: list[str], tty: bool = False) -> PodProcess:
        return PodProcess(self, argv, tty)

    def run(self, argv: list[str], timeout: float = 60) -> Completed:
        process = self.start(argv)
        with contextlib.suppress(OSError, WebSocketException):
            process.ws.close_channel(STDIN)
        out = bytearray()
        end = time.monotonic() + timeout
        while chunk := process.stdout.read(65536):
            out += chunk
            if time.monotonic() > end:
                process.kill()
                raise ReachError(f"{argv[0]} on node {self.node} took longer than {timeout:.0f} s")
        try:
            code = process.wait(max(end - time.monotonic(), 1))
        except ReachError as exc:
            process.kill()
            raise ReachError(f"{argv[0]} on node {self.node} did not finish") from exc
        finally:
            process.stdout.close()
        return Completed(list(argv), code, bytes(out), process.stderr_text().encode())

    def close(self) -> None:
        self.helper.delete()


# --- sessions: helpers deleted whatever happens ---------------------------------------------


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (as Ctrl-C does), so ``finally``
    clauses that delete helper Pods run on both. Only the main thread can set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def helper_transports(kube, spec: HelperSpec, containers_by_node: dict[str, list[str]]):
    """Create one helper per node, wait until all run, yield ``{node: PodTransport}``, and
    delete every helper on the way out (success, error, Ctrl-C, SIGTERM)."""
    helpers = [
        HelperPod(kube, helper_manifest(spec, node, ids))
        for node, ids in containers_by_node.items()
    ]
    with sigterm_as_interrupt():
        try:
            for helper in helpers:
                helper.create()
            for helper in helpers:
                helper.wait_running()
            yield {h.node: PodTransport(kube, h) for h in helpers}
        finally:
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


def cleanup(kube, namespace: str | None, session: str | None = None) -> list[str]:
    """Delete leftover helpers by label (all namespaces when ``namespace`` is None); returns
    ``namespace/name`` of each one deleted."""
    from kubernetes import client

    core = client.CoreV1Api(kube.api())
    selector = MANAGED_SELECTOR + (f",{SESSION_LABEL}={session}" if session else "")
    try:
        if namespace is None:
            pods = core.list_pod_for_all_namespaces(label_selector=selector).items
        else:
            pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    except ApiException as exc:
        raise _reach_error(exc, f"list helper pods ({selector})") from exc
    deleted = []
    for pod in pods:
        try:
            core.delete_namespaced_pod(
                pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _reach_error(
                    exc, f"delete pod {pod.metadata.namespace}/{pod.metadata.name}"
                ) from exc
        deleted.append(f"{pod.metadata.namespace}/{pod.metadata.name}")
    return deleted
