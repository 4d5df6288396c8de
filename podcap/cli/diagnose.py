"""``podcap diagnose SRC DST[:PORT]``: flags -> a diagnosis plan -> ``podcap.diagnosis``.

Each step is a line on stderr as it runs; the verdict goes to stdout. Exit status: 0 the
probe got through, 1 it did not (the verdict says where and why), 2 no diagnosis (one line).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from podcap.cli import app
from podcap.cli.options import (
    DEFAULT_HELPER_NAMESPACE,
    DEFAULT_HELPER_TIMEOUT,
    DEFAULT_NODE_PID,
    Capabilities,
    Context,
    HelperNamespace,
    HelperTimeout,
    Image,
    ImagePullSecret,
    Kubeconfig,
    Namespace,
    NodePid,
    Quiet,
)

Source = Annotated[str, typer.Argument(metavar="SRC", help="The Pod the connection starts in.")]
Destination = Annotated[
    str,
    typer.Argument(
        metavar="DST[:PORT]",
        help="The Pod it should reach, and the port (default: the first port DST declares).",
    ),
]
ProbeKind = Annotated[
    str,
    typer.Option(
        "--probe",
        metavar="KIND",
        help="tcp: a connection carrying a marker (the guide's lbtest); http: GET /podcap-...; "
        "udp: a datagram carrying the marker; icmp: pings (no port needed); none: capture your "
        "own traffic for --duration.",
    ),
]
Timeout = Annotated[
    str, typer.Option("--timeout", metavar="TIME", help="How long the probe waits: 3s, 10s.")
]
Duration = Annotated[
    str, typer.Option("--duration", "-d", metavar="TIME", help="--probe none: how long.")
]
Output = Annotated[
    str | None,
    typer.Option(
        "--output", "-o", metavar="DIR",
        help="The evidence: captures, merged pcapng, path report (default: podcap-diagnose-TIME).",
    ),
]  # fmt: skip
ProbeSize = Annotated[
    int,
    typer.Option(
        "--probe-size", metavar="BYTES",
        help="--probe tcp: also send BYTES after the marker, in a segment of their own (an MTU "
        "check: 1400 on a 1500 path).",
    ),
]  # fmt: skip
NodeInterface = Annotated[str, typer.Option("--node-interface", help="The nodes' NIC.")]
Drops = Annotated[
    bool,
    typer.Option(
        "--drops/--no-drops",
        help="Record the kernel's drops of the probe's packets on the nodes (reason, function; "
        "bpftrace, Linux 5.17+), where the nodes allow it.",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the plan and the helper Pods as YAML; create nothing."),
]


@app.command()
def diagnose(
    source: Source,
    destination: Destination,
    namespace: Namespace = None,
    probe: ProbeKind = "tcp",
    probe_size: ProbeSize = 0,
    timeout: Timeout = "3s",
    duration: Duration = "10s",
    output: Output = None,
    dry_run: DryRun = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    helper_namespace: HelperNamespace = DEFAULT_HELPER_NAMESPACE,
    image: Image = None,
    image_pull_secret: ImagePullSecret = None,
    capabilities: Capabilities = False,
    helper_timeout: HelperTimeout = DEFAULT_HELPER_TIMEOUT,
    node_interface: NodeInterface = "eth0",
    node_pid: NodePid = DEFAULT_NODE_PID,
    drops: Drops = True,
    quiet: Quiet = False,
) -> None:
    """Why can't SRC reach DST? Capture at both Pods and both nodes' NICs at once, send a
    probe from inside SRC, and say where its packets stopped, why, and what to change.

    Example: podcap diagnose web-a0 web-b0:80 -n shop
    """
    from podcap import locate
    from podcap.capture.command import parse_duration
    from podcap.diagnosis import DiagnoseRequest, plan_diagnosis, run_diagnosis
    from podcap.reach.pod import HelperSpec

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    request = DiagnoseRequest(
        source=source,
        destination=destination,
        namespace=namespace,
        probe=probe,
        timeout=parse_duration(timeout),
        duration=parse_duration(duration),
        output_dir=Path(output or f"podcap-diagnose-{stamp}"),
        node_interface=node_interface,
        node_pid=node_pid,
        probe_size=probe_size,
        drops=drops,
    )

    def step(text: str) -> None:
        if not quiet:
            print(f"podcap: {text}", file=sys.stderr, flush=True)

    kube = locate.connect(kubeconfig, context)
    helper = HelperSpec.for_duration(
        request.timeout + 60,
        namespace=helper_namespace,
        image=image,
        image_pull_secret=image_pull_secret,
        capabilities_only=capabilities,
        start_timeout=parse_duration(helper_timeout),
        drops=drops,
    )
    step(f"locating {source} and {request.destination_name}")
    plan = plan_diagnosis(kube, request, helper)
    if dry_run:
        print(plan.describe(), end="")
        return
    for line in plan.describe().splitlines()[:2]:
        step(line.removeprefix("# "))
    for message in plan.captures.warnings:  # which Pod of a workload, hostNetwork, ...
        step(message)
    diagnosis = run_diagnosis(kube, plan, on_step=step)
    print(diagnosis.verdict(), end="")
    raise typer.Exit(diagnosis.exit_status)
