"""``podcap capture POD`` through Kubernetes: from what the user typed to helper Pods per node.

Steps, each its own function:

- :func:`plan` resolves the targets (podcap.locate) and builds one helper manifest per node
  (podcap.reach.pod);
- :func:`dry_run_yaml` prints that plan without any write to the API;
- :func:`preflight` checks the helper namespace and asks the API server whether the user may do
  what the plan needs;
- :func:`run_session` starts the helpers and runs one ``podcap.capture.CaptureSession`` per Pod
  in parallel (the same node script and pcap writer as ``--via local/ssh``), with the cluster
  facts (:func:`cluster_facts_for_sidecar`) in each sidecar; ``--node-rules`` and
  ``--also-node`` add the node's own view.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import yaml

from podcap import locate
from podcap.capture import CaptureResult, CaptureSession, CaptureSpec, StreamProgress
from podcap.capture.command import CaptureSettings, check_interface
from podcap.errors import CaptureError, PodcapError, ReachError, UsageError
from podcap.reach import pod as helper


@dataclass
class Plan:
    targets: list[locate.PodTarget]
    warnings: list[str]
    spec: helper.HelperSpec
    manifests: dict[str, dict]  # node name -> helper Pod manifest

    def targets_on(self, node: str) -> list[locate.PodTarget]:
        return [t for t in self.targets if t.node.name == node]

    def containers_by_node(self) -> dict[str, list[str]]:
        """``{node: [container ID, ...]}``: what each node's helper enters."""
        return containers_by_node(self.targets)


def containers_by_node(targets: list[locate.PodTarget]) -> dict[str, list[str]]:
    by_node: dict[str, list[str]] = defaultdict(list)
    for target in targets:
        by_node[target.node.name].append(target.container_id)
    return dict(by_node)


def plan(kube: locate.Kube, query: locate.TargetQuery, spec: helper.HelperSpec) -> Plan:
    """Resolve the targets and group them by node: one helper per node."""
    resolution = locate.resolve(kube, query)
    by_node = containers_by_node(resolution.targets)
    manifests = {
        node: helper.helper_manifest(spec, node, ids) for node, ids in sorted(by_node.items())
    }
    return Plan(resolution.targets, resolution.warnings, spec, manifests)


def dry_run_yaml(the_plan: Plan) -> str:
    """The helper Pods the plan would create, as a YAML stream (``kubectl apply -f`` ready),
    each preceded by a comment naming the Pods it would capture."""
    documents = []
    for node, manifest in the_plan.manifests.items():
        pods = ", ".join(f"{t.namespace}/{t.name}" for t in the_plan.targets_on(node))
        body = yaml.safe_dump(manifest, sort_keys=False)
        documents.append(f"# helper for node {node}: captures {pods}\n{body}")
    return "---\n".join(documents)


def preflight(kube: locate.Kube, the_plan: Plan) -> None:
    """Before creating anything: the helper namespace exists and its PodSecurity level admits
    the helper, and (SelfSubjectAccessReview) the user has every permission the helpers need;
    one error lists all that are missing."""
    locate.check_helper_namespace(kube, the_plan.spec.namespace, the_plan.spec.capabilities_only)
    locate.check_access(kube, locate.helper_permissions(the_plan.spec.namespace, the_plan.targets))


def cluster_facts_for_sidecar(target: locate.PodTarget, facts: dict) -> dict:
    """The sidecar's ``cluster`` section for one Pod: its own facts plus the cluster-wide ones
    (``facts`` from :func:`podcap.locate.cluster_facts`, read once per session)."""
    return {
        "source": "kubernetes",
        "pod": target.facts(),
        "pod_ip": target.pod_ips[0] if target.pod_ips else None,
        "node_ip": target.node.internal_ip or target.host_ip,
        "pod_cidrs": list(target.node.pod_cidrs),
        "service_cidr": facts.get("service_cidr"),
        "ip_masq_agent": facts.get("ip_masq_agent"),
    }


# --- the node's own view: --node-rules and --also-node ------------------------------------


