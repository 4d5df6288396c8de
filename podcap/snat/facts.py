"""Cluster facts: which addresses are Pods, nodes and Services.

They come from flags (``--pod-cidr``, ``--node-ip``, ``--service-cidr``), a ``--facts`` file
(YAML or JSON) and the sidecar ``podcap capture`` writes next to each pcap. All sources are
merged; none is required.

A facts file looks like::

    pod_cidrs: [10.244.0.0/16]
    service_cidrs: [10.96.0.0/12]
    nodes:
      - {name: node-a, ip: 192.168.56.10}
    pods:
      - {name: web-1, namespace: default, ip: 10.244.1.2, node: node-a, host_ip: 192.168.56.10}
    ipsets: {cali40masq-ipam-pools: [10.244.0.0/16]}

Key spellings are forgiving: ``podCIDRs``, ``pod-cidrs`` and ``pod_cidrs`` are the same key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from podcap.errors import UsageError
from podcap.snat.inputfiles import load_mapping, read_text_file


@dataclass(frozen=True)
class PodInfo:
    ip: str
    name: str = ""
    namespace: str = ""
    node: str = ""
    host_ip: str = ""

    @property
    def label(self) -> str:
        name = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"Pod {name} ({self.ip})" if name else f"Pod {self.ip}"


@dataclass(frozen=True)
class ClusterFacts:
    pod_cidrs: tuple[str, ...] = ()
    service_cidrs: tuple[str, ...] = ()
    # node IP -> node name ("" when only the address is known)
    nodes: Mapping[str, str] = field(default_factory=dict)
    pods: Mapping[str, PodInfo] = field(default_factory=dict)
    ipsets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.pod_cidrs or self.service_cidrs or self.nodes or self.pods)

    def is_pod(self, address: str) -> bool:
        return address in self.pods or _in_any(address, self.pod_cidrs)

    def is_node(self, address: str) -> bool:
        return address in self.nodes

    def is_service(self, address: str) -> bool:
        return _in_any(address, self.service_cidrs)

    def in_cluster(self, address: str) -> bool:
        return self.is_pod(address) or self.is_node(address) or self.is_service(address)

    def pod_cidr_of(self, address: str) -> str:
        return next((c for c in self.pod_cidrs if _in_any(address, (c,))), "")

    def describe_node(self, address: str) -> str:
        name = self.nodes.get(address, "")
        return f"node {name} ({address})" if name else f"node {address}"

    def describe_source(self, address: str) -> str:
        if address in self.pods:
            return self.pods[address].label
        if self.is_pod(address):
            return f"Pod {address} (in pod CIDR {self.pod_cidr_of(address)})"
        return address

    def merged(self, other: ClusterFacts) -> ClusterFacts:
        return ClusterFacts(
            pod_cidrs=tuple(dict.fromkeys(self.pod_cidrs + other.pod_cidrs)),
            service_cidrs=tuple(dict.fromkeys(self.service_cidrs + other.service_cidrs)),
            nodes={**self.nodes, **{k: v or self.nodes.get(k, "") for k, v in other.nodes.items()}},
            pods={**self.pods, **other.pods},
            ipsets={**self.ipsets, **other.ipsets},
        )


def facts_from_flags(
    pod_cidrs: Iterable[str] = (), node_ips: Iterable[str] = (), service_cidrs: Iterable[str] = ()
) -> ClusterFacts:
    """Facts given on the command line; every address is checked here, so typos fail early."""
    return ClusterFacts(
        pod_cidrs=tuple(_cidr(c, "--pod-cidr") for c in pod_cidrs),
        service_cidrs=tuple(_cidr(c, "--service-cidr") for c in service_cidrs),
        nodes={_address(ip, "--node-ip"): "" for ip in node_ips},
    )


# What a --facts file may hold: the facts themselves, or a capture sidecar's cluster section.
FACTS_FILE_NAMES = ("pod_cidrs", "service_cidrs", "node_ips", "nodes", "pods", "ipsets")
_SIDECAR_CLUSTER_NAMES = (
    "cluster_cidr", "source", "pod", "pod_ip", "node_ip", "host_ip", "namespace", "node",
    "node_name", "ip_masq_agent", "helper_pod", "node_rules", "node_capture",
)  # fmt: skip
FACTS_FILE_KEYS = frozenset(
    name.replace("_", "") for name in FACTS_FILE_NAMES + _SIDECAR_CLUSTER_NAMES
)


def load_facts(path: str | Path) -> ClusterFacts:
    """Read a ``--facts`` file (YAML or JSON)."""
    text = read_text_file(path, "facts file")
    source = f"facts file {path}"
    if not text.strip():
        raise UsageError(f"{source} is empty (expected pod_cidrs, nodes, pods, ...)")
    document = load_mapping(text, source, "pod_cidrs, nodes, pods, ...")
    unknown = [key for key in document if _normal_key(key) not in FACTS_FILE_KEYS]
    if unknown:
        raise UsageError(
            f"{source}: unknown key {unknown[0]!r}",
            hint=f"a facts file has {', '.join(FACTS_FILE_NAMES)} (or a sidecar's cluster keys)",
        )
    return facts_from_mapping(document, str(path))


def facts_from_mapping(document: Mapping, source: str) -> ClusterFacts:
    """Facts from a parsed facts file or capture sidecar."""
    keys = {_normal_key(k): v for k, v in document.items()}
    nodes = {_address(ip, f"{source} node_ips"): "" for ip in _list(keys.get("nodeips"))}
    for node in _list(keys.get("nodes")):
        node = (
            {_normal_key(k): v for k, v in node.items()}
            if isinstance(node, Mapping)
            else {"ip": node}
        )
        nodes[_address(node.get("ip") or node.get("internalip"), f"{source} nodes")] = str(
            node.get("name", "")
        )
    pods = {}
    for pod in _list(keys.get("pods")) + _sidecar_pod(keys):
        info = _pod_info(pod, source)
        pods[info.ip] = info
        if info.host_ip:
            nodes.setdefault(info.host_ip, info.node)
    return ClusterFacts(
        pod_cidrs=tuple(
            _cidr(c, f"{source} pod_cidrs")
            for c in _list(keys.get("podcidrs") or keys.get("clustercidr"))
        ),
        service_cidrs=tuple(
            _cidr(c, f"{source} service_cidrs") for c in _list(keys.get("servicecidrs"))
        ),
        nodes=nodes,
        pods=pods,
        ipsets={
            str(k): tuple(str(m) for m in _list(v)) for k, v in (keys.get("ipsets") or {}).items()
        },
    )


def _sidecar_pod(keys: Mapping) -> list[dict]:
    # A capture sidecar describes the one Pod it was taken in: {pod: name, pod_ip: ..., node: ...}.
    if not keys.get("podip"):
        return []
    return [
        {
            "ip": keys["podip"],
            "name": keys.get("pod", "") if isinstance(keys.get("pod"), str) else "",
            "namespace": keys.get("namespace", ""),
            "node": keys.get("node", "") or keys.get("nodename", ""),
            "host_ip": keys.get("hostip", "") or keys.get("nodeip", ""),
        }
    ]


def _pod_info(pod: object, source: str) -> PodInfo:
    if not isinstance(pod, Mapping):
        return PodInfo(ip=_address(pod, f"{source} pods"))
    keys = {_normal_key(k): v for k, v in pod.items()}
    host_ip = keys.get("hostip") or keys.get("nodeip") or ""
    return PodInfo(
        ip=_address(keys.get("ip") or keys.get("podip"), f"{source} pods"),
        name=str(keys.get("name", "")),
        namespace=str(keys.get("namespace", "")),
        node=str(keys.get("node") or keys.get("nodename") or ""),
        host_ip=_address(host_ip, f"{source} pods host_ip") if host_ip else "",
    )


def _normal_key(key: object) -> str:
    return str(key).lower().replace("_", "").replace("-", "")


def _list(value: object) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _cidr(value: object, where: str) -> str:
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError as exc:
        raise UsageError(f"{where}: {value!r} is not a CIDR") from exc


def _address(value: object, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError as exc:
        raise UsageError(f"{where}: {value!r} is not an IP address") from exc


def _in_any(address: str, cidrs: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr)
        if ip.version == network.version and ip in network:
            return True
    return False


@dataclass(frozen=True)
class SidecarFacts:
    """What one capture's sidecar says: cluster facts, the Pod it was taken in, agent config."""

    facts: ClusterFacts
    capture_pod_ip: str = ""
    masq_config_text: str = ""
    masq_configmap: str = ""
    iptables_save: str = ""


