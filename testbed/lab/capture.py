"""tcpdump (or dumpcap, for pcapng) running inside a lab namespace, as a context manager.

    with lab.capture(pod, path="x.pcap", bpf="tcp port 80") as cap:
        lab.curl(...)
    cap.packets  # packets tcpdump says it captured

Start returns only once the capture tool reports that it listens, and stop waits a moment for
the last packets before sending SIGINT, so nothing in the block is missed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

READY_MARKERS = ("listening on", "Capturing on")


class CaptureError(RuntimeError):
    pass


class Capture:
    def __init__(
        self,
        netns: str,
        iface: str,
        path: str,
        bpf: str | None = None,
        *,
        tool: str = "tcpdump",
        snaplen: int | None = None,
        linktype: str | None = None,
        extra: Sequence[str] = (),
        settle: float | None = None,
        startup_delay: float | None = None,
    ) -> None:
        if tool not in ("tcpdump", "dumpcap"):
            raise ValueError("tool must be tcpdump or dumpcap")
        self.netns, self.iface, self.path, self.bpf = netns, iface, os.path.abspath(path), bpf
        self.tool, self.snaplen, self.linktype, self.extra = tool, snaplen, linktype, list(extra)
        # tcpdump runs in immediate mode and listens once it says so; dumpcap reads the
        # kernel's ring in 250 ms batches and says "Capturing on" a little before it captures.
        # On "any", each forwarded packet arrives once per interface it crosses, a burst that
        # immediate mode drops from at random (sample 08 had 23 to 36 of its 36 packets):
        # there tcpdump reads the ring in blocks, which time out after 1 s, before SIGINT.
        slow = tool == "dumpcap"
        self.immediate = iface != "any"
        settle_default = 1.0 if slow else (0.3 if self.immediate else 1.3)
        self.settle = settle if settle is not None else settle_default
        self.startup_delay = startup_delay if startup_delay is not None else (0.5 if slow else 0)
        self.proc: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []
        self.packets: int | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def argv(self) -> list[str]:
        if self.tool == "tcpdump":
            argv = ["tcpdump", "-i", self.iface, "-w", self.path, "-U", "-n", "-Z", "root"]
            if self.immediate:
                argv.append("--immediate-mode")
            if self.snaplen:
                argv += ["-s", str(self.snaplen)]
            if self.linktype:
                argv += ["-y", self.linktype]
            argv += self.extra
            if self.bpf:
                argv.append(self.bpf)
        else:  # dumpcap writes pcapng
            argv = ["dumpcap", "-i", self.iface, "-w", self.path, "-n"]
            if self.snaplen:
                argv += ["-s", str(self.snaplen)]
            if self.linktype:
                argv += ["-y", self.linktype]
            if self.bpf:
                argv += ["-f", self.bpf]
            argv += self.extra
        return ["ip", "netns", "exec", self.netns, *argv]

    def start(self, timeout: float = 10) -> Capture:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.proc = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise CaptureError(f"{self.tool} did not start: {''.join(self.stderr_lines)}")
        if self.proc.poll() is not None:
            raise CaptureError(f"{self.tool} exited: {''.join(self.stderr_lines)}")
        if self.startup_delay:
            time.sleep(self.startup_delay)
        return self

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for line in self.proc.stderr:
            self.stderr_lines.append(line)
            if any(m in line for m in READY_MARKERS):
                self._ready.set()
        self._ready.set()  # exited: stop waiting

    def stop(self) -> int | None:
        if not self.proc:
            return None
        if self.proc.poll() is None:
            time.sleep(self.settle)
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._reader:
            self._reader.join(timeout=5)
        text = "".join(self.stderr_lines)
        m = re.search(r"(\d+) packets? captured", text) or re.search(
            r"Packets captured:\s*(\d+)", text
        )
        if m:
            self.packets = int(m.group(1))
        else:
            m = re.search(r"Packets:\s*(\d+)", text)
            self.packets = int(m.group(1)) if m else None
        return self.packets

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
