"""Whose network namespace, found on its node: a target -> its PID, checked, and what runs there.

:func:`enter` resolves the target's PID with the capture's node script (``--mode resolve``)
and checks the tools about to run, in one round trip; :func:`command_argv` and
:func:`shell_argv` build the argv that runs in the namespace (argv items passed as given, no
shell string built from user input); :func:`helper_session` does the same for a Pod, through
its node's helper Pod.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from podcap.errors import CaptureError, UsageError

MISSING_HINT = "nsenter comes with util-linux, ip and ss with iproute2; or use --via pod"


@dataclass(frozen=True)
class Target:
    """A container (ID of any runtime, e.g. ``containerd://0123...``) or a PID on the node,
    and the name the user knows it by (``shop/web-0``) for prompts and reports."""

    container_id: str | None = None
    pid: int | None = None
    label: str = ""
    pid_lookup: tuple[str, ...] | None = None  # the node script's ways, in order (None: its own)

    def __post_init__(self) -> None:
        if (self.container_id is None) == (self.pid is None):
            raise UsageError("give exactly one of a container ID or a PID")

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if self.container_id:
            return "container " + self.container_id.split("://", 1)[-1][:12]
        return f"pid {self.pid}"


@dataclass(frozen=True)
class Entered:
    """A target found on its node: the PID whose network namespace we enter, and which."""

    target: Target
    node: str
    via: str
    pid: int
    netns: str  # e.g. net:[4026532385]


def enter(transport, target: Target, tools: tuple[str, ...] = ("nsenter",)) -> Entered:
    """Find ``target``'s PID on the transport's node and check ``tools`` are there, in one
    round trip (one ssh connection, one exec).

    The PID comes from the capture's node script in ``--mode resolve`` (container ID of any
    runtime -> PID, and the check that its namespace is not the node's): one lookup for
    capture, netns and inspect. Raises UsageError for a malformed ID; CaptureError when the
    container is gone, shares the node's network, the user may not enter its namespace (not
    root), or a tool is missing; ReachError when the node is unreachable.
    """
    from podcap.capture import command

    lookup = {"pid_lookup": target.pid_lookup} if target.pid_lookup else {}
    spec = command.CaptureSpec(container_id=target.container_id, pid=target.pid, **lookup)
    resolve = command.node_argv(spec, mode="resolve", transport=transport.name)
    done = transport.run(["sh", "-c", ENTER, "podcap-enter", "\n".join(tools), *resolve])
    report = command.parse_node_stderr(done.stderr.decode(errors="replace"))
    command.raise_for_node_failure(report, done.returncode, transport.node)
    answers = _probe_answers(done.stdout.decode(errors="replace"))
    pid = answers.get("pid", [""])[0]
    if done.returncode != 0 or not pid.isdigit() or report.netns is None:
        raise CaptureError(
            f"node {transport.node} gave no PID for {target.name} "
            f"(exit {done.returncode}, stdout {done.stdout[:80]!r})"
        )
    _raise_for_probe(answers, transport.node, pid)
    return Entered(target, transport.node, transport.name, int(pid), report.netns)


# On the node: $1 the tools to look for (one a line), then the node script's argv. Prints
# "pid N"; then "missing TOOL" for each tool it cannot find, else tries to enter the namespace
# once ("denied WHY"), so a lack of privilege shows now, as one clear error.
ENTER = """
tools=$1; shift
pid=$("$@") || exit $?
printf 'pid %s\\n' "$pid"
set -f
IFS='
'
missing=''
for tool in $tools; do
  command -v "$tool" >/dev/null 2>&1 || { printf 'missing %s\\n' "$tool"; missing=1; }
done
[ -z "$missing" ] || exit 0
out=$(nsenter -n -t "$pid" -- sh -c : 2>&1) || printf 'denied %s\\n' "$out" | tr '\\n' ' '
"""
DENIED_HINT = "entering another network namespace needs root (CAP_SYS_ADMIN) on the node"


def _probe_answers(stdout: str) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        answers.setdefault(word, []).append(rest.strip())
    return answers


def _raise_for_probe(answers: dict[str, list[str]], node: str, pid: str) -> None:
    """CaptureError naming every missing tool, or saying why the namespace cannot be entered."""
    missing = answers.get("missing")
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise CaptureError(f"{', '.join(missing)} {verb} not found on node {node}", MISSING_HINT)
    if "denied" in answers:
        raise CaptureError(
            f"cannot enter the network namespace of pid {pid} on node {node}: "
            f"{answers['denied'][0]}",
            hint=DENIED_HINT,
        )


# --- what runs there ----------------------------------------------------------------------


def command_argv(entered: Entered, argv: list[str]) -> list[str]:
    """``argv`` run in the target's network namespace, item by item as given."""
    if not argv:
        raise UsageError("no command given after --")
    return ["nsenter", "-n", "-t", str(entered.pid), "--", *argv]


# bash without rc files (a distribution's .bashrc would overwrite the prompt), else sh.
PICK_SHELL = (
    'if command -v bash >/dev/null 2>&1; then exec bash --norc --noprofile "$@"; fi; exec sh "$@"'
)


def prompt(entered: Entered) -> str:
    """The shell prompt: which Pod's network this is, and on which node."""
    return f"[podcap netns {entered.target.name} @ {entered.node}] # "


def shell_argv(entered: Entered, interactive: bool = True) -> list[str]:
    """An interactive shell in the target's network namespace, its prompt naming the Pod.
    Without a terminal the shell reads commands from stdin (``echo 'ip a' | podcap netns``)."""
    shell_args = ["-i"] if interactive else ["-s"]
    environment = [f"PS1={prompt(entered)}", f"PODCAP_NETNS={entered.target.name}"]
    return command_argv(
        entered, ["env", *environment, "sh", "-c", PICK_SHELL, "podcap-shell", *shell_args]
    )


@contextlib.contextmanager
def helper_session(kube, query, spec) -> Iterator[tuple[object, Target, list[str]]]:
    """Resolve ``query`` (podcap.locate.TargetQuery) to exactly one Pod, check access, start
    the helper Pod on its node and yield ``(transport, target, warnings)``; the helper is
    deleted on the way out, whatever happens (as for a capture: podcap.capture.pods)."""
    from podcap.capture import plan as kubecapture
    from podcap.reach import pod as helper

    the_plan = kubecapture.plan(kube, query, spec)
    if len(the_plan.targets) != 1:
        names = ", ".join(f"{t.namespace}/{t.name}" for t in the_plan.targets)
        raise UsageError(f"netns and inspect enter one Pod; {len(the_plan.targets)} match: {names}")
    (pod,) = the_plan.targets
    kubecapture.preflight(kube, the_plan)
    target = Target(container_id=pod.container_id, label=f"{pod.namespace}/{pod.name}")
    with helper.helper_transports(kube, spec, manifests=the_plan.manifests) as transports:
        yield transports[pod.node.name], target, the_plan.warnings
