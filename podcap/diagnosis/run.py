"""``podcap diagnose`` running: captures at every point, the probe once they all listen, then
everything home, lined up, and the verdict.

The captures are ``podcap capture``'s own (:class:`~podcap.capture.pods.PodCaptures`, run by
``podcap.capture.fleet.run``: one helper per node, deleted on success, failure, Ctrl-C and
SIGTERM); :class:`DiagnoseCaptures` adds a thread that waits for every tcpdump to listen, sends
the probe from the source Pod's network namespace through its node's helper, and then stops
the captures. The bundle in ``-o DIR`` holds every capture with its sidecar, one merged pcapng
with an interface per capture point, the path report (json) and ``summary.txt``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from podcap.capture import fleet
from podcap.capture.pods import PodCaptures
from podcap.capture.session import ENDED_STOPPED
from podcap.diagnosis.plan import DiagnosePlan
from podcap.diagnosis.probe import curl_outcome, probe_outcome
from podcap.errors import CaptureError, PodcapError

SETTLE_SECONDS = 0.5  # after the probe: the last packets reach every tcpdump
READY_SECONDS = 30
MERGED_NAME = "diagnose.pcapng"
Step = Callable[[str], None]


@dataclass
class DiagnoseCaptures(PodCaptures):
    """Both Pods' captures (and their nodes' NICs), the probe sent once all of them listen."""

    diagnosis: DiagnosePlan | None = None
    on_step: Step = print
    probe_status: int | None = None
    probe_error: PodcapError | None = None
    nodes_check: str = ""  # what the source node's try at the destination node gave

    def members(self, transports: dict) -> list[fleet.Member]:
        members = super().members(transports)
        threading.Thread(
            target=self._probe_then_stop, args=(members, transports), daemon=True, name="probe"
        ).start()
        return members

    def _probe_then_stop(self, members: list[fleet.Member], transports: dict) -> None:
        plan = self.diagnosis
        source = plan.source
        destination = plan.destinations[0] if plan.destinations else None
        try:
            for session in _sessions(members):
                session.wait_ready(READY_SECONDS)
            for member in members:  # the kernel's drops, watched before the probe goes
                if member.drops is not None:
                    member.drops.wait_ready(READY_SECONDS)
            self.on_step(f"capturing at {len(_sessions(members))} points: "
                         f"{', '.join(plan.points())}")  # fmt: skip
            for member in members:
                if member.target.name != source.name:
                    target = member.target
                    listening = _listening(transports[target.node.name], target)
                    member.session.cluster["listening"] = listening
            if plan.destinations and destination.node.name != source.node.name:
                self.nodes_check = _nodes_check(transports[source.node.name], plan, self.options)
                self.on_step(self.nodes_check)
            self._send_probe(transports[source.node.name])
            time.sleep(SETTLE_SECONDS)
        except PodcapError as exc:
            self.probe_error = exc
        finally:
            for member in members:
                member.session.stop(ENDED_STOPPED)

    def _send_probe(self, transport) -> None:
        from podcap.netns import Target, command_argv, enter

        probe, source = self.diagnosis.probe, self.diagnosis.source
        if probe is None:
            seconds = self.diagnosis.request.duration
            self.on_step(f"no probe: capturing your own traffic for {seconds:g} s")
            time.sleep(seconds)
            return
        target = Target(container_id=source.container_id, label=f"{source.namespace}/{source.name}")
        entered = enter(transport, target, tools=("nsenter", probe.tool))
        self.on_step(f"probe: {probe.describe()}")
        done = transport.run(command_argv(entered, probe.argv()), timeout=probe.timeout + 15)
        self.probe_status = done.returncode
        self.on_step(f"probe: {probe_outcome(probe.kind, done.returncode)}")


def _listening(transport, target) -> list[int] | None:
    """The TCP ports ``target`` listens on (``ss`` in its namespace, read by
    ``podcap.netns.parse_sockets``), None when the node cannot say."""
    from podcap.netns import Target, command_argv, enter, parse_sockets

    try:
        entered = enter(transport, Target(container_id=target.container_id), ("nsenter", "ss"))
        done = transport.run(command_argv(entered, ["ss", "-tunlH"]), timeout=30)
    except PodcapError:
        return None
    if done.returncode != 0:
        return None
    sockets = parse_sockets(done.stdout.decode(errors="replace"))
    tcp = sockets[sockets["proto"] == "tcp"]["local_port"].dropna()
    return sorted({int(port) for port in tcp})


# Which port of the destination node the source node knocks at: the kubelet's, on every node.
KUBELET_PORT = 10250


def _nodes_check(transport, plan: DiagnosePlan, options) -> str:
    """The guide's first step: from the source node's own network, does the destination node
    answer at all: a ping, and a TCP connect to its kubelet port (an answer, even a refusal,
    means the path between the two nodes is open)."""

    source, target = plan.source.node, plan.destination.node
    address = target.internal_ip or plan.destination.host_ip
    if not address:
        return f"nodes: {target.name} has no InternalIP to check"
    enter = ["nsenter", "-n", "-t", options.node_pid_for(source.name), "--"]
    ping = _try(transport, [*enter, "ping", "-n", "-c", "1", "-W", "2", address])
    knock = _try(transport, [*enter, "curl", "-sS", "--max-time", "2",
                             f"telnet://{address}:{KUBELET_PORT}"])  # fmt: skip
    if ping is None and knock is None:
        return f"nodes: could not check {source.name} -> {target.name}"
    pinged = {None: "not run", 0: "answered", 127: "no ping on the node"}.get(ping, "no answer")
    # Connected, or refused: either way an answer came.
    knocked = {0: "open", 7: "refused", 52: "open", 56: "open"}.get(knock)
    knocked_text = knocked or ("not run" if knock is None else curl_outcome(knock))
    said = f"ping: {pinged}, tcp {KUBELET_PORT}: {knocked_text}"
    if ping == 0 or knocked:
        return f"nodes: {target.name} ({address}) answers {source.name} ({said})"
    return (f"nodes: {target.name} ({address}) does not answer {source.name} ({said}): check "
            "the nodes reach each other at all")  # fmt: skip


def _try(transport, argv: list[str]) -> int | None:
    """``argv``'s exit status on the node; None when it could not be run."""
    try:
        return transport.run(argv, timeout=20).returncode
    except PodcapError:
        return None


