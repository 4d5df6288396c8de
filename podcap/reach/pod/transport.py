"""The helper-Pod transport: commands run on the node through the helper's pods/exec.

:class:`PodTransport` is a ``podcap.reach.base.Transport``; :class:`PodProcess` is one
command on one exec WebSocket (:class:`~podcap.reach.pod.channels.ExecChannels`), its stdout
a pipe fed as frames arrive, its stderr and exit status gathered beside.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time

from kubernetes.stream import ws_client
from websocket import WebSocketException

from podcap.errors import ReachError
from podcap.reach.base import Completed
from podcap.reach.pod.channels import ERROR, STDERR, STDIN, STDOUT, ExecChannels
from podcap.reach.pod.manifest import CONTAINER

PING_INTERVAL = 30
STOP_GRACE = 5.0
EXEC_PID = re.compile(rb"^podcap-exec pid=(\d+)\n", re.M)
WRITTEN = re.compile(r"podcap-node: stats .*\bwritten=(-?\d+)")
# Prints its own PID (so a v4 session can be stopped by a second exec), then becomes the command.
PID_WRAPPER = 'printf "podcap-exec pid=%s\\n" "$$" >&2; exec "$@"'


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

    def beat(self) -> None:
        if self._pump.is_alive():
            with contextlib.suppress(OSError, WebSocketException):
                self.ws.write_stdin(b"beat\n")

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
    """Runs commands on a node through its helper Pod (``--via pod``); ``helper`` is a running
    :class:`~podcap.reach.pod.helper.HelperPod`, deleted by :meth:`close`."""

    name = "pod"

    def __init__(self, kube, helper):
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
        container = getattr(self.helper, "container", CONTAINER)  # an ephemeral one's own
        query = [("command", command), ("container", container), ("stdin", "true")]
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
