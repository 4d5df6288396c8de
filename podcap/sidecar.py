"""The sidecar: the JSON document beside a capture, saying what was captured, where, how and when.

``podcap capture`` writes ``NAME.pcap.json`` beside ``NAME.pcap``; the bundled samples carry
``NAME.json``. Both are the same document (format 2), written through :func:`write_sidecar` and
read only through :func:`read_sidecar`, which also reads format 1 (podcap before the two-wing
layout: flat ``target``/``node``/``filter``/... fields, or the samples' ``captured_at``/
``capture``) and returns it as format 2, so old files keep working. Every section below is always
present, and every field of it, null when unknown::

    podcap_sidecar   2 (the format; absent in the oldest files)
    podcap_version   the podcap that wrote it
    file     name            the capture's file name
             format          "pcap" or "pcapng"
             linktype        the pcap link-layer type number (1 Ethernet, 276 Linux cooked v2)
    point    kind            "pod" (a Pod's or container's network namespace), "node" (the node's
                             own namespace) or "peer" (a host outside the cluster); null when
                             podcap cannot tell (a bare ``--pid``)
             target          what was captured, as the summary report names it: NAMESPACE/POD,
                             a container id, "pid N" or the peer's host name
             node            the node (host) the capture ran on
             interface       the interface tcpdump listened on
             namespace, pod  the Pod, when the point is one and it is known
             container_id    the container asked for
             pid, netns      the process whose network namespace was entered, and that netns
             description     where, in words (the samples say "inside Pod default/web-b0's ...")
    how      tool            "tcpdump" or "dumpcap"
             transport       how podcap reached the node: "local", "ssh" or "pod"
             filter          the BPF capture filter ("" for none)
             snaplen         bytes kept per packet (null: tcpdump's default, the whole packet)
             command         the command line, when recorded
    when     started, ended  ISO 8601 UTC
             listening       when the first bytes came home (tcpdump writes the pcap header
                             once it listens): where captures taken together began, as seen
                             from podcap; null in older files
    counts   packets, bytes  what the pcap file holds
             tcpdump         tcpdump's closing statistics and the bytes the node sent: captured,
                             received, dropped (by the kernel), written, status
             complete        true when the node reported its statistics and every byte arrived
             ended_by        why it stopped: duration, count, max-bytes, interrupted, ...
    cluster  (an object)     facts from the Kubernetes API, {} without it: source, pod (namespace,
                             pod, uid, container, container_id, pod_ips, host_ip, host_network,
                             node {name, internal_ip, pod_cidrs}), pod_ip, node_ip, pod_cidrs,
                             service_cidr, ip_masq_agent {configmap, config, raw}, helper_pod,
                             node_rules {iptables-save, ipvsadm, ...}, node_capture {file,
                             interface}

The samples' ground truth (scenario, lab topology, expected requests and verdicts) is not part
of the sidecar: it lives in ``sample_pcaps/NAME.truth.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from podcap.errors import DecodeError
from podcap.version import __version__

SIDECAR_SUFFIX = ".json"
SIDECAR_FORMAT = 2

# Each section's fields, in the order written.
SECTIONS: dict[str, tuple[str, ...]] = {
    "file": ("name", "format", "linktype"),
    "point": (
        "kind",
        "target",
        "node",
        "interface",
        "namespace",
        "pod",
        "container_id",
        "pid",
        "netns",
        "description",
    ),
    "how": ("tool", "transport", "filter", "snaplen", "command"),
    "when": ("started", "listening", "ended"),
    "counts": ("packets", "bytes", "tcpdump", "complete", "ended_by"),
}
POINT_KINDS = ("pod", "node", "peer")
# Format 1 files without a ``cluster`` object may hold its keys at the top level.
CLUSTER_KEYS = (
    "source",
    "pod",
    "pod_ip",
    "node_ip",
    "pod_cidrs",
    "service_cidr",
    "ip_masq_agent",
    "helper_pod",
    "node_rules",
    "node_capture",
)


class FinishedCapture(Protocol):
    """What the writer reads off a finished capture (``podcap.capture.CaptureResult``), so the
    floor needs nothing from the acquire wing."""

    spec: Any  # a podcap.capture.CaptureSpec
    node: str
    transport: str
    output: str
    started: datetime
    listening: datetime | None
    ended: datetime
    ended_by: str
    pid: int | None
    netns: str | None
    packets: int
    bytes_written: int
    linktype: int | None
    node_stats: Any  # a podcap.capture.NodeStats dataclass, or None
    complete: bool


def sidecar_path(pcap_path: str) -> str:
    return pcap_path + SIDECAR_SUFFIX


def sidecar_document(cluster: Mapping | None = None, **sections: Mapping) -> dict:
    """A format 2 document from its sections (``point={...}``, ...; a field left out is null)
    and the ``cluster`` facts; ValueError for a section or field the format does not have."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"sidecar sections are {', '.join(SECTIONS)}, not {sorted(unknown)}")
    document: dict = {"podcap_sidecar": SIDECAR_FORMAT, "podcap_version": __version__}
    for name, fields in SECTIONS.items():
        given = dict(sections.get(name) or {})
        if set(given) - set(fields):
            raise ValueError(f"sidecar {name} has no field {sorted(set(given) - set(fields))}")
        document[name] = {field: given.get(field) for field in fields}
    document["cluster"] = dict(cluster or {})
    return document


