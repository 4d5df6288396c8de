"""Step into a Pod's network namespace on its node: a shell, one command, or a snapshot.

The operator's "one-click netns entry" from the troubleshooting guide (container ID -> PID ->
``nsenter -n -t PID``), over any transport. The node's tools run with the Pod's network:
``nsenter -n`` switches the network namespace only, so ``ip``/``ss``/``tcpdump`` come from the
node (or the helper Pod's image) and see the Pod's interfaces, routes and sockets.

Steps, each its own function:

- :func:`enter` resolves the target's PID on the node with the capture script's own
  ``--mode resolve`` (podcap/capture/node.sh: container ID of any runtime -> PID, and the check
  that its namespace is not the node's), then checks that the tools we are about to run exist.
- :func:`command_argv` / :func:`shell_argv` build the argv that runs there (no shell string is
  ever built from user input: argv items are passed as given).
- :func:`attach` runs such an argv with the user's terminal, through the transport.
- :func:`inspect` takes one snapshot (``ip -j addr``, ``ip -j route``, ``ss -tunlpH``) and
  turns it into DataFrames; :func:`save_node_rules` saves the node's nat rules for
  ``podcap analyze --iptables``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from podcap.errors import CaptureError, UsageError

MISSING_HINT = "nsenter comes with util-linux, ip and ss with iproute2; or use --via pod"


# --- whose namespace ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A container (ID of any runtime, e.g. ``containerd://0123...``) or a PID on the node,
    and the name the user knows it by (``shop/web-0``) for prompts and reports."""

    container_id: str | None = None
    pid: int | None = None
    label: str = ""

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

    spec = command.CaptureSpec(container_id=target.container_id, pid=target.pid)
    resolve = command.node_argv(spec, mode="resolve")
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


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: killed by signal N gives 128+N."""
    return 128 - returncode if returncode < 0 else returncode


# --- inspect: one snapshot of the Pod's network ---------------------------------------------

# Runs inside the namespace: each section's output between markers, then its exit status.
SNAPSHOT = r"""
section() {
  name=$1; shift
  printf '@@podcap-begin %s\n' "$name"
  "$@"
  status=$?
  printf '\n@@podcap-end %s %s\n' "$name" "$status"
}
section addr ip -j addr show
section route4 ip -j -4 route show table all
section route6 ip -j -6 route show table all
section sockets ss -tunlpH
"""
SECTION = re.compile(r"^@@podcap-begin (\w+)\n(.*?)\n?@@podcap-end \1 (\d+)$", re.M | re.S)
SNAPSHOT_TOOLS = ("nsenter", "ip", "ss")


def snapshot_argv(entered: Entered) -> list[str]:
    return command_argv(entered, ["sh", "-c", SNAPSHOT, "podcap-inspect"])


def take_snapshot(transport, entered: Entered) -> dict[str, str]:
    """Run the snapshot; return each section's raw text. CaptureError when one failed."""
    done = transport.run(snapshot_argv(entered), timeout=60)
    text = done.stdout.decode(errors="replace")
    sections = {m.group(1): (m.group(2), int(m.group(3))) for m in SECTION.finditer(text)}
    stderr = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0 or len(sections) < 4:
        raise CaptureError(
            f"inspect in {entered.target.name} on node {entered.node} failed "
            f"(exit {done.returncode}): {stderr[-300:] or 'no output'}"
        )
    failed = [name for name, (_, status) in sections.items() if status != 0]
    # A node without IPv6 answers `ip -6 route` with an error: that is "no IPv6 routes".
    failed = [name for name in failed if name != "route6"]
    if failed:
        raise CaptureError(
            f"inspect in {entered.target.name} on node {entered.node}: "
            f"{', '.join(failed)} failed: {stderr[-300:]}"
        )
    return {name: body if status == 0 else "" for name, (body, status) in sections.items()}


