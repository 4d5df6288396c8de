"""``podcap inspect``: a snapshot of a Pod's network (addresses, routes, sockets) as reports.

Flags -> the target (a Pod, or a container/PID on a node: podcap.cli._target) -> one
``podcap.netns.inspect`` call -> its reports rendered as ``podcap analyze`` renders its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from podcap.cli import app, render_reports
from podcap.cli._target import (
    HelperFlags,
    NodeSide,
    PodSide,
    SshLogin,
    open_target,
    refuse_the_other_targets_flags,
    split_words,
)
from podcap.cli.options import (
    DEFAULT_HELPER_NAMESPACE,
    DEFAULT_NODE_PID,
    Capabilities,
    Container,
    ContainerId,
    Context,
    HelperNamespace,
    Image,
    ImagePullSecret,
    Kubeconfig,
    Namespace,
    Node,
    NodePid,
    OutputFormat,
    Pid,
    PidLookup,
    ReportOutput,
    SshKey,
    SshOption,
    SshPort,
    SshSudo,
    SshUser,
    ViaOption,
)

PodName = Annotated[
    str | None,
    typer.Argument(
        metavar="[POD]", help="The Pod (unless --container-id/--pid).", show_default=False
    ),
]
NodeRules = Annotated[
    bool,
    typer.Option(
        "--node-rules",
        help="Also save the node's iptables-save nat table (and ipvsadm -Ln where installed), "
        "for podcap analyze --iptables.",
    ),
]
RulesDir = Annotated[
    Path | None,
    typer.Option(
        "--rules-dir",
        help="Where --node-rules saves NODE.iptables-save.txt (default: beside -o, else here).",
    ),
]


@app.command()
def inspect(
    ctx: typer.Context,
    pod: PodName = None,
    output_format: OutputFormat = "table",
    output: ReportOutput = None,
    node_rules: NodeRules = False,
    rules_dir: RulesDir = None,
    node_pid: NodePid = DEFAULT_NODE_PID,
    via: ViaOption = None,
    node: Node = None,
    ssh_user: SshUser = None,
    ssh_port: SshPort = None,
    ssh_key: SshKey = None,
    ssh_option: SshOption = None,
    ssh_sudo: SshSudo = False,
    container_id: ContainerId = None,
    pid_lookup: PidLookup = "cgroup,crictl,docker",
    pid: Pid = None,
    namespace: Namespace = None,
    container: Container = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    helper_namespace: HelperNamespace = DEFAULT_HELPER_NAMESPACE,
    image: Image = None,
    image_pull_secret: ImagePullSecret = None,
    capabilities: Capabilities = False,
) -> None:
    """A snapshot of a Pod's network as the troubleshooting guide asks for it.

    Reports: summary, interfaces (ip -j addr), routes (ip -j route), sockets (ss -tunlpH:
    listening sockets and their processes).

    Example: podcap inspect web-0 -n shop --node-rules -F json
    """
    import sys

    from podcap import netns as library
    from podcap.errors import UsageError
    from podcap.render import check_format

    output_format = check_format(output_format.lower())
    ssh = SshLogin(ssh_user, ssh_port, ssh_key, tuple(ssh_option or ()), ssh_sudo)
    where = NodeSide(via, node, container_id, pid, ssh, pid_lookup)
    kube = PodSide(namespace, container, kubeconfig, context)
    helper = HelperFlags(helper_namespace, image, image_pull_secret, capabilities)
    pod, extra = split_words([pod] if pod else [], where)
    if extra:
        raise UsageError(f"{extra[0]}: name a Pod or give --container-id/--pid, not both")
    refuse_the_other_targets_flags(ctx, for_pods=pod is not None)
    if node_rules and rules_dir is None:
        rules_dir = Path(output).parent if output and output != "-" else Path(".")
    with open_target(pod, where, kube, helper) as (transport, target):
        snapshot = library.inspect(
            transport,
            target,
            rules_dir if node_rules else None,
            # The flag's default is PID 1 from a helper Pod; the library picks the node itself.
            node_pid=None if node_pid == DEFAULT_NODE_PID else node_pid,
        )
    for name, path in snapshot.node_rules.items():
        print(f"podcap: saved the node's {name} to {path}", file=sys.stderr)
    render_reports(snapshot.reports(), output_format, output)