def node_nic_spec(
    target: locate.PodTarget, iface: str, bound: int, node_pid: str = "1"
) -> CaptureSpec:
    """The node's NIC, captured in the node's network namespace (that of ``node_pid``: 1 in
    the helper, which has hostPID) by the same node script as a Pod's, so it stops the same
    way: every packet queued when the stop comes is written. Only the Pod's packets."""
    return CaptureSpec(
        pid=int(node_pid),
        node_view=True,
        interface=iface,
        bpf_filter=pod_traffic_filter(target.pod_ips),
        time_bound=bound,
    )


# Where an overlay puts the Pod's own IP header, as tcpdump filter offsets. VXLAN: the UDP
# header (8), VXLAN's (8) and the inner Ethernet header (14) come first. Geneve: its 8 bytes
# are followed by options, whose length (in 4-byte words) is in the low 6 bits of its first
# byte, then Ethernet (protocol 0x6558) or the IP header itself (protocol = its ethertype).
# IP-in-IP (and IPv6 in IPv4): after the outer header, whatever its length.
GENEVE_OPTIONS = "((udp[8] & 0x3f) * 4)"
OUTER_IP_LENGTH = "((ip[0] & 0x0f) * 4)"
# Per IP version: its ethertype, its protocol number inside IPv4, where its source and
# destination addresses sit in its header.
INNER_HEADERS = {4: ("0x0800", 4, (12, 16)), 6: ("0x86dd", 41, (8, 24))}


def _overlays(ethertype: str) -> tuple[tuple[str, str], ...]:
    """(what carries an inner IP header of this ethertype, where that header starts)."""
    return (
        (f"(udp port 4789 or udp port 8472) and udp[28:2] = {ethertype}", "30"),
        (f"udp port 6081 and udp[10:2] = 0x6558 and udp[28 + {GENEVE_OPTIONS}:2] = {ethertype}",
         f"30 + {GENEVE_OPTIONS}"),
        (f"udp port 6081 and udp[10:2] = {ethertype}", f"16 + {GENEVE_OPTIONS}"),
    )  # fmt: skip


def _address_at(proto: str, at: str, address: bytes) -> str:
    """``address`` at offset ``at`` of ``proto``: 4 bytes at a time, all a filter compares."""
    words = [address[i : i + 4] for i in range(0, len(address), 4)]
    return " and ".join(
        f"{proto}[{at} + {i * 4}:4] = 0x{word.hex()}" for i, word in enumerate(words)
    )


def pod_traffic_filter(pod_ips: list[str]) -> str:
    """A tcpdump filter for a node's NIC: the Pod's packets, as they are or inside an overlay.

    On an overlay (flannel/Calico VXLAN on 8472/4789, Cilium/OVN Geneve on 6081, Calico
    IP-in-IP) the NIC sees node addresses outside and the Pod's only inside, which ``host``
    never reads; so the inner IPv4 or IPv6 header is read too (under an IPv4 outer header)."""
    clauses = [f"host {ip}" for ip in pod_ips]
    addresses = [ipaddress.ip_address(ip) for ip in pod_ips]
    for version, (ethertype, ip_proto, fields) in INNER_HEADERS.items():
        packed = [a.packed for a in addresses if a.version == version]
        if not packed:
            continue
        clauses += [
            f"{carrier} and ({_any_address_at('udp', at, fields, packed)})"
            for carrier, at in _overlays(ethertype)
        ]
        inside_ip = _any_address_at("ip", OUTER_IP_LENGTH, fields, packed)
        clauses.append(f"ip proto {ip_proto} and ({inside_ip})")
    return " or ".join(f"({clause})" for clause in clauses) or "ip"


def _any_address_at(proto: str, header: str, fields, packed: list[bytes]) -> str:
    """Any of the ``packed`` addresses in any of the ``fields`` of the header at ``header``."""
    return " or ".join(
        f"({_address_at(proto, f'{header} + {field}', address)})"
        for address in packed
        for field in fields
    )


