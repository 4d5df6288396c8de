"""The probe ``podcap diagnose`` sends from inside the source Pod's network namespace.

It is curl (in the helper image and on nodes), from a source port chosen here, so that the
probe's connection is found in every capture by its client port, also when nothing answers and
no byte of payload ever flows. ``tcp``: a connection that sends the guide's marker (``lbtest``,
here ``podcap-NONCE``) and prints the answer; ``http``: ``GET /podcap-NONCE``, the guide's
``/mytest``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

PROBE_KINDS = ("tcp", "http", "none")
PORTS = (32768, 60999)  # Linux's ephemeral range: what a real client's port looks like
CURL_EXIT = {0: "answered", 7: "refused (nothing listens, or a REJECT rule)",
             28: "timed out", 52: "connected, no HTTP answer", 56: "reset"}  # fmt: skip


@dataclass(frozen=True)
class Probe:
    kind: str  # "tcp" or "http"
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

    def argv(self) -> list[str]:
        """The command, run in the source Pod's network namespace (each item passed as is)."""
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
        what = f"GET /{self.marker}" if self.kind == "http" else f"{self.marker!r}"
        if self.kind == "tcp" and self.size:
            what += f" then {self.size} bytes"
        return f"{self.kind} from port {self.local_port} to {self.ip}:{self.port}, {what}"


SEND = """marker=$1; size=$2; shift 2
{ printf '%s ' "$marker"
  if [ "$size" -gt 0 ]; then sleep 0.3; head -c "$size" /dev/zero | tr '\\0' x; fi
  printf '\\r\\n'; } | "$@"
"""


def curl_outcome(status: int) -> str:
    """What curl's exit status says of the probe, in words."""
    return CURL_EXIT.get(status, f"curl exit {status}")
