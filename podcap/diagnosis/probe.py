"""The probe ``podcap diagnose`` sends from inside the source Pod's network namespace.

``tcp`` and ``http`` are curl (in the helper image and on nodes), from a source port chosen
here, so that the probe's connection is found in every capture by its client port, also when
nothing answers and no byte of payload ever flows. ``tcp``: a connection that sends the
guide's marker (``lbtest``, here ``podcap-NONCE``) and prints the answer; ``http``:
``GET /podcap-NONCE``, the guide's ``/mytest``. ``udp``: one datagram carrying the marker,
from bash's ``/dev/udp`` (which picks the source port: the datagram is found by its marker),
waiting for any answer; ``icmp``: ``ping``, its echoes filled with the nonce (``-p``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

PROBE_KINDS = ("tcp", "http", "udp", "icmp", "none")
PORTS = (32768, 60999)  # Linux's ephemeral range: what a real client's port looks like
CURL_EXIT = {0: "answered", 7: "refused (nothing listens, or a REJECT rule)",
             28: "timed out", 52: "connected, no HTTP answer", 56: "reset"}  # fmt: skip
UDP_EXIT = {0: "answered", 1: "refused (ICMP unreachable: nothing listens, or a REJECT rule)",
            2: "no answer"}  # fmt: skip
PING_EXIT = {0: "answered", 1: "no answer", 2: "failed (no route?)"}
PINGS = 3


@dataclass(frozen=True)
class Probe:
    kind: str  # "tcp", "http", "udp" or "icmp"
    ip: str
    port: int
    timeout: float = 3.0
    size: int = 0  # tcp: bytes of padding sent after the marker, in a segment of their own
    nonce: str = field(default_factory=lambda: secrets.token_hex(4))
    local_port: int = field(
        default_factory=lambda: PORTS[0] + secrets.randbelow(PORTS[1] - PORTS[0])
    )

    @property
    def marker(self) -> str:
        return f"podcap-{self.nonce}"

    @property
    def tool(self) -> str:
        """The program the node (or helper) must have for it."""
        return {"udp": "bash", "icmp": "ping"}.get(self.kind, "curl")

    def argv(self) -> list[str]:
        """The command, run in the source Pod's network namespace (each item passed as is)."""
        if self.kind == "udp":
            return ["bash", "-c", SEND_DATAGRAM, "podcap-probe", self.marker, self.ip,
                    str(self.port), f"{self.timeout:g}"]  # fmt: skip
        if self.kind == "icmp":
            # -p: the echoes' payload is the nonce repeated, so they are told from any other.
            return ["ping", "-n", "-c", str(PINGS), "-i", "0.2", "-W", f"{self.timeout:g}",
                    "-p", self.nonce, self.ip]  # fmt: skip
        common = ["curl", "-sS", "--max-time", f"{self.timeout:g}", "--local-port",
                  str(self.local_port)]  # fmt: skip
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        if self.kind == "http":
            out = ["-o", "/dev/null", "-w", "%{http_code}"]
            return [*common, *out, f"http://{host}:{self.port}/{self.marker}"]
        # The marker goes through curl's stdin; values are sh's arguments, never its script.
        # With a size, the padding follows in a segment of its own (the pause parts them): a
        # small segment and a large one, so a path that passes only the first shows its MTU.
        return ["sh", "-c", SEND, "podcap-probe", self.marker, str(self.size), *common,
                f"telnet://{host}:{self.port}"]  # fmt: skip

    def describe(self) -> str:
        if self.kind == "icmp":
            return f"icmp: {PINGS} pings to {self.ip}, payload {self.nonce}"
        if self.kind == "udp":
            return f"udp to {self.ip}:{self.port}, {self.marker!r}"
        what = f"GET /{self.marker}" if self.kind == "http" else f"{self.marker!r}"
        if self.kind == "tcp" and self.size:
            what += f" then {self.size} bytes"
        return f"{self.kind} from port {self.local_port} to {self.ip}:{self.port}, {what}"


SEND = """marker=$1; size=$2; shift 2
{ printf '%s ' "$marker"
  if [ "$size" -gt 0 ]; then sleep 0.3; head -c "$size" /dev/zero | tr '\\0' x; fi
  printf '\\r\\n'; } | "$@"
"""


# bash: the datagram through /dev/udp, then the first byte of an answer. read fails at once
# on an ICMP unreachable (ECONNREFUSED: exit 1) and after the timeout with none (exit 2).
SEND_DATAGRAM = """marker=$1; ip=$2; port=$3; wait=$4
exec 3<>"/dev/udp/$ip/$port" || exit 3
printf '%s\\r\\n' "$marker" >&3 || exit 1
read -r -t "$wait" -N 1 answer <&3 2>/dev/null; status=$?
[ "$status" -eq 0 ] && exit 0
[ "$status" -gt 128 ] && exit 2
exit 1
"""


def probe_outcome(kind: str, status: int) -> str:
    """What the probe tool's exit status says, in words."""
    if kind == "udp":
        return UDP_EXIT.get(status, f"bash exit {status}")
    if kind == "icmp":
        return PING_EXIT.get(status, f"ping exit {status}")
    return CURL_EXIT.get(status, f"curl exit {status}")


def curl_outcome(status: int) -> str:
    """What curl's exit status says, in words."""
    return CURL_EXIT.get(status, f"curl exit {status}")
