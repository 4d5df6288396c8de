"""``podcap capture``: flags -> a capture plan -> ``podcap.capture.fleet.run``, for every target.

A target is a process on a node (``--container-id ID`` or ``--pid PID``, reached ``--via
local`` or ``--via ssh --node HOST``: a fleet of one) or Pods found through the Kubernetes API
(``NAME``, ``deploy/NAME``, ``-l SELECTOR``: one capture per Pod through a helper Pod on its
node). A flag that does not apply to the target given is refused, not ignored. The progress
line and the closing lines are podcap.cli._capture_view's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import typer

from podcap.cli import app, warn
from podcap.cli._target import (
    POD_PARAMETERS,
    SSH_PARAMETERS,
    HelperFlags,
    NodeSide,
    PodSide,
    SshLogin,
    given,
    refuse,
    refuse_the_other_targets_flags,
)
from podcap.cli.options import (
    DEFAULT_HELPER_NAMESPACE,
    DEFAULT_HELPER_TIMEOUT,
    DEFAULT_NODE_PID,
    AllNamespaces,
    Capabilities,
    Container,
    ContainerId,
    Context,
    Ephemeral,
    HelperNamespace,
    HelperTimeout,
    Image,
    ImagePullSecret,
    Kubeconfig,
    Namespace,
    Node,
    NodePid,
    PcapOutput,
    Pid,
    PidLookup,
    PodTargets,
    Quiet,
    Selector,
    SshKey,
    SshOption,
    SshPort,
    SshSudo,
    SshUser,
    Via,
    ViaOption,
)

Interface = Annotated[str, typer.Option("--interface", "-i", help="Interface, or any.")]
Filter = Annotated[
    str,
    typer.Option("--filter", "-f", help="BPF capture filter, e.g. 'tcp port 80' (one argument)."),
]
Snaplen = Annotated[
    int | None,
    typer.Option("--snaplen", "-s", help="Bytes kept per packet (0: whole packets, as tcpdump)."),
]
Count = Annotated[int | None, typer.Option("--count", help="Stop after this many packets.")]
Duration = Annotated[
    str | None,
    typer.Option("--duration", "-d", metavar="TIME", help="Stop after TIME: 30, 30s, 5m, 1h."),
]
MaxSize = Annotated[
    str | None,
    typer.Option("--max-size", help="Stop before the file grows past SIZE (e.g. 100MB, 1GiB)."),
]
Analyze = Annotated[
    bool,
    typer.Option("--analyze", help="When the capture ends, print podcap analyze's summary of it."),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the helper Pods as YAML, have the API server admit them in a server-side "
        "dry run (nothing is stored), and stop.",
    ),
]
Check = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Check, permission by permission, that you may run the helper Pods (RBAC, the "
        "helper namespace's Pod Security), then stop; nothing is created.",
    ),
]
AlsoNode = Annotated[
    bool,
    typer.Option("--also-node", help="Also capture the node's NIC, filtered to the Pod's IPs."),
]
NodeFilter = Annotated[
    str,
    typer.Option(
        "--node-filter",
        metavar="BPF",
        help="What --also-node keeps besides the Pods' addresses, e.g. 'host 192.168.1.10' for "
        "a peer the node masquerades to (default: -f's packets to/from the node's address).",
    ),
]
NodeInterface = Annotated[
    str, typer.Option("--node-interface", help="The node NIC for --also-node.")
]
NodeRules = Annotated[
    bool,
    typer.Option(
        "--node-rules",
        help="Save iptables-save (and ipvsadm -Ln, nft list ruleset) from each node.",
    ),
]
Drops = Annotated[
    bool,
    typer.Option(
        "--drops",
        help="Also record the kernel's drops of the target's packets on its node: reason and "
        "function (bpftrace on skb:kfree_skb; Linux 5.17+), into NODE.drops.jsonl (Pods) or "
        "OUTPUT.drops.jsonl.",
    ),
]
Merge = Annotated[
    bool,
    typer.Option("--merge", help="Also merge all Pods into capture.pcapng, one interface per Pod."),
]

# The parameters that only one kind of target takes (a flag given for the other is refused).
FOR_PODS = (
    *POD_PARAMETERS, "all_namespaces", "dry_run", "check", "also_node", "node_interface", "node_rules",
    "merge", "node_pid", "helper_timeout", "node_filter", "ephemeral",
)  # fmt: skip


@app.command()
def capture(
    ctx: typer.Context,
    targets: PodTargets = None,
    container_id: ContainerId = None,
    pid_lookup: PidLookup = "cgroup,crictl,docker",
    pid: Pid = None,
    via: ViaOption = None,
    node: Node = None,
    interface: Interface = "eth0",
    bpf_filter: Filter = "",
    snaplen: Snaplen = None,
    count: Count = None,
    duration: Duration = None,
    max_size: MaxSize = None,
    output: PcapOutput = None,
    quiet: Quiet = False,
    analyze: Analyze = False,
    ssh_user: SshUser = None,
    ssh_port: SshPort = None,
    ssh_key: SshKey = None,
    ssh_option: SshOption = None,
    ssh_sudo: SshSudo = False,
    namespace: Namespace = None,
    all_namespaces: AllNamespaces = False,
    selector: Selector = None,
    container: Container = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    helper_namespace: HelperNamespace = DEFAULT_HELPER_NAMESPACE,
    image: Image = None,
    image_pull_secret: ImagePullSecret = None,
    capabilities: Capabilities = False,
    helper_timeout: HelperTimeout = DEFAULT_HELPER_TIMEOUT,
    ephemeral: Ephemeral = False,
    dry_run: DryRun = False,
    check: Check = False,
    also_node: AlsoNode = False,
    node_interface: NodeInterface = "eth0",
    node_filter: NodeFilter = "",
    node_rules: NodeRules = False,
    drops: Drops = False,
    merge: Merge = False,
    node_pid: NodePid = DEFAULT_NODE_PID,
) -> None:
    """Capture packets in a container's network namespace on a node and bring the pcap home.

    Stops on --duration, --count, --max-size or Ctrl-C (the file always ends at the last whole
    packet). Writes OUTPUT.json beside the pcap: target, node, PID, filter, tcpdump statistics.

    Example: podcap capture --via ssh --node node1 --container-id containerd://3f4e... -f 'tcp port 80' -d 30
    """
    from podcap.capture.command import CaptureSettings, parse_duration, parse_size
    from podcap.errors import UsageError

    # Everything the user typed is checked before any connection or API call.
    _refuse_a_count_given_as_container(container)
    for_pods = _for_pods(ctx, targets, selector, container_id is not None or pid is not None, via)
    if output == "-" and analyze:
        raise UsageError("--analyze needs a file: give -o FILE.pcap instead of -o -")
    if output == "-" and drops:
        raise UsageError("--drops writes a file beside the pcap: give -o FILE.pcap instead of -o -")
    settings = CaptureSettings(
        interface=interface, bpf_filter=bpf_filter, snaplen=snaplen, count=count,
        duration=parse_duration(duration) if duration is not None else None,
        max_bytes=parse_size(max_size) if max_size else None,
    )  # fmt: skip
    if for_pods:
        names = PodNames(list(targets or []), selector, all_namespaces)
        kube = PodSide(namespace, container, kubeconfig, context)
        helper = HelperFlags(helper_namespace, image, image_pull_secret, capabilities,
                             parse_duration(helper_timeout), ephemeral)  # fmt: skip
        if node_filter and not also_node:
            raise UsageError("--node-filter goes with --also-node")
        view = NodeView(also_node, node_interface, node_rules, node_pid, drops, node_filter)
        plan = _pod_plan(settings, output, names, kube, helper, view, merge)
    else:
        ssh = SshLogin(ssh_user, ssh_port, ssh_key, tuple(ssh_option or ()), ssh_sudo)
        plan = _node_plan(
            settings, output, NodeSide(via, node, container_id, pid, ssh, pid_lookup), drops
        )
    for message in plan.warnings:
        warn(message)
    if dry_run:
        from podcap.capture.plan import admitted, dry_run_yaml, ephemeral_yaml

        if ephemeral:
            sys.stdout.write(ephemeral_yaml(plan.plan))
            return
        sys.stdout.write(dry_run_yaml(plan.plan))
        sys.stdout.flush()
        admitted(plan.kube, plan.plan)  # the API server's verdict; it stores nothing
        return
    if check:
        from podcap.cli._capture_view import print_check

        print_check(plan)
        return
    outcome = _run(plan, quiet)
    if analyze:
        from podcap.cli._capture_view import print_summaries

        print_summaries(outcome)


@dataclass(frozen=True)
class PodNames:
    """The Pods named: ``NAME``, ``deploy/NAME``... and/or ``-l SELECTOR`` (``-A``: anywhere)."""

    names: list[str]
    selector: str | None
    all_namespaces: bool


@dataclass(frozen=True)
class NodeView:
    """``--also-node``, ``--node-interface``, ``--node-rules``, ``--node-pid``, ``--drops``:
    the node's own view beside each Pod's."""

    also_node: bool
    interface: str
    rules: bool
    pid: str
    drops: bool = False
    extra: str = ""  # --node-filter


def _for_pods(ctx: typer.Context, targets, selector, names_process: bool, via) -> bool:
    """True for Pod targets, False for a process on a node; UsageError for a flag that the
    target given does not take."""
    from podcap.errors import UsageError

    wants_pods = bool(targets) or selector is not None
    if names_process and wants_pods:
        raise UsageError("name Pods or give --container-id/--pid, not both")
    if names_process and via is Via.pod:
        raise UsageError("--via pod captures Pods (NAME -n NAMESPACE, or -l SELECTOR); "
                         "--container-id and --pid go --via local or ssh")  # fmt: skip
    if wants_pods and via not in (None, Via.pod):
        raise UsageError(f"a Pod goes through a helper Pod (--via pod); with --via {via} "
                         "give --container-id or --pid")  # fmt: skip
    pods = wants_pods or via is Via.pod or (not names_process and bool(given(ctx, FOR_PODS)))
    refuse_the_other_targets_flags(ctx, pods, FOR_PODS)
    if not pods and via is not Via.ssh:  # --node and --ssh-sudo: open_transport says why
        refuse(given(ctx, SSH_PARAMETERS[:-1]), "for --via ssh; --via local runs on this machine")
    if pods and given(ctx, ("all_namespaces",)) and selector is None:
        raise UsageError("-A goes with -l SELECTOR")
    return pods


def _refuse_a_count_given_as_container(container: str | None) -> None:
    """``-c`` is the Pod's container, as kubectl's; tcpdump's ``-c N`` (a packet count) is
    ``--count N`` here. A number after ``-c`` is taken for neither."""
    from podcap.errors import UsageError

    if container is not None and container.isdigit():
        raise UsageError(
            f"-c {container}: -c names the Pod's container, as in kubectl",
            hint=f"for tcpdump's packet count give --count {container}",
        )


def _node_plan(settings, output: str | None, where: NodeSide, drops: bool = False):
    """A process on a node reached --via local or ssh: a fleet of one."""
    from podcap.capture.command import CaptureSpec
    from podcap.capture.fleet import NodeCapture, check_writable
    from podcap.errors import UsageError

    if where.container_id is None and where.pid is None:
        raise UsageError(
            "nothing to capture: name Pods (NAME, deploy/NAME, -l SELECTOR) or give "
            "--container-id or --pid",
            "e.g. podcap capture web-0 -n shop -d 30",
        )
    spec = CaptureSpec(container_id=where.container_id, pid=where.pid, pid_lookup=where.lookups,
                       **settings.capture_settings())  # fmt: skip
    output = output or "capture.pcap"
    if output != "-":
        check_writable(output)  # before ssh connects
    transport = where.open_transport()
    return NodeCapture(transport, spec, sys.stdout.buffer if output == "-" else output, drops)


def _pod_plan(
    settings,
    output: str | None,
    pods: PodNames,
    kube: PodSide,
    helper: HelperFlags,
    view: NodeView,
    merge: bool,
):
    """Pods through the Kubernetes API, one helper Pod per node."""
    from podcap import locate
    from podcap.capture.plan import plan
    from podcap.capture.pods import PodCaptures, SessionOptions
    from podcap.reach.pod import HelperSpec

    options = SessionOptions.writing_to(
        output,
        sys.stdout.buffer,
        merge=merge,
        also_node=view.also_node,
        node_interface=view.interface,
        node_rules=view.rules,
        node_pid=view.pid,
        drops=view.drops,
        node_view_extra=view.extra,
        ephemeral=helper.ephemeral,
        **settings.capture_settings(),
    )
    client = locate.connect(kube.kubeconfig, kube.context)
    spec = HelperSpec.for_duration(
        settings.duration,
        namespace=helper.namespace,
        image=helper.image,
        image_pull_secret=helper.image_pull_secret,
        capabilities_only=helper.capabilities,
        start_timeout=helper.start_timeout,
        drops=view.drops,
    )
    query = locate.TargetQuery(
        names=pods.names,
        namespace=kube.namespace,
        all_namespaces=pods.all_namespaces,
        selector=pods.selector,
        container=kube.container,
    )
    comments = None
    if view.drops and merge:  # the merged pcapng marks each dropped packet's last copy
        from podcap.path.kernel_drops import comments_for

        comments = comments_for
    return PodCaptures(client, plan(client, query, spec), options, comment_packets=comments)


def _run(plan, quiet: bool):
    from podcap.capture import fleet
    from podcap.cli._capture_view import Progress, report, stopped_at_once

    def announce() -> None:
        if text := plan.announcement():
            progress.step(text)

    progress = Progress(quiet)
    try:
        outcome = fleet.run(plan, on_start=announce, on_progress=progress.update,
                            on_step=progress.step)  # fmt: skip
    finally:
        progress.close()
    report(outcome.captures, quiet)
    if outcome.merged and not quiet:
        print(f"podcap: merged into {outcome.merged}", file=sys.stderr)
    if outcome.killed_by is not None:
        stopped_at_once(outcome.killed_by)
    return outcome
