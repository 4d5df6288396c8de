"""The sidecar: ``CAPTURE.pcap.json`` beside a pcap, saying what was captured where and how.

Fields: ``target`` (container id / pid as asked), ``node``, ``transport``, ``container_id``,
``pid`` (resolved on the node), ``netns``, ``interface``, ``filter``, ``snaplen``, ``started``/
``ended`` (ISO 8601 UTC), ``ended_by``, ``packets``, ``bytes``, ``linktype``, ``tcpdump``
(captured, received, dropped by kernel, bytes written on the node, exit status; null when the
node never reported them), ``complete`` and ``cluster``: an object the Kubernetes side fills
(Pod, namespace, node IP, ...), empty for captures made without the Kubernetes API.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from podcap.errors import DecodeError
from podcap.version import __version__

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = 1


def sidecar_path(pcap_path: str) -> str:
    return pcap_path + SIDECAR_SUFFIX


def sidecar_document(result, cluster: dict | None = None) -> dict:
    """The document for a finished capture: ``result`` is a ``podcap.capture.CaptureResult``
    (read by attribute, so the floor needs nothing from the acquire wing)."""
    spec = result.spec
    return {
        "podcap_sidecar": SIDECAR_FORMAT,
        "podcap_version": __version__,
        "target": {"container_id": spec.container_id, "pid": spec.pid},
        "node": result.node,
        "transport": result.transport,
        "container_id": spec.container_id,
        "pid": result.pid,
        "netns": result.netns,
        "interface": spec.interface,
        "filter": spec.bpf_filter,
        "snaplen": spec.snaplen,
        "started": result.started.isoformat(),
        "ended": result.ended.isoformat(),
        "ended_by": result.ended_by,
        "packets": result.packets,
        "bytes": result.bytes_written,
        "linktype": result.linktype,
        "tcpdump": asdict(result.node_stats) if result.node_stats else None,
        "complete": result.complete,
        "cluster": dict(cluster or {}),
    }


def write_sidecar(path: str, result, cluster: dict | None = None) -> str:
    """Write the sidecar atomically (a reader never sees half a JSON document); returns path."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(sidecar_document(result, cluster), f, indent=2)
        f.write("\n")
    os.replace(temporary, path)
    return path


def find_sidecar(pcap_path: str) -> Path | None:
    """The capture's sidecar file: ``NAME.pcap.json`` (what capture writes) or ``NAME.json``
    (the bundled samples), when there is one."""
    for candidate in (Path(sidecar_path(pcap_path)), Path(pcap_path).with_suffix(SIDECAR_SUFFIX)):
        if candidate.is_file() and candidate != Path(pcap_path):
            return candidate
    return None


def read_sidecar(pcap_path: str) -> dict | None:
    """The sidecar of ``pcap_path`` as a dict, or None when there is none; DecodeError (naming
    the file) when it is not a readable JSON object."""
    path = find_sidecar(pcap_path)
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise DecodeError(f"{path}: not a JSON object")
    return document
