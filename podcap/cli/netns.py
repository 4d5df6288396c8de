"""``podcap netns`` and ``podcap inspect``: flags in, ``podcap.netns`` called.

Both take their targets as ``podcap capture`` does, with the very same flag definitions:
``_with_target_flags`` reads them off the capture command and hands them to either command as
``where`` and ``kube``, so the commands cannot drift apart.
A Pod name (``web-0 -n shop``) goes through the Kubernetes API and a helper Pod on its node;
``--container-id``/``--pid`` go to the node ``--via local`` or ``--via ssh --node HOST``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect as _signature
from pathlib import Path

import typer

from podcap.cli import app, render_reports, warn
from podcap.cli import capture as _capture
from podcap.cli._kube import KubeArgs, helper_spec
from podcap.cli.analyze import Format


def _capture_flag(name: str):
    """The option object ``podcap capture`` declares for its parameter ``name``."""
    return _signature.signature(_capture.capture).parameters[name].default


class _Where:
    """The node-side flags: how to reach the node, and which container or PID."""

    def __init__(
        self, via, node, ssh_user, ssh_port, ssh_key, ssh_option, ssh_sudo, container_id, pid
    ):
        self.via, self.node = via.value if via else None, node
        self.ssh = dict(ssh_user=ssh_user, ssh_port=ssh_port, ssh_key=ssh_key, ssh_sudo=ssh_sudo)
        self.ssh_options = ssh_option
        self.container_id, self.pid = container_id, pid


WHERE_FLAGS = (
    "via", "node", "ssh_user", "ssh_port", "ssh_key", "ssh_option", "ssh_sudo", "container_id",
    "pid",
)  # fmt: skip
KUBE_FLAGS = (
    "namespace", "container", "kubeconfig", "context", "helper_namespace", "image",
    "image_pull_secret", "capabilities",
)  # fmt: skip


def _with_target_flags(command):
    """Give ``command`` the target flags of ``podcap capture`` (the very same option objects,
    so the commands cannot drift apart) and call it with them gathered into ``where``
    (:class:`_Where`) and ``kube`` (KubeArgs). Typer reads the signature set here."""
    capture_flags = _signature.signature(_capture.capture, eval_str=True).parameters
    own = _signature.signature(command, eval_str=True).parameters
    parameters = [p for name, p in own.items() if name not in ("where", "kube")]
    parameters += [capture_flags[name] for name in WHERE_FLAGS + KUBE_FLAGS]
    parameters = [p.replace(kind=_signature.Parameter.KEYWORD_ONLY) for p in parameters]

    @functools.wraps(command)
    def with_target_flags(**values):
        where = _Where(*(values.pop(name) for name in WHERE_FLAGS))
        kube = KubeArgs(**{name: values.pop(name) for name in KUBE_FLAGS})
        return command(**values, where=where, kube=kube)

    with_target_flags.__signature__ = _signature.Signature(parameters)
    with_target_flags.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_target_flags


@app.command()
@_with_target_flags
def netns(
    words: list[str] = typer.Argument(
        None,
        metavar="[POD] [-- CMD ARGS...]",
        help="The Pod (unless --container-id/--pid), then the command to run after --; "
        "no command: an interactive shell.",
        show_default=False,
    ),
    tty: bool = typer.Option(
        None,
        "--tty/--no-tty",
        "-t",
        help="A terminal on the node (ssh -t, exec with tty). Default: for the shell, when "
        "stdin is a terminal; for a command, no.",
        show_default=False,
    ),
    *,
    where: _Where,
    kube: KubeArgs,
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

    pod, command = _split_words(words, where.container_id, where.pid)
    with _open(where, pod, kube) as (transport, target):
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


@app.command()
@_with_target_flags
def inspect(
    pod: str = typer.Argument(
        None, metavar="[POD]", help="The Pod (unless --container-id/--pid).", show_default=False
    ),
    output_format: Format = typer.Option(
        Format.table, "--format", "-F", help="Output format.", case_sensitive=False
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="Write here instead of stdout (csv/parquet: a directory, one file per report).",
    ),
    node_rules: bool = typer.Option(
        False,
        "--node-rules",
        help="Also save the node's iptables-save nat table (and ipvsadm -Ln where installed), "
        "for podcap analyze --iptables.",
    ),
    rules_dir: Path = typer.Option(
        None,
        "--rules-dir",
        help="Where --node-rules saves NODE.iptables-save.txt (default: beside -o, else here).",
    ),
    node_pid: str = _capture_flag("node_pid"),
    *,
    where: _Where,
    kube: KubeArgs,
) -> None:
    """A snapshot of a Pod's network as the troubleshooting guide asks for it.

    Reports: summary, interfaces (ip -j addr), routes (ip -j route), sockets (ss -tunlpH:
    listening sockets and their processes).

    Example: podcap inspect web-0 -n shop --node-rules -F json
    """
    import sys

    from podcap import netns as library
    from podcap.errors import UsageError

    pod, extra = _split_words([pod] if pod else [], where.container_id, where.pid)
    if extra:
        raise UsageError(f"{extra[0]}: name a Pod or give --container-id/--pid, not both")
    if node_rules and rules_dir is None:
        rules_dir = Path(output).parent if output and output != "-" else Path(".")
    with _open(where, pod, kube) as (transport, target):
        snapshot = library.inspect(
            transport,
            target,
            rules_dir if node_rules else None,
            # "1" is the capture flag's default: PID 1 from a helper Pod, the node itself else.
            node_pid=None if node_pid == "1" else node_pid,
        )
    for name, path in snapshot.node_rules.items():
        print(f"podcap: saved the node's {name} to {path}", file=sys.stderr)
    render_reports(snapshot.reports(), output_format.value, output)


# --- from flags to (transport, target) --------------------------------------------------------


def _split_words(words: list[str] | None, container_id: str | None, pid: int | None):
    """``(pod name or None, command)``: without --container-id/--pid the first word names
    the Pod (as in ``kubectl exec POD -- CMD``)."""
    from podcap.errors import UsageError

    words = list(words or [])
    if container_id is not None or pid is not None:
        return None, words
    if not words:
        raise UsageError("no target: name a Pod (with -n), or give --container-id or --pid")
    return words[0], words[1:]


@contextlib.contextmanager
def _open(where: _Where, pod: str | None, kube: KubeArgs):
    """Yield ``(transport, target)``; the transport (and a helper Pod) closed on the way out."""
    from podcap import netns as library
    from podcap.errors import UsageError
    from podcap.reach import open_transport

    if pod is not None:
        if where.via not in (None, "pod"):
            raise UsageError(
                f"a Pod name goes through a helper Pod (--via pod); with --via {where.via} "
                "give --container-id or --pid"
            )
        with _helper(pod, kube) as opened:
            yield opened
        return
    if where.via == "pod":
        raise UsageError("--via pod needs a Pod name (POD -n NAMESPACE)")
    where.via = where.via or "local"
    target = library.Target(container_id=where.container_id, pid=where.pid)
    transport = open_transport(where.via, where.node, ssh_options=where.ssh_options, **where.ssh)
    try:
        yield transport, target
    finally:
        transport.close()


@contextlib.contextmanager
def _helper(pod: str, kube: KubeArgs):
    from podcap import locate
    from podcap import netns as library

    client = locate.connect(kube.kubeconfig, kube.context)
    spec = helper_spec(kube, None)
    query = locate.TargetQuery([pod], namespace=kube.namespace, container=kube.container)
    with library.helper_session(client, query, spec) as (transport, target, warnings):
        for message in warnings:
            warn(message)
        yield transport, target
