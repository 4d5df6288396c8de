"""How podcap stops on SIGINT and SIGTERM, whatever its parent did to them.

A process started with ``&`` from a script inherits SIGINT ignored, and Python's own handler
covers SIGINT only: without :func:`install` a backgrounded ``podcap capture`` ignores ``kill
-INT`` and dies on SIGTERM without deleting its helper Pods. :func:`install` (the CLI calls it
first thing) makes both signals raise :class:`Interrupted` in the main thread, so every
``finally`` runs. Code that stops its work cleanly itself (captures: tcpdump flushes) takes the
signals over with :func:`taken_over`; code that must not be cut short (deleting helper Pods)
runs under :func:`deferred`, which raises a first signal when the block ends and a second at
once. Only the main thread can set handlers: elsewhere (a library caller's thread) every
function here leaves signals as they are.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOPPING = (signal.SIGINT, signal.SIGTERM)
REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM arrived; a KeyboardInterrupt, so code that already handles
    Ctrl-C handles both."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(REASONS.get(signum, "interrupted"))
        self.signum = signum

    @property
    def reason(self) -> str:
        """``interrupted`` (SIGINT) or ``terminated`` (SIGTERM), as a capture's ``ended_by``."""
        return REASONS.get(self.signum, "interrupted")

    @property
    def exit_status(self) -> int:
        """What a shell reports for a process ended by the signal: 130, 143."""
        return 128 + self.signum


def _raise(signum, frame) -> None:
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` from now on (main thread only)."""
    if _in_main_thread():
        for signum in STOPPING:
            signal.signal(signum, _raise)


@contextlib.contextmanager
def _handlers(handler: Callable) -> Iterator[None]:
    if not _in_main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in STOPPING}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextlib.contextmanager
def taken_over(on_signal: Callable[[int, int], None]) -> Iterator[None]:
    """Within the block each SIGINT/SIGTERM calls ``on_signal(signum, nth)`` (1 for the first,
    2 for the second, ...) in a thread of its own instead of raising: stopping may wait on a
    lock the interrupted code holds."""
    seen = [0]

    def handle(signum, frame) -> None:
        seen[0] += 1
        threading.Thread(target=on_signal, args=(signum, seen[0]), daemon=True).start()

    with _handlers(handle):
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block a first SIGINT/SIGTERM waits: it is raised when the block ends (so a
    clean-up runs to its end); a second one is raised at once."""
    pending: list[int] = []

    def handle(signum, frame) -> None:
        pending.append(signum)
        if len(pending) > 1:
            raise Interrupted(signum)

    with _handlers(handle):
        yield
    if pending:
        raise Interrupted(pending[0])