def node_rules(transport, node_pid: str | None = "1") -> dict[str, str]:
    """``iptables-save`` (and ``ipvsadm -Ln`` where installed) from the node. Entering the
    node's mount namespace too runs the node's own iptables binary, so a legacy/nft mismatch
    with the helper image cannot hide rules. ``node_pid=None`` (podcap inspect --via
    local/ssh): the transport already runs on the node, so nothing is entered."""
    enter = ["nsenter", "-m", "-n", "-t", node_pid, "--"] if node_pid else []
    saved = transport.run([*enter, "iptables-save"], timeout=60)
    if saved.returncode != 0:
        raise ReachError(
            f"iptables-save on node {transport.node} failed: "
            f"{saved.stderr.decode(errors='replace').strip()}"
        )
    rules = {"iptables-save": saved.stdout.decode(errors="replace")}
    probe = "command -v ipvsadm >/dev/null 2>&1 || exit 127; exec ipvsadm -Ln"
    ipvs = transport.run([*enter, "sh", "-c", probe], timeout=60)
    if ipvs.returncode == 0:
        rules["ipvsadm"] = ipvs.stdout.decode(errors="replace")
    return rules


def write_node_rules(rules: dict[str, str], directory: Path, node: str) -> dict[str, Path]:
    """Write each of a node's rule dumps (:func:`node_rules`) as ``DIRECTORY/NODE.NAME.txt``
    (e.g. ``node-a.iptables-save.txt``) to read or hand to ``podcap analyze --iptables``;
    returns ``{name: path}``. UsageError when the directory or a file cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{directory}: cannot create the directory ({exc.strerror})") from exc
    # A node name is a DNS name in Kubernetes, but over ssh it is whatever the user typed.
    node_part = re.sub(r"[^A-Za-z0-9_.-]+", "_", node) or "node"
    saved = {}
    for name, text in rules.items():
        path = directory / f"{node_part}.{name}.txt"
        try:
            path.write_text(text)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from exc
        saved[name] = path
    return saved


# --- running a session: one helper per node, one capture per Pod, in parallel ----------------


@dataclass(frozen=True, kw_only=True)
class SessionOptions(CaptureSettings):
    """What every Pod's capture shares: the capture settings, and where the results go."""

    output_dir: Path
    also_node: bool = False
    node_interface: str = "eth0"
    node_rules: bool = False
    merge_to: Path | None = None
    # The PID whose namespaces are "the node" (1 under hostPID; tests point it at a lab node).
    node_pid: str = "1"
    # -o -: the one Pod's pcap goes to this stream (e.g. into wireshark -k -i -), no sidecar.
    stream: BinaryIO | None = None
    # -o FILE.pcap with one Pod: that file instead of OUTPUT_DIR/NAMESPACE_POD.pcap.
    output_file: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_interface(self.node_interface)  # --node-interface reaches tcpdump on the node too


@dataclass
class PodCapture:
    """One Pod's capture in a session: its CaptureSession, then its result or its error."""

    target: locate.PodTarget
    path: Path
    session: CaptureSession
    result: CaptureResult | None = None
    error: PodcapError | None = None
    thread: threading.Thread | None = None
    node_session: CaptureSession | None = None  # --also-node


@dataclass
class SessionResult:
    captures: list[PodCapture]
    node_rules: dict[str, dict[str, str]]
    merged: Path | None
    interrupted: bool


def check_one_output(the_plan: Plan, options: SessionOptions) -> None:
    """``-o -`` and ``-o FILE.pcap`` hold one Pod's capture: UsageError when the plan has any
    other number of Pods. Needs no API call, so callers can check before :func:`preflight`."""
    one_output = "-" if options.stream is not None else options.output_file
    if one_output is not None and len(the_plan.targets) != 1:
        raise UsageError(
            f"-o {one_output} takes one Pod, and {len(the_plan.targets)} match",
            hint="give -o a directory: each Pod gets NAMESPACE_POD.pcap in it",
        )


def capture_spec(target: locate.PodTarget, options: SessionOptions) -> CaptureSpec:
    return CaptureSpec(container_id=target.container_id, **options.capture_settings())