def parse_addresses(text: str):
    """``ip -j addr`` as one row per address (an interface without addresses: one row)."""
    import pandas as pd

    rows = []
    for link in _json_list(text, "ip -j addr"):
        base = {
            "interface": link.get("ifname", ""),
            "index": link.get("ifindex"),
            "state": link.get("operstate", ""),
            "mtu": link.get("mtu"),
            "mac": link.get("address", ""),
            "peer_index": link.get("link_index"),
        }
        addresses = link.get("addr_info") or [{}]
        for info in addresses:
            rows.append(
                base
                | {
                    "family": info.get("family", ""),
                    "address": info.get("local", ""),
                    "prefixlen": info.get("prefixlen"),
                    "scope": info.get("scope", ""),
                }
            )
    columns = ["interface", "index", "state", "mtu", "mac", "family", "address", "prefixlen"]
    columns += ["scope", "peer_index"]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("index", "mtu", "prefixlen", "peer_index"):
        table[column] = table[column].astype("Int64")
    return table


def parse_routes(ipv4: str, ipv6: str):
    """``ip -j route show table all`` (IPv4 then IPv6), without the kernel's ``local`` table
    (one entry per own address and broadcast: noise next to the routes the guide asks for)."""
    import pandas as pd

    rows = []
    for family, text in (("inet", ipv4), ("inet6", ipv6)):
        for route in _json_list(text, "ip -j route"):
            table = route.get("table", "main")
            if table == "local":
                continue
            rows.append(
                {
                    "family": family,
                    "table": table,
                    "type": route.get("type", "unicast"),
                    "dst": route.get("dst", ""),
                    "gateway": route.get("gateway", ""),
                    "dev": route.get("dev", ""),
                    "protocol": route.get("protocol", ""),
                    "scope": route.get("scope", ""),
                    "prefsrc": route.get("prefsrc", ""),
                    "metric": route.get("metric"),
                }
            )
    columns = ["family", "table", "type", "dst", "gateway", "dev", "protocol", "scope"]
    columns += ["prefsrc", "metric"]
    routes = pd.DataFrame(rows, columns=columns)
    routes["metric"] = routes["metric"].astype("Int64")
    return routes


def _json_list(text: str, what: str) -> list[dict]:
    if not text.strip():
        return []
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise CaptureError(f"{what} printed something that is not JSON: {text[:80]!r}") from exc
    return [item for item in parsed if isinstance(item, dict)]


USERS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)')


def parse_sockets(text: str):
    """``ss -tunlpH``: one row per listening TCP or bound UDP socket, with its processes."""
    import pandas as pd

    rows = []
    for line in text.splitlines():
        fields = line.split(None, 6)
        if len(fields) < 6:
            continue
        netid, state, recv_q, send_q, local, peer = fields[:6]
        users = USERS.findall(fields[6]) if len(fields) > 6 else []
        local_address, local_port = _split_endpoint(local)
        peer_address, peer_port = _split_endpoint(peer)
        rows.append(
            {
                "proto": netid,
                "state": state,
                "local_address": local_address,
                "local_port": local_port,
                "peer_address": peer_address,
                "peer_port": peer_port,
                "process": ",".join(dict.fromkeys(name for name, _, _ in users)),
                "pids": ",".join(dict.fromkeys(pid for _, pid, _ in users)),
                "recv_q": int(recv_q) if recv_q.isdigit() else None,
                "send_q": int(send_q) if send_q.isdigit() else None,
            }
        )
    columns = ["proto", "state", "local_address", "local_port", "process", "pids"]
    columns += ["recv_q", "send_q", "peer_address", "peer_port"]
    sockets = pd.DataFrame(rows, columns=columns)
    for column in ("local_port", "recv_q", "send_q"):
        sockets[column] = sockets[column].astype("Int64")
    return sockets


def _split_endpoint(text: str) -> tuple[str, int | str | None]:
    """``0.0.0.0:80``, ``[::]:80``, ``*:53``, ``127.0.0.53%lo:53`` -> (address, port);
    the port stays ``*`` (any) where ss prints it so."""
    address, _, port = text.rpartition(":")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if port.isdigit():
        return address, int(port)
    return address, None if port == "*" else port