def capture_document(result: FinishedCapture, cluster: Mapping | None = None) -> dict:
    """The document for a capture ``podcap capture`` made; ``cluster`` as the Kubernetes side
    gathered it (``podcap.capture.fleet``), {} without the API."""
    spec = result.spec
    kind = _capture_kind(spec, cluster or {})
    pod = (cluster or {}).get("pod") if kind == "pod" else None
    pod = pod if isinstance(pod, Mapping) else {}
    asked = spec.container_id or (f"pid {spec.pid}" if spec.pid else None)
    return sidecar_document(
        file={
            "name": os.path.basename(result.output),
            "format": "pcap",
            "linktype": result.linktype,
        },
        point={
            "kind": kind,
            "target": asked,
            "node": result.node,
            "interface": spec.interface,
            "namespace": pod.get("namespace"),
            "pod": pod.get("pod"),
            "container_id": spec.container_id,
            "pid": result.pid,
            "netns": result.netns,
        },
        how={
            "tool": "tcpdump",
            "transport": result.transport,
            "filter": spec.bpf_filter,
            "snaplen": spec.snaplen,
        },
        when={
            "started": result.started.isoformat(),
            "listening": result.listening.isoformat() if result.listening else None,
            "ended": result.ended.isoformat(),
        },
        counts={
            "packets": result.packets,
            "bytes": result.bytes_written,
            "tcpdump": asdict(result.node_stats) if result.node_stats else None,
            "complete": result.complete,
            "ended_by": result.ended_by,
        },
        cluster=cluster,
    )


def _capture_kind(spec: Any, cluster: Mapping) -> str | None:
    if spec.node_view:
        return "node"
    if spec.container_id or isinstance(cluster.get("pod"), Mapping):
        return "pod"
    return None  # a bare PID: its namespace may be a container's or the node's own


def write_sidecar(path: str, document: Mapping) -> str:
    """Write ``document`` (from :func:`sidecar_document`) atomically: a reader never sees half
    a JSON document. Returns ``path``."""
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
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
    """The sidecar of ``pcap_path`` as a format 2 document, or None when there is none;
    DecodeError (naming the file) when it is not a readable sidecar."""
    path = find_sidecar(pcap_path)
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"{path}: not readable JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise DecodeError(f"{path}: not a JSON object")
    return current_document(document, str(path))


