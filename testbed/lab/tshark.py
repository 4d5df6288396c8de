"""Reading captures with tshark, the reference the lab's tests and the sample sidecars check
against (Wireshark's dissectors, not ours)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from testbed.helpers import tshark_fields

VXLAN_DECODE = "udp.port==8472,vxlan"


def fields(
    path: str,
    names: Sequence[str],
    display_filter: str | None = None,
    decode_as: Sequence[str] = (),
) -> list[dict[str, str]]:
    """One dict per packet (matching ``display_filter``) with the named fields' values.

    A field that occurs more than once (inner and outer IP of a VXLAN packet) keeps all its
    values joined by commas, in the order tshark shows them (outer first).
    """
    extra = [arg for rule in decode_as for arg in ("-d", rule)]
    lines = tshark_fields(path, *names, display_filter=display_filter, extra=extra)
    rows = []
    for values in lines:
        values += [""] * (len(names) - len(values))
        rows.append(dict(zip(names, values, strict=True)))
    return rows


def count(path: str, display_filter: str, decode_as: Sequence[str] = ()) -> int:
    return len(fields(path, ["frame.number"], display_filter, decode_as))


def capinfos(path: str) -> dict[str, str]:
    """capinfos -M's "File type", "File encapsulation" and the rest, as a dict."""
    out = subprocess.run(
        ["capinfos", "-M", path], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    info = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info
