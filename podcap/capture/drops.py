"""The kernel's own packet drops, watched on the node while the captures run (``--drops``).

Since Linux 5.17 every ``kfree_skb`` carries a drop reason (``NETFILTER_DROP``, ``NO_SOCKET``,
``IP_RPFILTER``, ...) and the function that dropped the packet. The node script ``drops.sh``
runs a bpftrace program on the ``skb:kfree_skb`` tracepoint that keeps, in the kernel, only the
IPv4 packets of the capture's addresses, and prints for each: the wall-clock time (the pcap's
clock), the reason number, the function, the addresses, protocol, ports, TCP flags, length, the
network namespace and the interface. Reason numbers differ between kernels, so their names
come from that node's own tracepoint format (its ``__print_symbolic`` table), never from ours.

Three tiers, said plainly in the result: ``bpftrace`` (the above); ``tracefs`` where the node
has no bpftrace: the tracepoint itself through a trace instance of our own, every IPv4 drop
on the node with its reason and function but no addresses (so tied to no connection, only to
the capture's time); ``unavailable`` where the node cannot watch at all (no tracefs, a kernel
without drop reasons), said in one line, and the capture goes on. The result is ``NODE.drops.jsonl`` beside the captures
(``podcap.dropsfile``); each capture's sidecar names it.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from podcap.dropsfile import header
from podcap.reach.base import RemoteProcess, Transport

SCRIPT_NAME = "podcap-drops"
STOP_GRACE = 10.0
FIELDS = ("ts", "reason", "function", "src", "dst", "proto", "sport", "dport", "tcp_flags",
          "length", "netns", "interface")  # fmt: skip
_SYMBOL = re.compile(r"\{\s*(\d+),\s*\"([A-Z0-9_]+)\"\s*\}")
# A trace_pipe line of the plain tracefs tier: its time (the boot clock), where, why.
_TRACE = re.compile(r"\s(\d+\.\d+): kfree_skb: .*\blocation=(\S+)\s+reason: (\w+)")

PROGRAM = """tracepoint:skb:kfree_skb
{
  $skb = (struct sk_buff *)args->skbaddr;
  if ($skb->protocol != 0x0008) { return; }
  $ip = (struct iphdr *)($skb->head + $skb->network_header);
  if (!(WANTED)) { return; }
  $l4 = $skb->head + $skb->network_header + ($ip->ihl * 4);
  $sport = 0; $dport = 0; $flags = 0;
  if ($ip->protocol == 6 || $ip->protocol == 17) {
    $sport = (*(uint8 *)($l4) << 8) | *(uint8 *)($l4 + 1);
    $dport = (*(uint8 *)($l4 + 2) << 8) | *(uint8 *)($l4 + 3);
  }
  if ($ip->protocol == 6) { $flags = *(uint8 *)($l4 + 13); }
  printf("D|%s|%d|%s|%s|%s|%d|%d|%d|%d|%d|%u|%s\\n", strftime("%s.%f", nsecs), args->reason,
         ksym(args->location), ntop($ip->saddr), ntop($ip->daddr), $ip->protocol, $sport,
         $dport, $flags, $skb->len, $skb->dev->nd_net.net->ns.inum, $skb->dev->name);
}
"""


def drops_script() -> str:
    return resources.files("podcap.capture").joinpath("drops.sh").read_text(encoding="utf-8")


def drop_program(addresses: list[str]) -> str:
    """The bpftrace program for the IPv4 ``addresses`` (compared in the kernel as the
    little-endian words ``struct iphdr`` holds)."""
    words = [
        f"0x{int.from_bytes(ipaddress.IPv4Address(a).packed, 'little'):08x}"
        for a in addresses
        if ipaddress.ip_address(a).version == 4
    ]
    if not words:
        raise ValueError("the drop watcher needs an IPv4 address")
    wanted = " || ".join(f"$ip->saddr == {w} || $ip->daddr == {w}" for w in words)
    return PROGRAM.replace("WANTED", wanted)


def container_addresses(session, transport, timeout: float = 30) -> list[str]:
    """The global addresses of the network namespace a capture session entered (its node
    script names the PID once tcpdump listens), read with ``ip`` there."""
    report = session.wait_ready(timeout)
    if report.pid is None:
        return []
    argv = ["nsenter", "-n", "-t", str(report.pid), "--", "ip", "-o", "addr", "show", "scope",
            "global"]  # fmt: skip
    done = transport.run(argv, timeout=30)
    words = done.stdout.decode(errors="replace").split() if done.returncode == 0 else []
    return [words[i + 1].split("/")[0] for i, w in enumerate(words[:-1]) if w in ("inet", "inet6")]


# In the node's network namespace: the helper image's bpftrace when it has one (a helper
# image built with it serves nodes without it), else the node's own tools, in its mount
# namespace with a node's usual PATH.
PICK = """pid=$1 script=$2; shift 2
if [ -n "$pid" ] && ! command -v bpftrace >/dev/null 2>&1; then
  exec nsenter -m -t "$pid" -- env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    sh -c "$script" podcap-drops "$@"
