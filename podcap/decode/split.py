"""Decoding one large pcap in two processes at once.

The decoder is numpy work on one core; the machines podcap runs on have two or more. For a
large plain pcap, ``read_capture`` cuts the file at a record boundary it guesses (the same
plausibility test as the lock-step walk, ``framing.first_plausible_record``), forks a helper
that decodes from the cut to the end, and decodes up to the cut itself. The guess is proven
when this process's own walk lands exactly on the cut; if it does not (a guess inside a
payload, a corrupt record), or the helper met anything unusual, the helper's work is dropped
and this process reads on alone, so the result is always the sequential walk's.

The helper hands its columns back through an unnamed file on ``/dev/shm`` (memory), which
this process maps instead of reading (``_dump``/``_load``), against the 0.2 s the helper saves
on the benchmark machine (bench/README.md, third round, has the timeline).

``start_reading`` forks the helper and returns; its caller can then import pandas and the
reports (0.3 s of start-up that would otherwise come before decoding) while the helper works,
and ``finish()`` decodes the first part. The cut is placed so both processes finish together.
"""

from __future__ import annotations

import ctypes
import glob
import mmap
import os
import pickle
import signal
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

# Below this a second process saves less than forking and handing back cost.
MIN_BYTES = 32 * 1024 * 1024
# They only set the balance, measured on the benchmark capture (bench/README.md): while both
# processes decode, each gets through about this many bytes a second (150 MB/s alone: they
# share memory bandwidth), and the imports cost this process about this much more than
# handing the helper's columns back costs the helper.
DECODE_BYTES_PER_SECOND = 100e6
IMPORT_SECONDS = 0.25
WINDOW_BYTES = 256 * 1024  # where a record start is looked for: a few records at least
SHM_FREE_BYTES = 1 << 30  # /dev/shm holds the hand-back file only with this much free
# PODCAP_DECODE_HELPER=0 turns the helper off (benchmarks, or a machine that forbids fork);
# =1 starts it whatever the CPUs are doing (tests); unset: for a large enough file when a
# second CPU is free at that moment.
ENV_SWITCH = "PODCAP_DECODE_HELPER"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def wanted(file_size: int | None) -> bool:
    """Whether a helper process is worth starting for a plain file of ``file_size`` bytes."""
    return file_size is not None and file_size >= MIN_BYTES and second_process()


def second_process() -> bool:
    """Whether work may go to a helper process now: fork exists, ``ENV_SWITCH`` allows it,
    and (unless the switch forces it) another CPU is free."""
    switch = os.environ.get(ENV_SWITCH, "")
    if switch == "0" or not hasattr(os, "fork"):
        return False
    return switch == "1" or _spare_cpu()


def _spare_cpu() -> bool:
    """Whether another CPU is free now: the helper's part is fixed in advance, so on a busy
    machine this process would wait for a slowed helper (measured: 3.9 s against 2.5 s alone
    for a million packets with the other CPU taken).

    Counted: other processes' threads running right now, the fewest of three looks 5 ms apart
    (a passing kernel worker is not load). Not the load average: it still counts the previous
    minute, such as this very command run a moment ago."""
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        return False
    busy = cpus
    for _ in range(3):
        busy = min(busy, _running_elsewhere())
        if busy <= cpus - 2:
            return True
        time.sleep(0.005)
    return False


def _running_elsewhere() -> int:
    """Threads of other user processes in the running state (Linux /proc; 0 elsewhere)."""
    me, count = os.getpid(), 0
    for stat in glob.glob("/proc/[0-9]*/task/*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue  # ended while we looked
        state, ppid = text[text.rindex(")") + 2 :].split(" ", 2)[:2]
        # Kernel threads are children of kthreadd (pid 2).
        count += state == "R" and ppid != "2" and not stat.startswith(f"/proc/{me}/")
    return count


def cut_target(header_len: int, file_size: int) -> int:
    """The offset near which to cut: the helper takes what is after it.

    When pandas is not imported yet, this process has that to do too, so it takes less."""
    data = file_size - header_len
    share = 0.5
    if "pandas" not in sys.modules:
        share -= IMPORT_SECONDS * DECODE_BYTES_PER_SECOND / (2 * data)
    return header_len + int(data * max(share, 0.1))


class Helper:
    """A forked process running ``work()``; ``result()`` gives what it returned, or None when
    it failed or was cancelled. ``cancel()`` may be called any number of times."""

    def __init__(self, work: Callable[[], object]):
        # The hand-back file has no name from the start: nothing is left in /dev/shm even if
        # both processes are killed.
        fd, name = tempfile.mkstemp(prefix="podcap-part-", dir=_scratch_dir())
        os.unlink(name)
        self.fd: int | None = fd
        try:
            self.pid: int | None = os.fork()
        except OSError:
            os.close(fd)
            raise
        if self.pid == 0:
            _run_child(work, fd)

    def result(self) -> object | None:
        if self.pid is None or self.fd is None:
            return None
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if os.waitstatus_to_exitcode(status) != 0:
            self.cancel()
            return None
        fd, self.fd = self.fd, None
        try:
            return _load(fd)
        finally:
            os.close(fd)

    def cancel(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _run_child(work: Callable[[], object], fd: int) -> None:
    """The helper's whole life: never returns into the caller's code (os._exit, even when
    ``work`` raises: the parent then decodes the part itself)."""
    status = 1
    try:
        _die_with_parent()
        # Ctrl-C or a kill reaches the whole process group: the helper just ends.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # Nothing on stderr: another thread of the parent (a progress spinner) may have held
        # its lock at the fork; the parent reports whatever matters.
        warnings.simplefilter("ignore")
        _dump(work(), fd)
        status = 0
    finally:
        os._exit(status)


# The hand-back file: the pickle's length and the pickle, then each array's bytes, length
# first. The arrays stay out of the pickle (protocol 5 out-of-band buffers) so that the parent
# maps them from the file instead of copying them out: 0.03-0.05 s less per million packets.
_LENGTH = struct.Struct("<Q")


def _dump(result: object, fd: int) -> None:
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    with os.fdopen(fd, "wb", closefd=False) as out:
        out.write(_LENGTH.pack(len(head)) + head)
        for buffer in buffers:
            raw = buffer.raw()
            out.write(_LENGTH.pack(raw.nbytes))
            out.write(raw)


def _load(fd: int) -> object:
    # A private (copy-on-write) map: the arrays built on it are writable, as unpickled ones are.
    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
    view = memoryview(mapped)
    (size,) = _LENGTH.unpack_from(view, 0)
    head, at, buffers = view[8 : 8 + size], 8 + size, []
    while at < len(view):
        (size,) = _LENGTH.unpack_from(view, at)
        buffers.append(view[at + 8 : at + 8 + size])
        at += 8 + size
    return pickle.loads(head, buffers=buffers)


def _die_with_parent() -> None:
    """Linux: the kernel kills the helper when its parent dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: a helper whose parent died still ends when its part is done
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _scratch_dir() -> str | None:
    """/dev/shm (memory) for the hand-back file when it has room, else the temporary directory
    (disk, mostly in the page cache): a container's /dev/shm is often 64 MiB, less than a
    helper's columns (about 100 MB per million packets), and a helper that cannot write them
    has worked for nothing."""
    shm = "/dev/shm"
    if not (os.path.isdir(shm) and os.access(shm, os.W_OK)):
        return None
    try:
        free = os.statvfs(shm)
    except OSError:
        return None
    return shm if free.f_bavail * free.f_frsize >= SHM_FREE_BYTES else None