def _sessions(members: list[fleet.Member]) -> list:
    return [m.session for m in members] + [m.node_view for m in members if m.node_view]


@dataclass
class Diagnosis:
    """What ``podcap diagnose`` found: the verdict on the probe, and where the evidence is."""

    plan: DiagnosePlan
    bundle: Path
    files: list[Path]
    path: pd.DataFrame
    probe_row: pd.Series | None
    probe_status: int | None
    nodes_check: str = ""
    snat: pd.Series | None = None  # outside the cluster: the snat report's row of the probe

    @property
    def reachable(self) -> bool | None:
        """True or False from the probe's connection; None when no probe was seen. A UDP
        datagram that reached the destination Pod got there, answered or not (UDP has no
        handshake: many services ignore a datagram they do not understand)."""
        if self.probe_row is None:
            return None
        return self.probe_row["outcome"] == "delivered" or self.arrived_unanswered

    @property
    def arrived_unanswered(self) -> bool:
        row, plan = self.probe_row, self.plan
        pods = {f"pod {d.namespace}/{d.name}" for d in plan.destinations}
        return bool(row is not None and row["protocol"] == "udp"
                    and row["outcome"] == "unanswered" and row["last_seen"] in pods)  # fmt: skip

    @property
    def exit_status(self) -> int:
        return {True: 0, False: 1, None: 2}[self.reachable]

    def verdict(self) -> str:
        """The answer, a few lines: reachable or not, where and why, what to change."""
        plan = self.plan
        head = f"{plan.source.namespace}/{plan.source.name} -> {plan.destination_label}"
        row = self.probe_row
        if row is None:
            return f"{head}: no verdict (the probe's connection is in no capture)\n"
        word = "REACHABLE" if self.reachable else "NOT REACHABLE"
        how = "arrived, not answered" if self.arrived_unanswered else row["outcome"]
        lines = [f"{head}: {word} ({how})"]
        for label, column in (("lost between", "lost_between"), ("answer lost between",
                              "reply_lost_between"), ("why", "explanation"), ("fix", "fix")):  # fmt: skip
            if isinstance(row[column], str) and row[column]:
                lines.append(f"  {label}: {row[column]}")
        if plan.probe is not None:
            lines.append(f"  probe: {plan.probe.describe()}: "
                         f"{probe_outcome(plan.probe.kind, self.probe_status)}"
                         if self.probe_status is not None else f"  probe: {plan.probe.describe()}")  # fmt: skip
        if self.snat is not None and self.snat["verdict"] != "unknown":
            lines.append(f"  source seen outside: {self.snat['verdict']}: "
                         f"{self.snat['explanation']}")  # fmt: skip
            if isinstance(self.snat["fix"], str) and self.snat["fix"]:
                lines.append(f"  snat fix: {self.snat['fix']}")
        if self.nodes_check:
            lines.append(f"  {self.nodes_check}")
        lines.append(f"  evidence: {self.bundle}/ (captures, {MERGED_NAME}, index.html, path.json)")
        return "\n".join(lines) + "\n"


