"""``podcap netns``: a shell, or one command, in a Pod's network namespace on its node.

Flags -> the target (a Pod, or a container/PID on a node: podcap.cli._target) -> the entered
namespace (``podcap.netns.enter``) -> one argv attached to the user's terminal.
"""

from __future__ import annotations

from typing import Annotated

import typer

from podcap.cli import app
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
    Pid,
    PidLookup,
    SshKey,
    SshOption,
    SshPort,
    SshSudo,
    SshUser,
    ViaOption,
)

Words = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="[POD] [-- CMD ARGS...]",
        help="The Pod (unless --container-id/--pid), then the command to run after --; "
        "no command: an interactive shell.",
        show_default=False,
    ),
]
Tty = Annotated[
    bool | None,
    typer.Option(
        "--tty/--no-tty",
        "-t",
        help="A terminal on the node (ssh -t, exec with tty). Default: for the shell, when "
        "stdin is a terminal; for a command, no.",
        show_default=False,
    ),
]


@app.command()
def netns(
    ctx: typer.Context,
    words: Words = None,
    tty: Tty = None,
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
    """Open a shell in a Pod's network namespace on its node, or run one command there.

    The node's tools with the Pod's network: ip a, ss -tunlp, tcpdump see the Pod's
    interfaces and sockets. The shell's prompt names the Pod. A command's output and exit
    status come back as with kubectl exec (argv passed as given, no shell string).

    Examples: podcap netns web-0 -n shop -- ss -tunlp;
    podcap netns --via ssh --node node1 --container-id containerd://3f4e...
    """
    import sys

    from podcap import netns as library

    ssh = SshLogin(ssh_user, ssh_port, ssh_key, tuple(ssh_option or ()), ssh_sudo)
    where = NodeSide(via, node, container_id, pid, ssh, pid_lookup)
    kube = PodSide(namespace, container, kubeconfig, context)
    helper = HelperFlags(helper_namespace, image, image_pull_secret, capabilities)
    pod, command = split_words(words, where)
    refuse_the_other_targets_flags(ctx, for_pods=pod is not None)
    with open_target(pod, where, kube, helper) as (transport, target):
        tools = ("nsenter", command[0]) if command else ("nsenter", "sh", "env")
        entered = library.enter(transport, target, tools)
        if command:
            use_tty = bool(tty)
            argv = library.command_argv(entered, command)
        else:
            use_tty = sys.stdin.isatty() if tty is None else tty
            argv = library.shell_argv(entered, interactive=use_tty)
        status = library.attach(transport, argv, tty=use_tty)
    raise typer.Exit(status)
