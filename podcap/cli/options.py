"""The option groups several commands share, declared once as typer ``Annotated`` aliases.

A command names its parameter with the alias as its type and gives the default there, e.g.
``namespace: Namespace = None``; the flag names and help texts live only here, so ``podcap
capture``, ``netns``, ``inspect``, ``analyze`` and ``cleanup`` cannot drift apart.

Groups: the node target (``--via``, ``--node``, ``--container-id``, ``--pid``), ssh
(``--ssh-*``), Kubernetes (``-n``, ``-l``, ``-A``, ``-c``, ``--kubeconfig``, ``--context``, the
helper Pod's flags) and output (``-F``, ``-o``, ``-q``). Imports typer and the standard library
only: ``podcap --help`` loads this module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class Via(StrEnum):
    """How a command reaches the node."""

    local = "local"
    ssh = "ssh"
    pod = "pod"  # a helper Pod through the Kubernetes API


class Format(StrEnum):
    """The output formats of the reports (``podcap analyze``, ``podcap inspect``)."""

    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"
    html = "html"


FORMATS = ", ".join(Format)
DEFAULT_HELPER_NAMESPACE = "podcap-system"
# The hidden --node-pid's default: PID 1 seen from a helper Pod, i.e. the node itself.
DEFAULT_NODE_PID = "1"

# --- the node target --------------------------------------------------------------------------

ViaOption = Annotated[
    Via | None,
    typer.Option(
        "--via",
        help="How to reach the node: local, ssh or pod (default: pod for Pod targets, else local).",
    ),
]
Node = Annotated[str | None, typer.Option("--node", help="The node's host name for --via ssh.")]
ContainerId = Annotated[
    str | None,
    typer.Option(
        "--container-id",
        help="The container whose network namespace to enter, on the node: containerd://ID, "
        "cri-o://ID, docker://ID or a bare ID (found through /proc/*/cgroup, then crictl or "
        "docker: --pid-lookup).",
    ),
]
Pid = Annotated[
    int | None, typer.Option("--pid", help="Enter the network namespace of this PID, on the node.")
]
NodePid = Annotated[str, typer.Option("--node-pid", hidden=True)]  # tests: a lab node
PidLookup = Annotated[
    str,
    typer.Option(
        "--pid-lookup",
        metavar="WAY,...",
        help="How the node finds --container-id's PID, in order: cgroup (/proc/*/cgroup), "
        "crictl, docker, podman, ctr.",
    ),
]

# --- ssh ----------------------------------------------------------------------------------------

SshUser = Annotated[str | None, typer.Option("--ssh-user", help="ssh: remote user.")]
SshPort = Annotated[int | None, typer.Option("--ssh-port", help="ssh: port.")]
SshKey = Annotated[str | None, typer.Option("--ssh-key", help="ssh: identity file.")]
SshOption = Annotated[
    list[str] | None,
    typer.Option("--ssh-option", help="ssh: KEY=VALUE passed as ssh -o (repeatable)."),
]
SshSudo = Annotated[
    bool,
    typer.Option(
        "--ssh-sudo",
        help="ssh: run the node side as root through sudo -n (a --ssh-user with sudo "
        "without a password, as on most cloud nodes).",
    ),
]

# --- Kubernetes -------------------------------------------------------------------------------

PodTargets = Annotated[
    list[str] | None,
    typer.Argument(help="Pods to capture: NAME, pod/NAME, deploy/NAME, sts/NAME or ds/NAME."),
]
Namespace = Annotated[str | None, typer.Option("--namespace", "-n", help="The targets' namespace.")]
Selector = Annotated[
    str | None, typer.Option("--selector", "-l", help="Label selector, e.g. app=web.")
]
AllNamespaces = Annotated[
    bool,
    typer.Option("--all-namespaces", "-A", help="With -l: match Pods in every namespace."),
]
Container = Annotated[
    str | None,
    typer.Option("--container", "-c", help="Container to enter (default: the first running one)."),
]
Kubeconfig = Annotated[
    str | None,
    typer.Option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."),
]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
HelperNamespace = Annotated[
    str, typer.Option("--helper-namespace", help="Namespace for the helper Pods.")
]
Image = Annotated[str | None, typer.Option("--image", help="Helper image (tcpdump, nsenter, sh).")]
ImagePullSecret = Annotated[
    str | None, typer.Option("--image-pull-secret", help="Secret for pulling --image.")
]
Ephemeral = Annotated[
    bool,
    typer.Option(
        "--ephemeral",
        help="Capture from an ephemeral container added to each Pod (as kubectl debug), not a "
        "privileged helper Pod on its node: for namespaces under Pod Security baseline.",
    ),
]
HelperTimeout = Annotated[
    str,
    typer.Option(
        "--helper-timeout",
        metavar="TIME",
        help="How long a helper Pod may take to start (pulling its image): 120, 5m.",
    ),
]
DEFAULT_HELPER_TIMEOUT = "120"
Capabilities = Annotated[
    bool,
    typer.Option(
        "--capabilities",
        help="Helper not privileged, only SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_PTRACE.",
    ),
]

# --- output -------------------------------------------------------------------------------------

# A plain string checked by podcap.render.check_format (one "unknown format" message for every
# command), spelled out here because the help must not import the renderers (pandas).
OutputFormat = Annotated[str, typer.Option("--format", "-F", help=f"Output format: {FORMATS}.")]
ReportOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Write here instead of stdout. csv/parquet with several reports: a directory, "
        "one file per report.",
    ),
]
PcapOutput = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        "-w",
        help="pcap file to write (default capture.pcap), or - for stdout; for Pod targets a "
        "directory for NAMESPACE_POD.pcap files (default .).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no closing line.")]
