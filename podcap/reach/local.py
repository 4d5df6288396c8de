"""The ``local`` transport: this machine is the node, commands run as child processes.

``PopenProcess`` is shared with the ssh transport, whose commands are local ``ssh`` processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading

from podcap.errors import ReachError
from podcap.reach.base import Completed


class PopenProcess:
    """A RemoteProcess backed by a local child process (the command itself, or ``ssh``).

    The child gets its own session, so a Ctrl-C in the user's terminal reaches podcap only:
    podcap then stops the capture in order instead of the node script dying mid-packet.
    """

    def __init__(self, argv: list[str], what: str):
        try:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise ReachError(f"cannot start {what}: {exc.strerror or exc}") from exc
        self._what = what
        self.stdout = self._popen.stdout
        self._stderr_chunks: list[bytes] = []
        self._stderr_lock = threading.Lock()
        self._stderr_reader = threading.Thread(target=self._collect_stderr, daemon=True)
        self._stderr_reader.start()

    def _collect_stderr(self) -> None:
        for line in iter(self._popen.stderr.readline, b""):
            with self._stderr_lock:
                self._stderr_chunks.append(line)

    def stderr_text(self) -> str:
        with self._stderr_lock:
            return b"".join(self._stderr_chunks).decode("utf-8", "replace")

    def stop(self) -> None:
        # Closing stdin is the stop signal every transport can send: the node script sees EOF.
        try:
            self._popen.stdin.close()
        except OSError:
            pass  # the pipe is already broken: the command has ended

    def beat(self) -> None:
        try:
            self._popen.stdin.write(b"beat\n")
            self._popen.stdin.flush()
        except (OSError, ValueError):
            pass  # stdin closed (stopped) or the pipe broken (ended): no one to tell

    def kill(self) -> None:
        try:
            os.killpg(self._popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int:
        try:
            status = self._popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ReachError(f"{self._what} still running after {timeout:g} s") from exc
        # stderr reaches EOF when the last process holding it ends; don't hang on a straggler.
        self._stderr_reader.join(timeout=5)
        return status

    @property
    def pid(self) -> int:
        return self._popen.pid


def run_to_end(argv: list[str], what: str, timeout: float) -> Completed:
    """Run ``argv`` locally to the end; ReachError when it can't start or outlives ``timeout``."""
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise ReachError(f"cannot start {what}: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ReachError(f"{what} did not finish within {timeout:g} s") from exc
    return Completed(list(argv), done.returncode, done.stdout, done.stderr)


class LocalTransport:
    """Runs commands on this machine, which is the node (as the troubleshooting guide does by hand)."""

    name = "local"

    def __init__(self, node: str | None = None):
        self.node = node or os.uname().nodename

    def start(self, argv: list[str]) -> PopenProcess:
        return PopenProcess(argv, what=f"{argv[0]!r} on this machine")

    def run(self, argv: list[str], timeout: float = 60) -> Completed:
        return run_to_end(argv, f"{argv[0]!r} on this machine", timeout)

    def close(self) -> None:
        pass
