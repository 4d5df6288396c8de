"""The drops file, ``NODE.drops.jsonl``: what a node's drop watcher (``podcap.capture.drops``)
recorded, read by the analysis (``podcap.path.kernel_drops``). Its first line is a header
(``podcap_drops``: this format's version; the node; the tier it watched with, ``bpftrace`` or
``unavailable``; why not; the node's root network namespace), then one JSON object per
dropped packet: ``ts`` (seconds, the pcap's clock), ``reason`` (the kernel's name),
``function``, ``src``, ``dst``, ``proto``, ``sport``, ``dport``, ``tcp_flags``, ``length``,
``netns`` (``net:[INODE]``, "" when the packet had no device) and ``interface``. Each
capture's sidecar names its node's file in ``cluster.drops.file``.
"""

from __future__ import annotations

import json
from pathlib import Path

FORMAT_VERSION = 1


def header(node: str, tier: str, message: str, root_netns: str) -> dict:
    return {"podcap_drops": FORMAT_VERSION, "node": node, "tier": tier, "message": message,
            "root_netns": root_netns}  # fmt: skip


def read_drops(path: str | Path) -> tuple[dict, list[dict]]:
    """A drops file's header and its drops; ValueError when it is not one."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0]) if lines else {}
    if not isinstance(first, dict) or first.get("podcap_drops") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a podcap drops file of format {FORMAT_VERSION}")
    return first, [json.loads(line) for line in lines[1:] if line.strip()]


def drops_files(sidecars: dict[str, dict]) -> list[Path]:
    """The drops files the captures' sidecars name, beside the captures, once each."""
    found: dict[Path, None] = {}
    for capture, sidecar in sidecars.items():
        name = (((sidecar or {}).get("cluster") or {}).get("drops") or {}).get("file")
        path = Path(capture).parent / name if name else None
        if path is not None and path.exists():
            found[path] = None
    return list(found)
