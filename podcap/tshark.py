"""tshark itself: where it is, the decode-as rules podcap gives it, and reading its complaints.

Both tshark paths build on this: the display-filter fallback (``podcap.dfilter.tshark_fallback``)
and ``--engine tshark`` (``podcap.decode.tshark_engine``), each through
``podcap.decode.pyshark_reader``.
"""

from __future__ import annotations

import shutil

# Flannel and Cilium use VXLAN on 8472; tshark decodes only 4789 unless told (the notes in
# analysis-peers §3), and podcap's own decoder decapsulates both.
DECODE_AS = {"udp.port==8472": "vxlan"}


def tshark_path() -> str | None:
    return shutil.which("tshark")


def tshark_problems(stderr: str | list[str]) -> list[str]:
    """tshark's complaints, one per line, without its ``tshark:`` prefix and final period."""
    lines = stderr.splitlines() if isinstance(stderr, str) else stderr
    # Skipped: the notice tshark prints when run as root, which is not a problem.
    stripped = (line.strip() for line in lines)
    return [
        line.removeprefix("tshark: ").rstrip(".")
        for line in stripped
        if line and not line.startswith("Running as user")
    ]