def run_diagnosis(kube, plan: DiagnosePlan, on_step: Step = print) -> Diagnosis:
    """Capture, probe, bring home, line up; the Diagnosis (its bundle written)."""
    captures = DiagnoseCaptures(kube, plan.captures, plan.options, diagnosis=plan, on_step=on_step)
    plan.options.output_dir.mkdir(parents=True, exist_ok=True)
    outcome = fleet.run(captures)
    if captures.probe_error is not None:
        raise captures.probe_error
    files = _written(outcome.captures, plan)
    if not files:
        raise CaptureError("no capture point wrote a file")
    for member in outcome.captures:
        if member.drops_result is not None:
            on_step(member.drops_result.describe())
    on_step(f"lining up {len(files)} captures")
    return _judge(plan, files, captures.probe_status, captures.nodes_check)


def _written(members: list[fleet.Member], plan: DiagnosePlan) -> list[Path]:
    """The capture files in path order: the source Pod, its node, the destination's node, the
    destination Pod (where no connection says the order, the path report keeps this one)."""
    by_pod = {m.target.name: m for m in members}
    source = by_pod[plan.source.name]
    files = [source.path, _view(source)]
    for destination in plan.destinations:
        files += [_view(by_pod[destination.name]), by_pod[destination.name].path]
    # A capture without a packet stays: that its point saw nothing is the evidence.
    return [f for f in files if f is not None and f.exists() and f.stat().st_size >= 24]


def _view(member: fleet.Member) -> Path | None:
    return Path(member.node_view.output) if member.node_view is not None else None


def _judge(plan: DiagnosePlan, files: list[Path], probe_status, nodes_check: str) -> Diagnosis:
    from podcap.analysis.run import analyze

    result = analyze([str(f) for f in files], reports=["path", "hops", "snat"], page=True)
    path = result["path"]
    local_port = _probe_port(plan, files[0])
    probe_row = _probe_row(plan, path, local_port)
    snat = _probe_row(plan, result["snat"], local_port) if plan.address is not None else None
    diagnosis = Diagnosis(
        plan, plan.options.output_dir, files, path, probe_row, probe_status, nodes_check, snat
    )
    _write_bundle(diagnosis, result)
    return diagnosis


def _probe_row(plan: DiagnosePlan, table: pd.DataFrame, local_port: int | None):
    """The probe's row of the path (or snat) report: its connection (by its source port),
    its pings; with no probe, the first connection from the source Pod to the destination's
    port."""
    probe = plan.probe
    rows = table[table["client_ip"] == plan.source.pod_ips[0]]
    if "protocol" in rows:  # the snat report's rows are TCP connections
        wanted = "tcp" if probe is None or probe.kind == "http" else probe.kind
        rows = rows[rows["protocol"] == wanted]
    if probe is not None and probe.kind == "icmp":
        rows = rows[rows["server_ip"] == probe.ip]
    else:
        rows = rows[rows["server_port"].eq(plan.port).fillna(False).astype(bool)]
    if probe is not None and probe.kind != "icmp":
        rows = rows[rows["client_port"].eq(local_port).fillna(False).astype(bool)]
    return rows.iloc[0] if len(rows) else None


def _probe_port(plan: DiagnosePlan, source_capture: Path) -> int | None:
    """The probe's source port: chosen by podcap for curl; a UDP probe's, read off the
    source Pod's capture (the datagram carrying its marker)."""
    probe = plan.probe
    if probe is None or probe.kind == "icmp":
        return None
    if probe.kind != "udp":
        return probe.local_port
    from podcap.decode import read_capture
    from podcap.decode.schema import UDP

    capture = read_capture(str(source_capture), preview=True)
    packets, marker = capture.packets, probe.marker.encode()
    for at in (packets["ip_proto"] == UDP).to_numpy().nonzero()[0]:
        if marker in bytes(capture.payload_head[at]):
            return int(packets["sport"].iat[at])
    return None


def _write_bundle(diagnosis: Diagnosis, result) -> None:
    from podcap.capture.merge import merge
    from podcap.path.kernel_drops import comments_for
    from podcap.render import render

    bundle = diagnosis.bundle
    names = _point_names(diagnosis.files)
    comments = comments_for([str(f) for f in diagnosis.files])
    merge([(names[f], f) for f in diagnosis.files], bundle / MERGED_NAME,
          comment="podcap diagnose", packet_comments=comments)  # fmt: skip
    render({"path": diagnosis.path}, "json", str(bundle / "path.json"))
    render({"hops": result["hops"]}, "csv", str(bundle / "hops.csv"))
    render(result, "html", str(bundle / "index.html"))
    (bundle / "summary.txt").write_text(diagnosis.verdict())


def _point_names(files: list[Path]) -> dict[Path, str]:
    """Each capture's point name as the path report gives it (from its sidecar)."""
    from podcap.path.points import point_name
    from podcap.sidecar import read_sidecar

    return {file: point_name(str(file), read_sidecar(str(file)) or {}) for file in files}
