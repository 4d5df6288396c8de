"""Display filters podcap does not evaluate itself, run by tshark with the same meaning.

A filter runs as tshark's own ``-Y`` over the file (through ``podcap.decode.pyshark_reader``,
imported only when a capture is read: compiling a filter stays light); each matching packet's
number is the packet table's ``frame`` (1-based), so the result maps straight onto it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from podcap import pcapfile
from podcap.errors import FilterError
from podcap.tshark import tshark_path, tshark_problems

# An empty classic pcap (header only): lets tshark check a filter without any capture.
_EMPTY_PCAP = pcapfile.pcap_header(snaplen=65535, linktype=pcapfile.EN10MB)
# A filter needs only the matching packets' numbers: PDML cut down to the general information
# block (-j keeps the named protocols' fields) is ~1 kB a packet instead of ~17 kB. Not PSML
# (pyshark's only_summaries): pyshark 0.6 loses every packet after its first read there.
_NUMBERS_ONLY = ["-j", "geninfo"]


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
        matching_frames(empty.name, text)


def matching_frames(path: str | Path, text: str) -> np.ndarray:
    """Frame numbers (1-based) of the packets in ``path`` that ``text`` matches, per tshark."""
    frames: list[int] = []
    # -Y directly: pyshark's display_filter= first runs `tshark -v` to choose between -R and
    # -Y, and every tshark since 1.10 takes -Y.
    from podcap.decode.pyshark_reader import read_packets  # pyshark costs 0.08 s to import

    parameters = ["-Y", text, *_NUMBERS_ONLY]
    run = read_packets(Path(path), lambda packet: frames.append(int(packet.number)), parameters)
    if run.exit_status:
        # tshark prints "tshark: <problem>." then the filter with a caret under the culprit;
        # the first line is the one-line message.
        problems = tshark_problems(run.stderr_lines) or ["tshark rejected it"]
        raise FilterError(f"display filter {text!r}: {problems[0]}")
    return np.array(frames, dtype=np.int64)