def run_session(
    kube: locate.Kube,
    the_plan: Plan,
    options: SessionOptions,
    on_progress: Callable[[str, StreamProgress], None] | None = None,
) -> SessionResult:
    """Capture every Pod of the plan at once, through one helper per node, each into
    ``NAMESPACE_POD.pcap`` (+ sidecar with the cluster facts). Returns when every capture ended
    (--duration, --count, --max-size) or after Ctrl-C/SIGTERM; the helpers are deleted in
    every case. Raises CaptureError naming each Pod whose capture failed."""
    check_one_output(the_plan, options)
    options.output_dir.mkdir(parents=True, exist_ok=True)
    facts = locate.cluster_facts(kube)
    by_node = the_plan.containers_by_node()
    with helper.helper_transports(kube, the_plan.spec, by_node) as transports:
        rules = _save_node_rules(transports, options) if options.node_rules else {}
        captures = [
            _pod_capture(t, transports[t.node.name], options, facts, rules, on_progress)
            for t in the_plan.targets
        ]
        for one in captures:
            one.thread.start()
        interrupted = _wait(captures)
    merged = _merge(captures, options.merge_to)
    failed = [c for c in captures if c.error is not None]
    if failed:
        raise CaptureError(
            "; ".join(f"{c.target.namespace}/{c.target.name}: {c.error}" for c in failed)
        )
    return SessionResult(captures, rules, merged, interrupted)


def _pod_capture(target, transport, options, facts, rules, on_progress) -> PodCapture:
    path = options.output_file or options.output_dir / f"{target.key}.pcap"
    spec = capture_spec(target, options)
    cluster = cluster_facts_for_sidecar(target, facts)
    cluster["helper_pod"] = transport.helper.where
    cluster["node_rules"] = rules.get(target.node.name)
    node_session = None
    if options.also_node:
        node_path = options.output_dir / f"{target.key}.node.pcap"
        node_spec = node_nic_spec(
            target, options.node_interface, spec.bound_seconds, options.node_pid
        )
        node_session = CaptureSession(transport, node_spec, str(node_path), cluster=dict(cluster))
        cluster["node_capture"] = {"file": node_path.name, "interface": options.node_interface}
    progress = (lambda p: on_progress(target.key, p)) if on_progress else None
    output = options.stream if options.stream is not None else str(path)
    session = CaptureSession(transport, spec, output, cluster=cluster, on_progress=progress)
    one = PodCapture(target, path, session, node_session=node_session)
    one.thread = threading.Thread(target=_run_one, args=(one,), daemon=True, name=target.key)
    return one


def _run_one(one: PodCapture) -> None:
    """The Pod's capture, and beside it the node's view (stopped once the Pod's ends)."""
    node_view = None
    if one.node_session is not None:
        node_view = threading.Thread(target=_run_node_view, args=(one,), daemon=True)
        node_view.start()
    try:
        one.result = one.session.run()
    except PodcapError as exc:
        one.error = exc
    finally:
        if node_view is not None:
            one.node_session.stop()
            node_view.join()


def _run_node_view(one: PodCapture) -> None:
    try:
        one.node_session.run()
    except PodcapError as exc:
        one.error = one.error or CaptureError(f"the node's view (--also-node): {exc}")


def _wait(captures: list[PodCapture]) -> bool:
    """Until every capture ended; Ctrl-C/SIGTERM stops them all (cleanly) and returns True."""
    try:
        while any(c.thread.is_alive() for c in captures):
            time.sleep(0.1)
        return False
    except KeyboardInterrupt:
        for one in captures:
            one.session.stop("interrupted")
        for one in captures:
            one.thread.join()
        return True


def _merge(captures: list[PodCapture], merge_to: Path | None) -> Path | None:
    written = [c for c in captures if c.result is not None and c.path.exists()]
    written = [c for c in written if c.result.output != "-"]
    if merge_to is None or not written:
        return None
    from podcap.capture.merge import merge

    merge([(f"{c.target.namespace}/{c.target.name}", c.path) for c in written], merge_to)
    return merge_to


def _save_node_rules(transports: dict, options: SessionOptions) -> dict[str, dict[str, str]]:
    """Each node's rules, as text (the sidecar carries them, so ``podcap analyze`` can explain
    SNAT offline) and in ``NODE.iptables-save.txt`` (and ``NODE.ipvsadm.txt``) to read."""
    saved: dict[str, dict[str, str]] = {}
    for node, transport in transports.items():
        saved[node] = node_rules(transport, options.node_pid)
        write_node_rules(saved[node], options.output_dir, node)
    return saved
