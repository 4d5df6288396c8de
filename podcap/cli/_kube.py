"""The Kubernetes half of ``podcap capture`` (targets are Pods, the transport a helper Pod).

``podcap/cli/capture.py`` owns the command and its flags; it hands Pod targets here. This
module only turns flags into library calls (podcap.locate, podcap.capture.fleet) and prints:
warnings, the dry-run YAML on stdout, progress per Pod and a closing line per Pod on stderr.
The leading underscore keeps it from registering a command of its own.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from podcap.cli import warn


@dataclass
class KubeArgs:
    """The flags of ``podcap capture`` that concern Kubernetes."""

    targets: list[str] = field(default_factory=list)
    namespace: str | None = None
    all_namespaces: bool = False
    selector: str | None = None
    container: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    helper_namespace: str = "podcap-system"
    image: str | None = None
    image_pull_secret: str | None = None
    capabilities: bool = False
    dry_run: bool = False
    also_node: bool = False
    node_rules: bool = False
    merge: bool = False
    node_pid: str = "1"
    node_iface: str = "eth0"


def helper_spec(args: KubeArgs, duration: float | None):
    """How the helper Pods look (podcap.reach.pod.HelperSpec), for a capture of ``duration``
    seconds (None: until stopped)."""
    from podcap.reach import pod as helper

    return helper.HelperSpec(
        namespace=args.helper_namespace,
        image=args.image or helper.DEFAULT_IMAGE,
        image_pull_secret=args.image_pull_secret,
        capabilities_only=args.capabilities,
        deadline_seconds=helper.deadline_for(duration),
    )


def run(
    args: KubeArgs,
    output: str | None,
    interface: str,
    bpf_filter: str,
    *,
    quiet: bool,
    snaplen: int | None,
    count: int | None,
    duration: float | None,
    max_size: str | None,
) -> list[str]:
    """Resolve, check, capture; returns the pcap files written. Raises PodcapError (the CLI's
    error boundary prints it)."""
    from podcap import locate
    from podcap.capture import fleet as kubecapture
    from podcap.capture import parse_size
    from podcap.errors import UsageError

    # Everything the user typed is checked before the first API call (SessionOptions checks
    # its capture settings as it is built).
    to_stdout = output == "-"
    to_file = bool(output) and output.endswith((".pcap", ".cap"))
    out_dir = Path(output).parent if to_file else Path("." if to_stdout else output or ".")
    options = kubecapture.SessionOptions(
        output_dir=out_dir,
        interface=interface,
        bpf_filter=bpf_filter or "",
        snaplen=snaplen,
        count=count,
        duration=duration,
        max_bytes=parse_size(max_size) if max_size else None,
        also_node=args.also_node,
        node_interface=args.node_iface,
        node_rules=args.node_rules,
        merge_to=out_dir / "capture.pcapng" if args.merge else None,
        node_pid=args.node_pid,
        stream=sys.stdout.buffer if to_stdout else None,
        output_file=Path(output) if to_file else None,
    )
    if args.all_namespaces and not args.selector:
        raise UsageError("-A goes with -l SELECTOR")
    kube = locate.connect(args.kubeconfig, args.context)
    spec = helper_spec(args, duration)
    query = locate.TargetQuery(
        names=list(args.targets),
        namespace=args.namespace,
        all_namespaces=args.all_namespaces,
        selector=args.selector,
        container=args.container,
    )
    plan = kubecapture.plan(kube, query, spec)
    for message in plan.warnings:
        warn(message)
    if args.dry_run:
        sys.stdout.write(kubecapture.dry_run_yaml(plan))
        return []
    kubecapture.check_one_output(plan, options)  # before preflight's API calls
    kubecapture.preflight(kube, plan)
    if not quiet:
        names = ", ".join(f"{t.namespace}/{t.name} on {t.node.name}" for t in plan.targets)
        print(f"podcap: capturing {names} (session {spec.session}; Ctrl-C stops)", file=sys.stderr)
    progress = Progress(quiet)
    try:
        outcome = kubecapture.run_session(kube, plan, options, progress.update)
    finally:
        progress.close()
    for one in outcome.captures:
        _report(one, quiet)
    if outcome.merged and not quiet:
        print(f"podcap: merged into {outcome.merged}", file=sys.stderr)
    return [
        one.result.output
        for one in outcome.captures
        if one.result and one.result.packets and one.result.output != "-"
    ]


def _report(one, quiet: bool) -> None:
    result = one.result
    stats = result.node_stats
    where = f"{one.target.namespace}/{one.target.name}"
    if not quiet:
        dropped = f"{stats.dropped} dropped by kernel" if stats else "kernel drops unknown"
        print(
            f"podcap: {where}: {result.packets} packets, {result.bytes_written} bytes to "
            f"{result.output} (ended by {result.ended_by}); {dropped}",
            file=sys.stderr,
        )
    if stats and stats.written != result.bytes_received:
        warn(
            f"{where}: the node sent {stats.written} bytes but {result.bytes_received} arrived "
            "(the exec stream lost its tail); the file ends at the last whole packet"
        )
    elif result.ended_by == "connection-lost":
        warn(f"{where}: the exec stream broke; {result.output} holds the packets that arrived")


class Progress:
    """One stderr line, refreshed at most twice a second: packets and bytes per Pod."""

    def __init__(self, quiet: bool):
        self.quiet = quiet or not sys.stderr.isatty()
        self.latest: dict[str, tuple[int, int]] = {}
        self.lock = threading.Lock()
        self.last = 0.0

    def update(self, key: str, progress) -> None:
        with self.lock:
            self.latest[key] = (progress.packets, progress.bytes_written)
            if self.quiet or time.monotonic() - self.last < 0.5:
                return
            self.last = time.monotonic()
            text = "  ".join(
                f"{k}: {p} pkts {b / 1e6:.2f} MB" for k, (p, b) in sorted(self.latest.items())
            )
            sys.stderr.write("\r" + text[:200])
            sys.stderr.flush()

    def close(self) -> None:
        if not self.quiet and self.latest:
            sys.stderr.write("\n")
