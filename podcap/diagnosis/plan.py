"""What ``podcap diagnose`` will do: the two Pods found, the port, the capture points, the probe.

Nothing is created here: :func:`plan_diagnosis` only reads the API (the Pods, their nodes), so
``--dry-run`` can print the plan and stop.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from podcap import locate
from podcap.capture.plan import Plan, dry_run_yaml, plan_for
from podcap.capture.pods import SessionOptions
from podcap.diagnosis.probe import PROBE_KINDS, Probe
from podcap.errors import UsageError

SAFETY_SECONDS = 60  # the captures end by themselves this long after the probe's time is up


@dataclass(frozen=True)
class DiagnoseRequest:
    """What the user asked: ``SRC DST[:PORT]`` and how."""

    source: str
    destination: str
    namespace: str | None = None
    probe: str = "tcp"
    timeout: float = 3.0  # the probe's, in seconds
    duration: float = 10.0  # --probe none: how long the user's own traffic is captured
    output_dir: Path = Path(".")
    node_interface: str = "eth0"
    node_pid: str = "1"
    probe_size: int = 0  # --probe tcp: bytes sent after the marker (an MTU check)
    drops: bool = True  # the kernel's drops watched on the nodes (podcap.capture.drops)

    def __post_init__(self) -> None:
        if self.probe not in PROBE_KINDS:
            raise UsageError(f"--probe {self.probe}: choose from {', '.join(PROBE_KINDS)}")
        if self.timeout <= 0 or self.duration <= 0:
            raise UsageError("--timeout and --duration must be more than zero")
        if not 0 <= self.probe_size <= 65000:
            raise UsageError(f"--probe-size {self.probe_size}: from 0 to 65000 bytes")
        if self.probe_size and self.probe != "tcp":
            raise UsageError(f"--probe-size is for --probe tcp, not --probe {self.probe}")

    @property
    def destination_name(self) -> str:
        return split_port(self.destination)[0]

    @property
    def port(self) -> int | None:
        return split_port(self.destination)[1]


def split_port(text: str) -> tuple[str, int | None]:
    """``web-b0:8080`` -> ("web-b0", 8080); ``web-b0`` -> ("web-b0", None)."""
    name, colon, port = text.rpartition(":")
    if not colon:
        return text, None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{text}: the port after ':' must be a number from 1 to 65535")
    return name, int(port)


MAX_ENDPOINTS = 4  # endpoint Pods of a Service captured at once


@dataclass(frozen=True)
class DiagnosePlan:
    source: locate.PodTarget
    destinations: tuple[locate.PodTarget, ...]  # the Pod, or the Service's endpoint Pods
    port: int  # as the client sends it (the Service's port for svc/)
    probe: Probe | None
    captures: Plan  # every Pod, one helper per node
    options: SessionOptions
    request: DiagnoseRequest
    service: locate.ServiceFacts | None = None
    address: str | None = None  # a destination outside the cluster (the guide's IDC host)

    @property
    def destination(self) -> locate.PodTarget:
        return self.destinations[0]

    @property
    def same_node(self) -> bool:
        return bool(self.destinations) and all(
            d.node.name == self.source.node.name for d in self.destinations
        )

    @property
    def destination_label(self) -> str:
        port = f":{self.port}" if self.port else ""  # a ping has none
        if self.address is not None:
            return f"{self.address}{port}"
        if self.service is not None:
            return f"{self.service.label} ({self.service.cluster_ip}{port})"
        return f"{self.destination.namespace}/{self.destination.name}{port}"

    def points(self) -> list[str]:
        """The capture points, client's end first, as the path report names them."""
        src, nic = self.source, self.options.node_interface
        points = [f"pod {src.namespace}/{src.name}"]
        nics = [] if self.same_node else [src.node.name]  # each node's NIC once
        if nics:
            points.append(f"{src.node.name} {nic}")
        for dst in self.destinations:
            if not self.same_node and dst.node.name not in nics:
                nics.append(dst.node.name)
                points.append(f"{dst.node.name} {nic}")
            points.append(f"pod {dst.namespace}/{dst.name}")
        return points

    def describe(self) -> str:
        """The plan in words and the helper Pods as YAML (``--dry-run``)."""
        heads = [f"# source: {_where(self.source)}"]
        if self.address is not None:
            heads.append(f"# destination: {self.destination_label}, outside the cluster")
        elif self.service is not None:
            heads.append(f"# destination: {self.destination_label}, endpoints: "
                         + ", ".join(_where(d) for d in self.destinations))  # fmt: skip
        else:
            port = f", port {self.port}" if self.port else ""  # a ping has none
            heads.append(f"# destination: {_where(self.destination)}{port}")
        lines = [*heads,
                 f"# capture points: {', '.join(self.points())}",
                 f"# capture filter in the Pods: {self.options.bpf_filter}",
                 f"# probe: {self.probe.describe() if self.probe else 'none (your own traffic)'}"]  # fmt: skip
        return "\n".join(lines) + "\n" + dry_run_yaml(self.captures)


