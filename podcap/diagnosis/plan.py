"""What ``podcap diagnose`` will do: the two Pods found, the port, the capture points, the probe.

Nothing is created here: :func:`plan_diagnosis` only reads the API (the Pods, their nodes), so
``--dry-run`` can print the plan and stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from podcap import locate
from podcap.capture.plan import Plan, dry_run_yaml, plan
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

    def __post_init__(self) -> None:
        if self.probe not in PROBE_KINDS:
            raise UsageError(f"--probe {self.probe}: choose from {', '.join(PROBE_KINDS)}")
        if self.timeout <= 0 or self.duration <= 0:
            raise UsageError("--timeout and --duration must be more than zero")

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


@dataclass(frozen=True)
class DiagnosePlan:
    source: locate.PodTarget
    destination: locate.PodTarget
    port: int
    probe: Probe | None
    captures: Plan  # both Pods, one helper per node
    options: SessionOptions
    request: DiagnoseRequest

    @property
    def same_node(self) -> bool:
        return self.source.node.name == self.destination.node.name

    def points(self) -> list[str]:
        """The capture points, client's end first, as the path report names them."""
        src, dst, nic = self.source, self.destination, self.options.node_interface
        pods = [f"pod {src.namespace}/{src.name}", f"pod {dst.namespace}/{dst.name}"]
        if self.same_node:
            return pods
        return [pods[0], f"{src.node.name} {nic}", f"{dst.node.name} {nic}", pods[1]]

    def describe(self) -> str:
        """The plan in words and the helper Pods as YAML (``--dry-run``)."""
        lines = [f"# source: {_where(self.source)}",
                 f"# destination: {_where(self.destination)}, port {self.port}",
                 f"# capture points: {', '.join(self.points())}",
                 f"# capture filter in the Pods: {self.options.bpf_filter}",
                 f"# probe: {self.probe.describe() if self.probe else 'none (your own traffic)'}"]  # fmt: skip
        return "\n".join(lines) + "\n" + dry_run_yaml(self.captures)


def _where(target: locate.PodTarget) -> str:
    ip = target.pod_ips[0] if target.pod_ips else "no IP"
    node_ip = target.node.internal_ip or target.host_ip or "?"
    return f"{target.namespace}/{target.name} {ip} on {target.node.name} ({node_ip})"


def plan_diagnosis(kube, request: DiagnoseRequest, helper_spec) -> DiagnosePlan:
    """Find both Pods and build the captures and the probe; UsageError / LocateError (one
    line) when either Pod cannot be diagnosed."""
    names = [request.source, request.destination_name]
    if names[0] == names[1]:
        raise UsageError(f"SRC and DST are the same Pod ({names[0]}): name two Pods")
    query = locate.TargetQuery(names=names, namespace=request.namespace)
    captures = plan(kube, query, helper_spec)
    by_name = {t.name: t for t in captures.targets}
    source, destination = (_one(by_name, name) for name in names)
    for target in (source, destination):
        if target.host_network or not target.pod_ips:
            raise UsageError(f"{target.namespace}/{target.name} has no Pod network of its own "
                             "(hostNetwork): diagnose follows Pod-to-Pod traffic")  # fmt: skip
    port = request.port or (destination.ports[0] if destination.ports else None)
    if port is None:
        raise UsageError(
            f"{destination.namespace}/{destination.name} declares no port: give DST:PORT",
            hint=f"e.g. podcap diagnose {source.name} {destination.name}:80",
        )
    probe = None
    if request.probe != "none":
        probe = Probe(request.probe, destination.pod_ips[0], port, request.timeout)
    bound = (request.timeout if probe else request.duration) + SAFETY_SECONDS
    options = SessionOptions(
        output_dir=request.output_dir,
        also_node=source.node.name != destination.node.name,
        node_interface=request.node_interface,
        node_pid=request.node_pid,
        node_rules=True,  # the nodes' iptables-save into the sidecars: the verdict names rules
        bpf_filter=f"host {source.pod_ips[0]} and host {destination.pod_ips[0]}",
        duration=bound,
    )
    return DiagnosePlan(source, destination, port, probe, captures, options, request)


def _one(by_name: dict, name: str) -> locate.PodTarget:
    pod_name = name.split("/", 1)[-1]
    if pod_name not in by_name:
        raise UsageError(f"{name}: not one Pod (diagnose takes two Pod names)")
    return by_name[pod_name]
