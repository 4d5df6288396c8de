"""Helpers for the netns/inspect tests: the real ``podcap`` process driven through a
pseudo-terminal (through pipes: testbed.helpers.podcap); registered in tests/conftest.py's
pytest_plugins."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import signal
import time

import pytest

from testbed.helpers import PODCAP


class Terminal:
    """``podcap ARGS`` on a fresh pseudo-terminal, as a person at a keyboard would run it."""

    def __init__(self, *args: str, env: dict | None = None):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes podcap, the pty its controlling terminal
            try:
                os.execvpe(PODCAP[0], [*PODCAP, *args], env or os.environ)
            finally:
                os._exit(127)  # never run the rest of pytest in the forked child
        self.output = b""
        self.status: int | None = None

    def read_until(self, needle: bytes, timeout: float = 20) -> bytes:
        """Read until ``needle`` has appeared (everything read is kept in ``output``)."""
        end = time.monotonic() + timeout
        while needle not in self.output:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen in {timeout} s: {self.output!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the other side closed
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{needle!r} not seen before EOF: {self.output!r}")
                self.output += chunk
        return self.output

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 20) -> int:
        """Drain the terminal and wait for podcap to exit; returns its exit status."""
        end = time.monotonic() + timeout
        while self.status is None:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > end:
                raise AssertionError(f"podcap still running after {timeout} s: {self.output!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 65536)
        return self.status

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.fixture
def terminal():
    """``terminal(*args)`` starts podcap on a pseudo-terminal; all are closed at teardown."""
    opened: list[Terminal] = []

    def start(*args: str, env: dict | None = None) -> Terminal:
        opened.append(Terminal(*args, env=env))
        return opened[-1]

    yield start
    for one in opened:
        one.close()