def _where(target: locate.PodTarget) -> str:
    ip = target.pod_ips[0] if target.pod_ips else "no IP"
    node_ip = target.node.internal_ip or target.host_ip or "?"
    return f"{target.namespace}/{target.name} {ip} on {target.node.name} ({node_ip})"


def plan_diagnosis(kube, request: DiagnoseRequest, helper_spec) -> DiagnosePlan:
    """Find the Pods (one Pod of a workload for ``deploy/NAME``, a Service's endpoint Pods for
    ``svc/NAME``) and build the captures and the probe; UsageError / LocateError (one line)
    when they cannot be diagnosed."""
    source_name, dst_name = request.source, request.destination_name
    if source_name == dst_name and not _is_workload(source_name):
        raise UsageError(f"SRC and DST are the same Pod ({source_name}): name two Pods")
    if _is_address(dst_name):
        return _plan_to_address(kube, request, helper_spec)
    warnings: list[str] = []
    source = _one_pod(kube, source_name, request, warnings)
    service = None
    if locate.is_service(dst_name):
        service = locate.read_service(kube, dst_name, request.namespace)
        destinations = _endpoints(kube, service, request, source, warnings)
    else:
        destinations = (_one_pod(kube, dst_name, request, warnings, beside=source),)
    captures = plan_for([source, *destinations], warnings, helper_spec)
    for target in (source, *destinations):
        _check_pod_network(target)
    port = _port(request, service, destinations[0], source)
    probe = _probe(request, service.cluster_ip if service else destinations[0].pod_ips[0], port)
    peers = [service.cluster_ip] if service else []
    peers += [d.pod_ips[0] for d in destinations]
    also_node = any(d.node.name != source.node.name for d in destinations)
    options = _options(request, source, peers, probe, also_node=also_node)
    return DiagnosePlan(source, destinations, port, probe, captures, options, request, service)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _plan_to_address(kube, request: DiagnoseRequest, helper_spec) -> DiagnosePlan:
    """DST an address outside the cluster: the source Pod and its node's NIC are captured, the
    NIC also for the address (masqueraded traffic leaves with the node's own)."""
    address = request.destination_name.strip("[]")
    if request.port is None and request.probe != "icmp":
        raise UsageError(f"give the port: {request.destination_name}:PORT",
                         hint=f"e.g. podcap diagnose {request.source} {address}:80")  # fmt: skip
    warnings: list[str] = []
    source = _one_pod(kube, request.source, request, warnings)
    captures = plan_for([source], warnings, helper_spec)
    _check_pod_network(source)
    probe = _probe(request, address, request.port or 0)
    # Masqueraded traffic leaves the node with the node's own address: the NIC keeps it too.
    options = _options(request, source, [address], probe, also_node=True,
                       node_view_extra=f"host {address}")  # fmt: skip
    return DiagnosePlan(source, (), request.port or 0, probe, captures, options, request,
                        address=address)  # fmt: skip


