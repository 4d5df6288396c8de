"""From the target flags of ``podcap netns`` and ``podcap inspect`` to ``(transport, target)``.

A Pod name (``web-0 -n shop``) goes through the Kubernetes API and a helper Pod on its node;
``--container-id``/``--pid`` go to the node ``--via local`` or ``--via ssh --node HOST``. The
leading underscore keeps this module from registering a command of its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import typer

from podcap.cli import warn
from podcap.cli.options import DEFAULT_HELPER_NAMESPACE

# The parameters only a Pod target takes, and those only a node reached --via local/ssh takes,
# in netns and inspect (capture adds its own).
POD_PARAMETERS = (
    "namespace", "container", "kubeconfig", "context", "helper_namespace", "image",
    "image_pull_secret", "capabilities",
)  # fmt: skip
SSH_PARAMETERS = ("ssh_user", "ssh_port", "ssh_key", "ssh_option", "ssh_sudo")
NODE_PARAMETERS = ("node", *SSH_PARAMETERS)


@dataclass(frozen=True)
class SshLogin:
    """The ``--ssh-*`` flags: how ``--via ssh`` logs in."""

    user: str | None = None
    port: int | None = None
    key: str | None = None
    options: tuple[str, ...] = ()
    sudo: bool = False


@dataclass(frozen=True)
class NodeSide:
    """The node-side flags: how to reach the node, and which container or PID."""

    via: str | None = None
    node: str | None = None
    container_id: str | None = None
    pid: int | None = None
    ssh: SshLogin = SshLogin()
    pid_lookup: str = "cgroup,crictl,docker"  # --pid-lookup, as given

    @property
    def lookups(self) -> tuple[str, ...]:
        from podcap.capture.command import pid_lookups

        return pid_lookups(self.pid_lookup)

    @property
    def names_a_process(self) -> bool:
        return self.container_id is not None or self.pid is not None

    def open_transport(self):
        """The transport to the node: ``--via local`` (the default) or ``--via ssh``."""
        from podcap.reach import open_transport

        login = self.ssh
        return open_transport(
            self.via or "local",
            self.node,
            ssh_user=login.user,
            ssh_port=login.port,
            ssh_key=login.key,
            ssh_options=login.options,
            ssh_sudo=login.sudo,
        )


@dataclass(frozen=True)
class PodSide:
    """The Kubernetes flags: the Pod's namespace and container, and the API to ask."""

    namespace: str | None = None
    container: str | None = None
    kubeconfig: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class HelperFlags:
    """The helper Pod's flags (``--helper-namespace``, ``--image``, ...)."""

    namespace: str = DEFAULT_HELPER_NAMESPACE
    image: str | None = None
    image_pull_secret: str | None = None
    capabilities: bool = False
    start_timeout: float | None = None  # --helper-timeout, in seconds
    ephemeral: bool = False  # --ephemeral: an ephemeral container in each Pod instead


def given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The flags among the parameters ``names`` that the command line gave (by name: typer
    carries its own copy of click's ParameterSource)."""
    return [
        "/".join(sorted(param.opts, key=len))
        for param in ctx.command.params
        if param.name in names and ctx.get_parameter_source(param.name).name == "COMMANDLINE"
    ]


def refuse(flags: list[str], why: str) -> None:
    """One UsageError naming every flag given that the target cannot use."""
    from podcap.errors import UsageError

    if flags:
        raise UsageError(f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} {why}")


def refuse_the_other_targets_flags(
    ctx: typer.Context,
    for_pods: bool,
    pod_parameters: tuple[str, ...] = POD_PARAMETERS,
    node_parameters: tuple[str, ...] = NODE_PARAMETERS,
) -> None:
    """A Pod target refuses the node flags, a process on a node the Pod flags."""
    if for_pods:
        refuse(given(ctx, node_parameters), "for --via local/ssh, not for Pod targets")
    else:
        refuse(given(ctx, pod_parameters), "for Pod targets, not for --container-id/--pid")


def split_words(words: list[str] | None, where: NodeSide) -> tuple[str | None, list[str]]:
    """``(pod name or None, command)``: without --container-id/--pid the first word names
    the Pod (as in ``kubectl exec POD -- CMD``)."""
    from podcap.errors import UsageError

    words = list(words or [])
    if where.names_a_process:
        return None, words
    if not words:
        raise UsageError("no target: name a Pod (with -n), or give --container-id or --pid")
    return words[0], words[1:]


@contextlib.contextmanager
def open_target(pod: str | None, where: NodeSide, kube: PodSide, helper: HelperFlags):
    """Yield ``(transport, target)``; the transport (and a helper Pod) closed on the way out."""
    from podcap import netns
    from podcap.errors import UsageError

    if pod is not None:
        if where.via not in (None, "pod"):
            raise UsageError(
                f"a Pod name goes through a helper Pod (--via pod); with --via {where.via} "
                "give --container-id or --pid"
            )
        with _through_helper(pod, kube, helper) as opened:
            yield opened
        return
    if where.via == "pod":
        raise UsageError("--via pod needs a Pod name (POD -n NAMESPACE)")
    target = netns.Target(container_id=where.container_id, pid=where.pid, pid_lookup=where.lookups)
    transport = where.open_transport()
    try:
        yield transport, target
    finally:
        transport.close()


@contextlib.contextmanager
def _through_helper(pod: str, kube: PodSide, helper: HelperFlags):
    from podcap import locate, netns
    from podcap.reach.pod import HelperSpec

    client = locate.connect(kube.kubeconfig, kube.context)
    spec = HelperSpec.for_duration(
        None,
        namespace=helper.namespace,
        image=helper.image,
        image_pull_secret=helper.image_pull_secret,
        capabilities_only=helper.capabilities,
    )
    query = locate.TargetQuery([pod], namespace=kube.namespace, container=kube.container)
    with netns.helper_session(client, query, spec) as (transport, target, warnings):
        for message in warnings:
            warn(message)
        yield transport, target