def facts_from_sidecar(sidecar: Mapping, source: str) -> SidecarFacts:
    """Read the ``cluster`` section of a sidecar (format 2, see :mod:`podcap.sidecar`).

    Shape: ``pod_ip``, ``node_ip``, ``pod_cidrs``, ``service_cidr``, ``pod`` (namespace, pod,
    pod_ips, host_ip, node {name, internal_ip}), ``ip_masq_agent`` (configmap, raw),
    ``node_rules`` (``podcap capture --node-rules``: iptables-save, ...).
    """
    section = sidecar.get("cluster") if isinstance(sidecar.get("cluster"), Mapping) else {}
    pod = section.get("pod") if isinstance(section.get("pod"), Mapping) else {}
    node = pod.get("node") if isinstance(pod.get("node"), Mapping) else {}
    pod_ip = section.get("pod_ip") or next(iter(pod.get("pod_ips") or []), "")
    node_ip = section.get("node_ip") or pod.get("host_ip") or node.get("internal_ip") or ""
    document: dict = {
        "pod_cidrs": list(section.get("pod_cidrs") or node.get("pod_cidrs") or []),
        "service_cidrs": [section["service_cidr"]] if section.get("service_cidr") else [],
        "nodes": [{"ip": node_ip, "name": node.get("name", "")}] if node_ip else [],
    }
    if pod_ip and not pod.get("host_network"):
        document["pods"] = [
            {
                "ip": pod_ip,
                "name": pod.get("pod", ""),
                "namespace": pod.get("namespace", ""),
                "node": node.get("name", ""),
                "host_ip": node_ip,
            }
        ]
    masq = section.get("ip_masq_agent") if isinstance(section.get("ip_masq_agent"), Mapping) else {}
    rules = section.get("node_rules") if isinstance(section.get("node_rules"), Mapping) else {}
    return SidecarFacts(
        facts=facts_from_mapping(document, source),
        capture_pod_ip=str(pod_ip) if document.get("pods") else "",
        masq_config_text=str(masq.get("raw") or ""),
        masq_configmap=str(masq.get("configmap") or "").rpartition("/")[2],
        iptables_save=str(rules.get("iptables-save") or ""),
    )