def _probe(request: DiagnoseRequest, address: str, port: int) -> Probe | None:
    if request.probe == "none":
        return None
    return Probe(request.probe, address, port, request.timeout, request.probe_size)


def _options(request: DiagnoseRequest, source, peers: list[str], probe, **view) -> SessionOptions:
    """What every capture of the diagnosis shares: the Pods filtered to the source and its
    ``peers``, the nodes' rules saved, a bound in case the stop never comes."""
    hosts = " or ".join(f"host {peer}" for peer in peers)
    return SessionOptions(
        output_dir=request.output_dir,
        node_interface=request.node_interface,
        node_pid=request.node_pid,
        node_rules=True,  # the nodes' iptables-save into the sidecars: the verdict names rules
        drops=request.drops,
        # ICMP errors come back from hosts on the way (a REJECT rule, a router): keep them.
        bpf_filter=f"host {source.pod_ips[0]} and ({hosts} or icmp or icmp6)",
        duration=(request.timeout if probe else request.duration) + SAFETY_SECONDS,
        **view,
    )


def _check_pod_network(target: locate.PodTarget) -> None:
    if target.host_network or not target.pod_ips:
        raise UsageError(f"{target.namespace}/{target.name} has no Pod network of its own "
                         "(hostNetwork): diagnose follows Pod-to-Pod traffic")  # fmt: skip


def _port(request: DiagnoseRequest, service, destination, source) -> int:
    """DST:PORT; else the Service's first port, or the first port the Pod declares (a ping
    needs none: 0)."""
    if request.port is not None:
        return request.port
    if request.probe == "icmp":
        return 0
    if service is not None and service.ports:
        return service.ports[0][0]
    if destination.ports:
        return destination.ports[0]
    raise UsageError(
        f"{destination.namespace}/{destination.name} declares no port: give DST:PORT",
        hint=f"e.g. podcap diagnose {source.name} {destination.name}:80",
    )


def _is_workload(name: str) -> bool:
    kind, slash, _ = name.partition("/")
    return bool(slash) and kind.lower() in locate.WORKLOAD_KINDS


def _one_pod(
    kube, name: str, request: DiagnoseRequest, warnings: list[str], beside=None
) -> locate.PodTarget:
    """The Pod ``name`` names; for a workload one of its Pods (not ``beside``, the source,
    and for choice on another node than it: the guide's case), said in ``warnings``."""
    resolution = locate.resolve(kube, locate.TargetQuery(names=[name], namespace=request.namespace))
    warnings += resolution.warnings
    if not _is_workload(name):
        (pod,) = resolution.targets
        return pod
    pods = sorted((t for t in resolution.targets if beside is None or t.name != beside.name),
                  key=lambda t: t.name)  # fmt: skip
    if not pods:
        raise UsageError(f"{name} has no running Pod other than {beside.name}")
    elsewhere = [t for t in pods if beside is not None and t.node.name != beside.node.name]
    chosen = (elsewhere or pods)[0]
    warnings.append(f"{name}: {len(resolution.targets)} Pod(s), diagnosing {chosen.name} on "
                    f"{chosen.node.name}")  # fmt: skip
    return chosen


def _endpoints(kube, service, request: DiagnoseRequest, source, warnings: list[str]) -> tuple:
    """The Service's running endpoint Pods (those its selector picks), the source left out."""
    query = locate.TargetQuery(namespace=request.namespace, selector=service.selector)
    resolution = locate.resolve(kube, query)
    warnings += resolution.warnings
    endpoints = [t for t in resolution.targets if t.name != source.name]
    if not endpoints:
        raise UsageError(f"{service.label} has no running endpoint Pod")
    if len(endpoints) > MAX_ENDPOINTS:
        warnings.append(f"{service.label} has {len(endpoints)} endpoints: capturing the "
                        f"first {MAX_ENDPOINTS}")  # fmt: skip
    return tuple(endpoints[:MAX_ENDPOINTS])
