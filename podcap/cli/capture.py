"""``podcap capture``: flags -> a target and a transport -> ``podcap.capture.CaptureSession``.

Targets without the Kubernetes API: ``--container-id ID`` or ``--pid PID`` on a node reached
``--via local`` (this machine) or ``--via ssh --node HOST``. The command resolves the target
and the transport, then calls the library once; Pod targets (``--via pod``) plug in the same way.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from enum import StrEnum

import typer

from podcap.cli import app, render_reports, warn


class Via(StrEnum):
    local = "local"
    ssh = "ssh"
    pod = "pod"  # a helper Pod through the Kubernetes API (podcap/cli/_kube.py)


@app.command()
def capture(
    container_id: str = typer.Option(
        None,
        "--container-id",
        help="Container to capture in: containerd://ID, cri-o://ID, docker://ID or a bare ID "
        "(found through /proc/*/cgroup on the node, then crictl or docker).",
    ),
    pid: int = typer.Option(None, "--pid", help="Capture in the network namespace of this PID."),
    via: Via = typer.Option(
        None,
        "--via",
        help="How to reach the node: local, ssh or pod (default: pod for Pod targets, else local).",
    ),
    node: str = typer.Option(None, "--node", help="The node's host name for --via ssh."),
    interface: str = typer.Option("eth0", "--interface", "-i", help="Interface, or any."),
    bpf_filter: str = typer.Option(
        "", "--filter", "-f", help="BPF capture filter, e.g. 'tcp port 80' (one argument)."
    ),
    snaplen: int = typer.Option(None, "--snaplen", "-s", help="Bytes kept per packet."),
    count: int = typer.Option(None, "--count", help="Stop after this many packets."),
    duration: float = typer.Option(None, "--duration", "-d", help="Stop after SECONDS."),
    max_size: str = typer.Option(
        None, "--max-size", help="Stop before the file grows past SIZE (e.g. 100MB, 1GiB)."
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        help="pcap file to write (default capture.pcap), or - for stdout; for Pod targets a "
        "directory for NAMESPACE_POD.pcap files (default .).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no closing line."),
    analyze: bool = typer.Option(
        False, "--analyze", help="When the capture ends, print podcap analyze's summary of it."
    ),
    ssh_user: str = typer.Option(None, "--ssh-user", help="ssh: remote user."),
    ssh_port: int = typer.Option(None, "--ssh-port", help="ssh: port."),
    ssh_key: str = typer.Option(None, "--ssh-key", help="ssh: identity file."),
    ssh_option: list[str] = typer.Option(
        [], "--ssh-option", help="ssh: KEY=VALUE passed as ssh -o (repeatable)."
    ),
    ssh_sudo: bool = typer.Option(
        False,
        "--ssh-sudo",
        help="ssh: run the node side as root through sudo -n (a --ssh-user with sudo "
        "without a password, as on most cloud nodes).",
    ),
    # --- Kubernetes targets (issue 5; handled in podcap/cli/_kube.py) ---
    targets: list[str] = typer.Argument(
        None, help="Pods to capture: NAME, pod/NAME, deploy/NAME, sts/NAME or ds/NAME."
    ),
    namespace: str = typer.Option(None, "--namespace", "-n", help="The targets' namespace."),
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", "-A", help="With -l: match Pods in every namespace."
    ),
    selector: str = typer.Option(None, "--selector", "-l", help="Label selector, e.g. app=web."),
    container: str = typer.Option(
        None, "--container", "-c", help="Container to enter (default: the first running one)."
    ),
    kubeconfig: str = typer.Option(None, "--kubeconfig", help="Kubeconfig (default $KUBECONFIG)."),
    context: str = typer.Option(None, "--context", help="Kubeconfig context."),
    helper_namespace: str = typer.Option(
        "podcap-system", "--helper-namespace", help="Namespace for the helper Pods."
    ),
    image: str = typer.Option(None, "--image", help="Helper image (tcpdump, nsenter, sh)."),
    image_pull_secret: str = typer.Option(
        None, "--image-pull-secret", help="Secret for pulling --image."
    ),
    capabilities: bool = typer.Option(
        False,
        "--capabilities",
        help="Helper not privileged, only SYS_ADMIN, NET_ADMIN, NET_RAW, SYS_PTRACE.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the helper Pods as YAML and stop (no writes to the API)."
    ),
    also_node: bool = typer.Option(
        False, "--also-node", help="Also capture the node's NIC, filtered to the Pod's IPs."
    ),
    node_interface: str = typer.Option(
        "eth0", "--node-interface", help="The node NIC for --also-node."
    ),
    node_rules: bool = typer.Option(
        False, "--node-rules", help="Save iptables-save (and ipvsadm -Ln) from each node."
    ),
    merge: bool = typer.Option(
        False, "--merge", help="Also merge all Pods into capture.pcapng, one interface per Pod."
    ),
    node_pid: str = typer.Option("1", "--node-pid", hidden=True),  # tests: a lab node
    # --- end Kubernetes targets ---
) -> None:
    """Capture packets in a container's network namespace on a node and bring the pcap home.

    Stops on --duration, --count, --max-size or Ctrl-C (the file always ends at the last whole
    packet). Writes OUTPUT.json beside the pcap: target, node, PID, filter, tcpdump statistics.

    Example: podcap capture --via ssh --node node1 --container-id containerd://3f4e... -f 'tcp port 80' -d 30
    """
    from podcap.capture import CaptureSession, CaptureSpec, parse_size
    from podcap.errors import UsageError
    from podcap.reach import open_transport

    # --- Kubernetes targets (issue 5): Pods found through the API, reached by helper Pods ---
    if targets or selector or via is Via.pod:
        from podcap.cli import _kube

        kube_args = _kube.KubeArgs(
            targets or [], namespace, all_namespaces, selector, container, kubeconfig, context,
            helper_namespace, image, image_pull_secret, capabilities, dry_run, also_node,
            node_rules, merge, node_pid, node_interface,
        )  # fmt: skip
        limits = dict(snaplen=snaplen, count=count, duration=duration, max_size=max_size)
        written = _kube.run(kube_args, output, interface, bpf_filter, quiet=quiet, **limits)
        for path in written if analyze else []:
            _print_summary(path)
        return
    via = via or Via.local
    output = output or "capture.pcap"
    # --- end Kubernetes targets ---

    # Everything the user typed is checked before any connection is made.
    spec = CaptureSpec(
        container_id=container_id,
        pid=pid,
        interface=interface,
        bpf_filter=bpf_filter,
        snaplen=snaplen,
        count=count,
        duration=duration,
        max_bytes=parse_size(max_size) if max_size else None,
    )
    to_stdout = output == "-"
    if to_stdout and analyze:
        raise UsageError("--analyze needs a file: give -o FILE.pcap instead of -o -")
    if not to_stdout:
        _check_writable(output)
    transport = open_transport(
        via.value,
        node,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        ssh_key=ssh_key,
        ssh_options=ssh_option,
        ssh_sudo=ssh_sudo,
    )
    display = _Progress(quiet or not sys.stderr.isatty())
    session = CaptureSession(
        transport, spec, sys.stdout.buffer if to_stdout else output, on_progress=display.update
    )
    try:
        with _stop_on_signals(session):
            result = session.run()
    finally:
        display.close()
        transport.close()
    _report(result, quiet)
    if analyze and result.packets:
        _print_summary(output)


def _check_writable(path: str) -> None:
    from podcap.errors import UsageError

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write {path}: {directory} is not a writable directory")


class _stop_on_signals:
    """Ctrl-C or SIGTERM stops the capture cleanly (tcpdump flushes); a second one kills it."""

    def __init__(self, session):
        self.session = session
        self.previous: dict[int, object] = {}
        self.signals_seen = 0

    def _handle(self, signum, frame) -> None:
        self.signals_seen += 1
        if self.signals_seen == 1:
            reason = "interrupted" if signum == signal.SIGINT else "terminated"
            # stop() may wait on a lock the interrupted code holds: do it off the handler.
            threading.Thread(target=self.session.stop, args=(reason,), daemon=True).start()
        else:
            threading.Thread(target=self.session.kill, daemon=True).start()

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class _Progress:
    """Packets, bytes, elapsed time and rate on one stderr line, refreshed by rich."""

    def __init__(self, quiet: bool):
        self.live = None
        if quiet:
            return
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self._text = Text
        self.live = Live(
            Text("podcap: starting the capture ..."),
            console=Console(stderr=True),
            refresh_per_second=4,
            transient=True,
        )
        self.live.start()

    def update(self, progress) -> None:
        if self.live is None:
            return
        elapsed = max(progress.elapsed, 1e-6)
        line = (
            f"podcap: {progress.packets} packets  {_human(progress.bytes_written)}  "
            f"{elapsed:.1f} s  {_human(progress.bytes_written / elapsed)}/s  (Ctrl-C stops)"
        )
        self.live.update(self._text(line))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _report(result, quiet: bool) -> None:
    from podcap.errors import ReachError

    stats = result.node_stats
    kernel = f"{stats.dropped} dropped by kernel" if stats else "kernel drops unknown"
    where = "stdout" if result.output == "-" else result.output
    if not quiet:
        print(
            f"podcap: {result.packets} packets, {_human(result.bytes_written)} in "
            f"{result.duration:.1f} s to {where} (ended by {result.ended_by}); "
            f"tcpdump: {stats.captured if stats else '?'} captured, {kernel}",
            file=sys.stderr,
        )
    if result.ended_by == "connection-lost":
        raise ReachError(
            f"the connection to {result.node} was lost; {where} holds the "
            f"{result.packets} whole packets that arrived"
        )
    if stats and stats.written != result.bytes_received:
        warn(f"the node sent {stats.written} bytes but {result.bytes_received} arrived")


def _print_summary(path: str) -> None:
    from podcap.analysis.run import analyze as run_analysis

    render_reports(run_analysis([path], reports=["summary"]), "table", None)