@dataclass
class Snapshot:
    """What ``podcap inspect`` reports: a summary row and three tables."""

    entered: Entered
    interfaces: object  # DataFrame
    routes: object
    sockets: object
    node_rules: dict[str, Path]

    def reports(self) -> dict:
        """``{report name: DataFrame}`` for :func:`podcap.render.render`."""
        import pandas as pd

        entered = self.entered
        global_addresses = self.interfaces[
            (self.interfaces["scope"] == "global") & (self.interfaces["address"] != "")
        ]
        summary = {
            "target": entered.target.name,
            "container_id": entered.target.container_id or "",
            "node": entered.node,
            "via": entered.via,
            "pid": entered.pid,
            "netns": entered.netns,
            "addresses": " ".join(global_addresses["address"]),
            "interfaces": self.interfaces["interface"].nunique(),
            "routes": len(self.routes),
            "listening": len(self.sockets),
        }
        summary |= {f"rules_{name}": str(path) for name, path in self.node_rules.items()}
        return {
            "summary": pd.DataFrame([summary]),
            "interfaces": self.interfaces,
            "routes": self.routes,
            "sockets": self.sockets,
        }


def inspect(
    transport,
    target: Target,
    node_rules_dir: Path | None = None,
    node_pid: str | None = None,
) -> Snapshot:
    """Snapshot ``target``'s network; with ``node_rules_dir``, also save the node's nat rules
    (and IPVS table) there, as ``NODE.iptables-save.txt`` / ``NODE.ipvsadm.txt``.
    ``node_pid``: see :func:`save_node_rules`."""
    entered = enter(transport, target, SNAPSHOT_TOOLS)
    raw = take_snapshot(transport, entered)
    saved = save_node_rules(transport, node_rules_dir, node_pid) if node_rules_dir else {}
    return Snapshot(
        entered=entered,
        interfaces=parse_addresses(raw["addr"]),
        routes=parse_routes(raw["route4"], raw["route6"]),
        sockets=parse_sockets(raw["sockets"]),
        node_rules=saved,
    )


# --- the node's rules, for podcap analyze --iptables ----------------------------------------


def nat_table(iptables_save: str) -> str:
    """Only the ``*nat`` table of an ``iptables-save`` dump (the part SNAT analysis walks)."""
    kept, inside = [], False
    for line in iptables_save.splitlines(keepends=True):
        if line.startswith("*"):
            inside = line.strip() == "*nat"
        if inside or line.startswith("#"):
            kept.append(line)
        if inside and line.strip() == "COMMIT":
            inside = False
    return "".join(kept)


def save_node_rules(transport, directory: Path, node_pid: str | None = None) -> dict[str, Path]:
    """Save the node's nat table (``iptables-save``) and, where installed, ``ipvsadm -Ln``
    into ``directory``; returns ``{name: path}``. Reads and writes them the way the Kubernetes
    capture does (podcap.capture.fleet.node_rules, write_node_rules). Whose namespaces are "the
    node": ``node_pid``'s when given; else, from a helper Pod, PID 1's (hostPID); over
    local/ssh the commands already run on the node."""
    from podcap.capture.fleet import node_rules, write_node_rules

    if node_pid is None and transport.name == "pod":
        node_pid = "1"
    rules = node_rules(transport, node_pid)
    rules["iptables-save"] = nat_table(rules["iptables-save"])
    return write_node_rules(rules, directory, transport.node)


# --- attach: run an argv on the node with the user's terminal -------------------------------


def attach(transport, argv: list[str], tty: bool) -> int:
    """Run ``argv`` on the node with this process's stdin, stdout and stderr, as ``kubectl
    exec`` does; ``tty`` asks for a terminal on the node (ssh -t; exec with tty). Returns the
    command's exit status (128+N when a signal N ended it)."""
    if transport.name == "local":
        return _run_attached(argv)
    if transport.name == "ssh":
        return _run_attached(transport.argv_for(argv, tty=tty))
    if transport.name == "pod":
        return _attach_exec(transport, argv, tty)
    raise UsageError(f"cannot attach a terminal through transport {transport.name!r}")


