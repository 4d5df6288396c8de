"""Display filters podcap does not evaluate itself, run through tshark with the same meaning.

tshark reads the file and prints the numbers of the matching frames; the packet table's
``frame`` column is the same 1-based number, so the result maps straight onto it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from podcap.errors import FilterError

# Flannel and Cilium use VXLAN on 8472; tshark decodes only 4789 unless told (the notes in
# analysis-peers §3), and podcap's own decoder decapsulates both.
DECODE_AS = ("-d", "udp.port==8472,vxlan")
# An empty classic pcap (header only): lets tshark check a filter without any capture.
_EMPTY_PCAP = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")


def tshark_path() -> str | None:
    return shutil.which("tshark")


def check_filter(text: str, reason: str) -> None:
    """Raise FilterError unless tshark exists and accepts ``text``."""
    if tshark_path() is None:
        raise FilterError(
            f"display filter {text!r} uses {reason}, which podcap evaluates only through "
            "tshark, and tshark is not installed",
            "install Wireshark's tshark, or use the fields listed in `podcap analyze --help`",
        )
    with tempfile.NamedTemporaryFile(suffix=".pcap") as empty:
        empty.write(_EMPTY_PCAP)
        empty.flush()
        _run_tshark(Path(empty.name), text)


def matching_frames(path: str | Path, text: str) -> np.ndarray:
    """Frame numbers (1-based) of the packets in ``path`` that ``text`` matches, per tshark."""
    out = _run_tshark(Path(path), text)
    return np.array([int(line) for line in out.split()], dtype=np.int64)


def _run_tshark(path: Path, text: str) -> str:
    argv = [tshark_path() or "tshark", "-n", "-r", str(path), *DECODE_AS, "-Y", text]
    argv += ["-T", "fields", "-e", "frame.number"]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        # tshark prints "tshark: <problem>." then the filter with a caret under the culprit;
        # the first line is the one-line message.
        problems = tshark_problems(result.stderr) or ["tshark rejected it"]
        raise FilterError(f"display filter {text!r}: {problems[0]}")
    return result.stdout


def tshark_problems(stderr: str) -> list[str]:
    """tshark's complaints, one per line, without its ``tshark:`` prefix and final period."""
    # Skipped: the notice tshark prints when run as root, which is not a problem.
    lines = (line.strip() for line in stderr.splitlines())
    return [
        line.removeprefix("tshark: ").rstrip(".")
        for line in lines
        if line and not line.startswith("Running as user")
    ]
