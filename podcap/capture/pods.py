"""Pod targets as a fleet: one capture per Pod through its node's helper Pod, run together.

:class:`PodCaptures` is the :class:`~podcap.capture.fleet.CapturePlan` of a resolved
:class:`~podcap.capture.plan.Plan`: every Pod is captured by the same node script and pcap
writer as ``--via local/ssh``, into ``NAMESPACE_POD.pcap`` with the cluster facts in its
sidecar; ``--node-rules`` and ``--also-node`` add the node's own view, ``--merge`` one pcapng.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from podcap import locate
from podcap.capture.command import (
    CaptureSettings,
    CaptureSpec,
    check_filter_safety,
    check_interface,
)
from podcap.capture.drops import DropWatch
from podcap.capture.fleet import FleetResult, Member, ProgressCallback, check_writable, run
from podcap.capture.node_rules import node_file_part, node_rules, write_node_rules
from podcap.capture.overlay_filter import pod_traffic_filter
from podcap.capture.plan import Plan, cluster_facts_for_sidecar, preflight
from podcap.capture.session import CaptureSession
from podcap.errors import UsageError
from podcap.reach import pod as helper

MERGED_NAME = "capture.pcapng"


@dataclass(frozen=True, kw_only=True)
class SessionOptions(CaptureSettings):
    """What every Pod's capture shares: the capture settings, and where the results go.
    Building one checks them all, so a bad flag is refused before the first API call."""

    output_dir: Path
    also_node: bool = False
    node_interface: str = "eth0"
    node_rules: bool = False
    merge_to: Path | None = None
    # The PID whose namespaces are "the node" (1 under hostPID); tests point it at a lab node,
    # or at one per node as "node-a=PID,node-b=PID" (see node_pid_for).
    node_pid: str = "1"
    # -o -: the one Pod's pcap goes to this stream (e.g. into wireshark -k -i -), no sidecar.
    stream: BinaryIO | None = None
    # -o FILE.pcap with one Pod: that file instead of OUTPUT_DIR/NAMESPACE_POD.pcap.
    output_file: Path | None = None
    # --also-node: more for the NIC to keep beside the Pod's own packets (a BPF expression),
    # e.g. "host PEER" for traffic the node masquerades, which leaves with the node's address.
    node_view_extra: str = ""
    # --drops: the kernel's drops of the Pods' packets, one watcher per node (capture.drops).
    drops: bool = False
    # --ephemeral: from an ephemeral container in each Pod, not a helper Pod on its node.
    ephemeral: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interface(self.node_interface)  # --node-interface reaches tcpdump on the node too
        check_filter_safety(self.node_view_extra)  # --node-filter, likewise
        if self.ephemeral:
            self._check_ephemeral()
        if self.stream is None:  # where the files go: checked before anything is created
            check_writable(self.output_file or self.output_dir, directory=not self.output_file)

    def _check_ephemeral(self) -> None:
        """An ephemeral container sees the Pod, not its node: the node's own views need a
        helper on the node."""
        node_side = [flag for flag, given in (("--also-node", self.also_node),
                     ("--node-rules", self.node_rules), ("--drops", self.drops)) if given]  # fmt: skip
        if node_side:
            raise UsageError(f"{', '.join(node_side)}: the node's side needs a helper Pod on the "
                             "node; --ephemeral captures from inside the Pod only")  # fmt: skip

    def node_pid_for(self, node: str) -> str:
        """The PID standing for ``node``: the one given, or its own of "NODE=PID,..." ("1"
        for a node not named)."""
        if "=" not in self.node_pid:
            return self.node_pid
        pairs = dict(pair.split("=", 1) for pair in self.node_pid.split(",") if "=" in pair)
        return pairs.get(node, "1")

    @classmethod
    def writing_to(
        cls, output: str | None, stdout: BinaryIO, *, merge: bool = False, **options
    ) -> SessionOptions:
        """The options for ``-o OUTPUT``: a directory (default .) for NAMESPACE_POD.pcap files,
        ``FILE.pcap`` (or ``.cap``) for one Pod, or ``-`` for one Pod to ``stdout``."""
        to_stdout = output == "-"
        to_file = bool(output) and output.endswith((".pcap", ".cap"))
        out_dir = Path(output).parent if to_file else Path("." if to_stdout else output or ".")
        return cls(
            output_dir=out_dir,
            merge_to=out_dir / MERGED_NAME if merge else None,
            stream=stdout if to_stdout else None,
            output_file=Path(output) if to_file else None,
            **options,
        )


def check_one_output(the_plan: Plan, options: SessionOptions) -> None:
    """``-o -`` and ``-o FILE.pcap`` hold one Pod's capture: UsageError when the plan has any
    other number of Pods. Needs no API call, so it comes before :func:`preflight`."""
    one_output = "-" if options.stream is not None else options.output_file
    if one_output is not None and len(the_plan.targets) != 1:
        raise UsageError(
            f"-o {one_output} takes one Pod, and {len(the_plan.targets)} match",
            hint="give -o a directory: each Pod gets NAMESPACE_POD.pcap in it",
        )


def node_nic_spec(
    pod_ips: list[str], iface: str, bound: int, node_pid: str = "1", extra: str = ""
) -> CaptureSpec:
    """The node's NIC, captured in the node's network namespace (that of ``node_pid``: 1 in
    the helper, which has hostPID) by the same node script as a Pod's, so it stops the same
    way: every packet queued when the stop comes is written. Only the packets of the Pods
    of ``pod_ips``, and what ``extra`` (a BPF expression) picks."""
    pods = pod_traffic_filter(pod_ips)
    return CaptureSpec(
        pid=int(node_pid),
        node_view=True,
        interface=iface,
        bpf_filter=f"({pods}) or ({extra})" if extra else pods,
        time_bound=bound,
    )


@dataclass
class PodCaptures:
    """The fleet of a plan: each Pod captured at once through one helper per node."""

    kube: locate.Kube
    plan: Plan
    options: SessionOptions
    # --merge: {(file index, packet number): comment} for the written files, given by the
    # caller (the CLI hands it the drops' comments: podcap.path.kernel_drops.comments_for).
    comment_packets: Callable[[list[str]], dict] | None = None
    facts: dict = field(default_factory=dict)
    rules: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> --node-rules

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings

    def announcement(self) -> str:
        """What is about to be captured, for the line before the capture starts."""
        names = ", ".join(f"{t.namespace}/{t.name} on {t.node.name}" for t in self.plan.targets)
        return f"capturing {names} (session {self.plan.spec.session}; Ctrl-C stops)"

    def check(self) -> None:
        check_one_output(self.plan, self.options)  # before preflight's API calls
        if self.options.ephemeral:
            locate.check_access(self.kube, locate.ephemeral_permissions(self.plan.targets))
        else:
            preflight(self.kube, self.plan)

    def reach(self, on_step=None):
        self.options.output_dir.mkdir(parents=True, exist_ok=True)
        self.facts = locate.cluster_facts(self.kube)
        if self.options.ephemeral:
            from podcap.reach.pod.ephemeral import ephemeral_transports

            return ephemeral_transports(self.kube, self.plan.spec, self.plan.targets, on_step)
        return helper.helper_transports(
            self.kube, self.plan.spec, on_step=on_step, manifests=self.plan.manifests
        )

    def members(self, transports: dict) -> list[Member]:
        if self.options.node_rules:
            self.rules = _save_node_rules(transports, self.options)
        return [self._member(t, transports[self._reached_by(t)]) for t in self.plan.targets]

    def _reached_by(self, target: locate.PodTarget) -> str:
        """The key of ``target``'s transport: its node's helper, or its own ephemeral one."""
        return f"{target.namespace}/{target.name}" if self.options.ephemeral else target.node.name

    def _same_node(self, target: locate.PodTarget) -> list[locate.PodTarget]:
        """The planned Pods on ``target``'s node: the first of them captures the node's NIC
        for all (--also-node), so it is captured once."""
        return [t for t in self.plan.targets if t.node.name == target.node.name]

    def _member(self, target: locate.PodTarget, transport) -> Member:
        options, node = self.options, target.node.name
        path = options.output_file or options.output_dir / f"{target.key}.pcap"
        if options.ephemeral:  # already in the Pod's network namespace
            spec = CaptureSpec(here=True, **options.capture_settings())
        else:
            spec = CaptureSpec(container_id=target.container_id, **options.capture_settings())
        cluster = cluster_facts_for_sidecar(target, self.facts)
        cluster["helper_pod"] = transport.helper.where
        cluster["node_rules"] = self.rules.get(target.node.name)
        node_view, same_node = None, self._same_node(target)
        if options.also_node:
            node_path = options.output_dir / f"{same_node[0].key}.node.pcap"
            if same_node[0] is target:
                view_ips = [ip for t in same_node for ip in t.pod_ips]
                node_spec = node_nic_spec(
                    view_ips, options.node_interface, spec.bound_seconds,
                    options.node_pid_for(node), self._node_extra(target),
                )  # fmt: skip
                node_view = CaptureSession(
                    transport, node_spec, str(node_path), cluster=dict(cluster)
                )
            cluster["node_capture"] = {"file": node_path.name, "interface": options.node_interface}
        drops = None
        if options.drops:
            drops_path = options.output_dir / f"{node_file_part(node)}.drops.jsonl"
            if same_node[0] is target:
                drops = DropWatch(transport, [ip for t in same_node for ip in t.pod_ips],
                                  drops_path, spec.bound_seconds, options.node_pid_for(node))  # fmt: skip
            cluster["drops"] = {"file": drops_path.name}
        output = options.stream if options.stream is not None else str(path)
        session = CaptureSession(transport, spec, output, cluster=cluster)
        label = f"{target.namespace}/{target.name}"
        return Member(session, label=label, target=target, path=path, node_view=node_view,
                      drops=drops)  # fmt: skip

    def _node_extra(self, target: locate.PodTarget) -> str:
        """What the node's view keeps besides the Pods' own addresses: ``--node-filter`` when
        given; else, with a capture filter, that filter's packets to and from the node's own
        address, which is what a masqueraded connection of the Pod carries on the NIC (the
        guide's IDC case). Without either, only the Pods' addresses."""
        options = self.options
        if options.node_view_extra:
            return options.node_view_extra
        node_ip = target.node.internal_ip or target.host_ip
        if options.bpf_filter.strip() and node_ip:
            return f"host {node_ip} and ({options.bpf_filter})"
        return ""

    def finish(self, members: list[Member]) -> Path | None:
        """``--merge``: every Pod's file into one pcapng, one interface per Pod."""
        written = [m for m in members if m.result is not None and m.result.output != "-"]
        written = [m for m in written if m.path.exists()]
        if self.options.merge_to is None or not written:
            return None
        from podcap.capture.merge import merge

        comments = (
            self.comment_packets([str(m.path) for m in written]) if self.comment_packets else None
        )
        merge([(m.label, m.path) for m in written], self.options.merge_to, packet_comments=comments)
        return self.options.merge_to


def run_session(
    kube: locate.Kube,
    the_plan: Plan,
    options: SessionOptions,
    on_progress: ProgressCallback | None = None,
) -> FleetResult:
    """Capture every Pod of the plan at once (see :func:`podcap.capture.fleet.run`); the
    helpers are deleted in every case."""
    return run(PodCaptures(kube, the_plan, options), on_progress=on_progress)


def _save_node_rules(transports: dict, options: SessionOptions) -> dict[str, dict[str, str]]:
    """Each node's rules, as text (the sidecar carries them, so ``podcap analyze`` can explain
    SNAT offline) and in ``NODE.iptables-save.txt`` (and ``NODE.ipvsadm.txt``, ``NODE.nft.txt``)
    to read."""
    saved: dict[str, dict[str, str]] = {}
    for node, transport in transports.items():
        saved[node] = node_rules(transport, options.node_pid_for(node))
        write_node_rules(saved[node], options.output_dir, node)
    return saved