def current_document(document: Mapping, source: str) -> dict:
    """``document`` (parsed JSON) in format 2: format 1 converted, format 2 with every section
    and field present; DecodeError for a format this podcap does not know."""
    version = document.get("podcap_sidecar")
    if version in (None, 1):
        return _from_format_1(document)
    if version != SIDECAR_FORMAT:
        raise DecodeError(
            f"{source}: sidecar format {version!r}, newer than this podcap reads "
            f"({SIDECAR_FORMAT}); upgrade podcap"
        )
    completed = dict(document)
    for name, fields in SECTIONS.items():
        section = document.get(name) or {}
        if not isinstance(section, Mapping):
            raise DecodeError(f"{source}: sidecar {name} is not a JSON object")
        completed[name] = {**dict.fromkeys(fields), **section}
    if not isinstance(completed.setdefault("cluster", {}), Mapping):
        raise DecodeError(f"{source}: sidecar cluster is not a JSON object")
    return completed


# --- format 1 -----------------------------------------------------------------------------
# Capture sidecars: flat fields, ``target`` {container_id, pid} and ``cluster``. Samples:
# ``captured_at`` {kind, pod, namespace, node, host, interface, description} and ``capture``
# {tool, interface, filter, command, packets}. Hand-written ones: ``target`` as text or
# {namespace, pod}, ``node`` as text or {name}. Read as the format 1 readers read them.


def _from_format_1(old: Mapping) -> dict:
    where, how = _mapping(old.get("captured_at")), _mapping(old.get("capture"))
    names = where or _mapping(old.get("target"))
    linktype = old.get("linktype")
    document = sidecar_document(
        file={
            "name": old.get("file"),
            "format": old.get("format") or ("pcap" if old.get("podcap_sidecar") == 1 else None),
            "linktype": linktype if isinstance(linktype, int) else None,
        },
        point={
            "kind": where.get("kind"),
            "target": _old_target(old),
            "node": _old_node(old),
            "interface": old.get("interface") or where.get("interface") or how.get("interface"),
            "namespace": names.get("namespace"),
            "pod": names.get("pod"),
            "container_id": old.get("container_id"),
            "pid": old.get("pid"),
            "netns": old.get("netns"),
            "description": where.get("description"),
        },
        how={
            "tool": how.get("tool"),
            "transport": old.get("transport"),
            "filter": old.get("filter", how.get("filter")),
            "snaplen": old.get("snaplen"),
            "command": how.get("command"),
        },
        when={"started": old.get("started"), "listening": None, "ended": old.get("ended")},
        counts={
            "packets": old.get("packets", how.get("packets")),
            "bytes": old.get("bytes"),
            "tcpdump": old.get("tcpdump"),
            "complete": old.get("complete"),
            "ended_by": old.get("ended_by"),
        },
        cluster=_old_cluster(old),
    )
    document["podcap_version"] = old.get("podcap_version")
    return document


def _old_target(old: Mapping) -> str | None:
    for key in ("target", "captured_at"):
        value = old.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping):
            name = value.get("pod") or value.get("name") or value.get("container_id")
            name = name or value.get("host")  # a capture point outside the cluster
            if name:
                namespace = value.get("namespace")
                return f"{namespace}/{name}" if namespace else str(name)
            if value.get("pid"):
                return f"pid {value['pid']}"
    return None


def _old_node(old: Mapping) -> str | None:
    candidates = [old.get("node")]
    candidates += [
        _mapping(old.get(key)).get("node") for key in ("target", "captured_at", "cluster")
    ]
    for node in candidates:
        if isinstance(node, Mapping):
            node = node.get("name") or node.get("host") or node.get("ip")
        if node:
            return str(node)
    return None


def _old_cluster(old: Mapping) -> dict:
    if isinstance(old.get("cluster"), Mapping):
        return dict(old["cluster"])
    return {key: old[key] for key in CLUSTER_KEYS if key in old}


def _mapping(value: object) -> Mapping:
    return value if isinstance(value, Mapping) else {}