def _run_attached(argv: list[str]) -> int:
    """A local child on our terminal. While it runs, Ctrl-C is the child's alone (as in ssh,
    where it is a byte sent to the node), so podcap neither dies first nor leaves it behind.
    A Python handler (not SIG_IGN) does that: the child's exec resets it to the default."""
    import signal
    import subprocess

    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        child = subprocess.Popen(argv)
        return exit_status(child.wait())
    except FileNotFoundError as exc:
        raise CaptureError(f"{argv[0]} not found on this machine") from exc
    finally:
        signal.signal(signal.SIGINT, previous)


def _attach_exec(transport, argv: list[str], tty: bool) -> int:
    """Through the helper Pod's exec stream: our stdin goes on (EOF closes the node side's stdin
    under v5.channel.k8s.io), stdout and stderr come back as they arrive. With ``tty`` the exec
    gets a terminal on the node, ours goes raw and its size follows ours (resize channel)."""
    import select
    import threading

    process = transport.start(argv, tty=tty)
    with _raw_terminal(process) if tty else contextlib.nullcontext():
        threading.Thread(target=_send_stdin, args=(process,), daemon=True).start()
        shown, out = 0, process.stdout.fileno()
        while True:
            ready, _, _ = select.select([out], [], [], 0.2)
            shown = _show_new_stderr(process, shown)
            if not ready:
                continue
            chunk = os.read(out, 65536)
            if not chunk:
                break
            os.write(1, chunk)
        status = process.wait(30)
        _show_new_stderr(process, shown)
    return exit_status(status)


@contextlib.contextmanager
def _raw_terminal(process) -> Iterator[None]:
    """Our terminal in raw mode (keys, Ctrl-C included, go to the node as typed), its size
    sent now and on every SIGWINCH; restored on the way out."""
    import signal
    import termios
    import tty

    if not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    previous = signal.signal(signal.SIGWINCH, lambda signum, frame: _send_size(process))
    try:
        tty.setraw(0)
        _send_size(process)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


RESIZE_CHANNEL = 4  # channel.k8s.io: {"Width": columns, "Height": rows}


def _send_size(process) -> None:
    from websocket import WebSocketException

    with contextlib.suppress(OSError, ValueError, WebSocketException):
        size = os.get_terminal_size(0)
        message = json.dumps({"Width": size.columns, "Height": size.lines}).encode()
        process.ws.write_channel(RESIZE_CHANNEL, message)


def _send_stdin(process) -> None:
    from kubernetes.stream import ws_client
    from websocket import WebSocketException

    with contextlib.suppress(OSError, ValueError, WebSocketException):
        while data := os.read(0, 65536):
            process.ws.write_stdin(data)
    with contextlib.suppress(OSError, ValueError, WebSocketException):
        process.ws.close_channel(ws_client.STDIN_CHANNEL)


def _show_new_stderr(process, shown: int) -> int:
    """Pass on what the command wrote on stderr since last time (it arrives in a buffer)."""
    text = process.stderr_text()
    if len(text) > shown:
        os.write(2, text[shown:].encode())
    return len(text)


# --- through Kubernetes: one Pod, its node's helper -----------------------------------------


@contextlib.contextmanager
def helper_session(kube, query, spec) -> Iterator[tuple[object, Target, list[str]]]:
    """Resolve ``query`` (podcap.locate.TargetQuery) to exactly one Pod, check access, start
    the helper Pod on its node and yield ``(transport, target, warnings)``; the helper is
    deleted on the way out, whatever happens (as for a capture: podcap.capture.fleet)."""
    from podcap.capture import fleet as kubecapture
    from podcap.reach import pod as helper

    the_plan = kubecapture.plan(kube, query, spec)
    if len(the_plan.targets) != 1:
        names = ", ".join(f"{t.namespace}/{t.name}" for t in the_plan.targets)
        raise UsageError(f"netns and inspect enter one Pod; {len(the_plan.targets)} match: {names}")
    (pod,) = the_plan.targets
    kubecapture.preflight(kube, the_plan)
    target = Target(container_id=pod.container_id, label=f"{pod.namespace}/{pod.name}")
    with helper.helper_transports(kube, spec, the_plan.containers_by_node()) as transports:
        yield transports[pod.node.name], target, the_plan.warnings
