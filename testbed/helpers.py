"""Helpers many test modules share: ``podcap`` run as a user runs it, tshark as the oracle the
tests compare podcap with, and polling for something that happens in another process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

PODCAP = [sys.executable, "-m", "podcap"]
# podcap gets os.environ, given explicitly: a child started without ``env`` inherits the C
# library's environment, where GNU readline, once something in the test process loads it,
# has set COLUMNS=80 and LINES behind os.environ's back; the table renderer honours COLUMNS.

T = TypeVar("T")


def podcap(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """``podcap ARGS`` to the end, output captured as text (unless the caller says otherwise);
    the exit status is the test's to check."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("env", dict(os.environ))
    return subprocess.run([*PODCAP, *map(str, args)], timeout=timeout, check=False, **kwargs)


def start_podcap(*args, **kwargs) -> subprocess.Popen:
    """``podcap ARGS`` started in the background, stdout and stderr piped (bytes unless the
    caller passes ``text=True``); the caller stops and reaps it."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("env", dict(os.environ))
    return subprocess.Popen([*PODCAP, *map(str, args)], **kwargs)


def wait_for(condition: Callable[[], T], timeout: float = 15, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; after
    ``timeout`` seconds return its last (falsy) answer, for the caller to assert with a message
    that says what it waited for."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := condition():
            return value
        time.sleep(interval)
    return condition()


def tshark_fields(
    path: str | Path,
    *fields: str,
    display_filter: str | None = None,
    extra: Sequence[str] = (),
    occurrence: str = "a",
    cut_short: bool = False,
) -> list[list[str]]:
    """Run ``tshark -T fields`` once: one list of field values per packet ('' when absent).

    ``occurrence``: which value of a field that repeats (inner and outer IP of a tunnel) is
    kept: ``a`` all, comma-joined, outer first; ``l`` the last (innermost); ``f`` the first.
    ``extra``: more tshark arguments (``-d`` decode-as rules, ``-o`` preferences). A failing
    tshark is a test failure (an empty oracle would agree with an empty answer), except that
    with ``cut_short`` the file is known to be truncated, which tshark reports by exit 2.
    """
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    argv += ["-E", f"occurrence={occurrence}", *extra]
    if display_filter:
        argv += ["-Y", display_filter]
    for name in fields:
        argv += ["-e", name]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    allowed = (0, 2) if cut_short else (0,)
    assert result.returncode in allowed, f"tshark failed on {path}: {result.stderr.strip()}"
    return [line.split("\t") for line in result.stdout.splitlines()]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, by /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found += (below := children.get(todo.pop(), []))
        todo += below
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