fi
exec sh -c "$script" podcap-drops "$@"
"""


def drops_argv(addresses: list[str], bound: int, node_pid: str | None) -> list[str]:
    """The node-side command, in the node's network namespace (that of ``node_pid``: 1 in
    the helper, with hostPID; None: the transport is on the node, nothing entered)."""
    enter = ["nsenter", "-n", "-t", node_pid, "--"] if node_pid else []
    script, program = drops_script(), drop_program(addresses)
    return [*enter, "sh", "-c", PICK, SCRIPT_NAME, node_pid or "", script, str(bound), program]


def reason_names(print_fmt: str) -> dict[int, str]:
    """Reason number -> name from a tracepoint's ``print fmt`` line."""
    return {int(number): name for number, name in _SYMBOL.findall(print_fmt)}


def parse_traced(line: str, boot_to_wall: float) -> dict | None:
    """One trace_pipe line of the tracefs tier as a drop record: reason and function only."""
    found = _TRACE.search(line)
    if found is None:
        return None
    ts, location, reason = found.groups()
    return {"ts": float(ts) + boot_to_wall, "reason": reason, "function": location.split("+")[0],
            "src": "", "dst": "", "proto": 0, "sport": 0, "dport": 0, "tcp_flags": 0,
            "length": 0, "netns": "", "interface": ""}  # fmt: skip


def parse_drop(line: str, reasons: dict[int, str]) -> dict | None:
    """One ``D|...`` line of the watcher as a drop record; None for anything else."""
    parts = line.rstrip("\n").split("|")
    if len(parts) != len(FIELDS) + 1 or parts[0] != "D":
        return None
    values = dict(zip(FIELDS, parts[1:], strict=True))
    try:
        record = {
            "ts": float(values["ts"]),
            "reason": reasons.get(int(values["reason"]), f"reason {values['reason']}"),
            "function": values["function"].split("+")[0],
            "src": values["src"], "dst": values["dst"], "proto": int(values["proto"]),
            "sport": int(values["sport"]), "dport": int(values["dport"]),
            "tcp_flags": int(values["tcp_flags"]), "length": int(values["length"]),
            "netns": f"net:[{values['netns']}]" if values["netns"] != "0" else "",
            "interface": values["interface"],
        }  # fmt: skip
    except ValueError:
        return None
    return record


@dataclass
class DropWatchResult:
    node: str
    tier: str  # "bpftrace"; "tracefs" (reason and function, no addresses); "unavailable"
    message: str = ""  # why it could not watch
    drops: int = 0
    path: Path | None = None

    def describe(self) -> str:
        """What the watcher gave, in one line."""
        if self.tier == "unavailable":
            return f"drops on {self.node}: not watched: {self.message}"
        if self.tier == "tracefs":
            return (f"drops on {self.node}: {self.drops}, any packet's: tracefs gives reasons "
                    f"and functions, no addresses (install bpftrace for those), to {self.path}")  # fmt: skip
        return (
            f"drops on {self.node}: {self.drops} of the Pods' packets ({self.tier}) to {self.path}"
        )


@dataclass
class DropWatch:
    """One node's drop watcher: ``run()`` blocks until it ends, ``stop()`` ends it."""

    transport: Transport
    addresses: list[str]
    output: Path
    bound: int
    node_pid: str | None = "1"
    # When ``addresses`` is empty: gives them once the capture runs (a container's own,
    # for a capture --via local/ssh that knows only its PID); [] when it has none.
    resolve: Callable[[], list[str]] | None = None
    _process: RemoteProcess | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self._lock:
            if self._process is None:
                argv = drops_argv(self.addresses, self.bound, self.node_pid)
                self._process = self.transport.start(argv)
                if self._stopped:
                    self._process.stop()

    def wait_ready(self, timeout: float = 30) -> bool:
        """True once the program is attached (or the node said it cannot watch)."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        process = self._halt()
        if process is not None:
            process.stop()
            timer = threading.Timer(STOP_GRACE, process.kill)
            timer.daemon = True
            timer.start()

    def kill(self) -> None:
        process = self._halt()
        if process is not None:
            process.kill()

    def _halt(self) -> RemoteProcess | None:
        """Mark the watch stopped (a start after this stops at once); its process, if any."""
        with self._lock:
            self._stopped = True
            return self._process

    def run(self) -> DropWatchResult:
        if not self.addresses and self.resolve is not None:
            self.addresses = [a for a in self.resolve() if ipaddress.ip_address(a).version == 4]
        if not self.addresses:
            self._ready.set()
            return unavailable(self, "the capture's target has no IPv4 address to watch")
        self.start()
        result = DropWatchResult(self.transport.node, "bpftrace", path=self.output)
        reasons: dict[int, str] = {}
        root, boot_to_wall = "", None
        with self.output.open("w", encoding="utf-8") as out:
            for line in _lines(self._process.stdout):
                if line.startswith("R "):
                    reasons = reason_names(line)
                elif line.startswith("N "):
                    root = line[2:].strip()
                elif line.startswith("unavailable: "):
                    result.tier, result.message = "unavailable", line.split(": ", 1)[1].strip()
                    self._ready.set()
                elif line.startswith("T "):
                    wall, boot = map(float, line.split()[1:3])
                    boot_to_wall = wall - boot
                elif line.startswith("Attaching"):
                    result.tier = "tracefs" if "tracefs" in line else "bpftrace"
                    out.write(json.dumps(_header(result, root)) + "\n")
                    out.flush()
                    self._ready.set()
                elif (drop := _parsed(line, reasons, boot_to_wall)) is not None:
                    out.write(json.dumps(drop) + "\n")
                    result.drops += 1
            if result.tier == "unavailable" or not self._ready.is_set():
                out.seek(0)
                out.truncate()
                result.tier = "unavailable"
                result.message = result.message or self._why_not()
                out.write(json.dumps(_header(result, root)) + "\n")
        self._ready.set()
        self._process.wait(timeout=STOP_GRACE + 5)
        return result

    def _why_not(self) -> str:
        said = self._process.stderr_text().strip().splitlines() if self._process else []
        return "the watcher ended before it attached" + (f": {said[-1]}" if said else "")


def _parsed(line: str, reasons: dict[int, str], boot_to_wall: float | None) -> dict | None:
    if boot_to_wall is not None:
        return parse_traced(line, boot_to_wall)
    return parse_drop(line, reasons)


def unavailable(watch: DropWatch, message: str) -> DropWatchResult:
    """The result (and the file's header) of a watcher that could not run at all."""
    result = DropWatchResult(watch.transport.node, "unavailable", message, path=watch.output)
    watch.output.write_text(json.dumps(_header(result, "")) + "\n", encoding="utf-8")
    return result


def _lines(stream):
    """The stream's lines as they come (a transport's stdout gives chunks, not lines)."""
    from podcap.capture.stream import read_chunks

    next_chunk, pending = read_chunks(stream), b""
    while chunk := next_chunk():
        pending += chunk
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def _header(result: DropWatchResult, root: str) -> dict:
    return header(result.node, result.tier, result.message, root)
