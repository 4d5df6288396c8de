"""What ``podcap capture`` shows on stderr: one progress line while it runs, one closing line a
capture, for every kind of target (a PID, a container ID, Pods, a selector).

While it runs (on a terminal, without -q): ``podcap: 812 packets  96.4 kB  5.2 s  18.5 kB/s
(Ctrl-C stops)``, each Pod's count named by the Pod when there are several. At the end, for
each capture: ``podcap: [NAMESPACE/POD: ]N packets, SIZE in S s to FILE (ended by WHY);
tcpdump: N captured, N dropped by kernel``. The leading underscore keeps this module from
registering a command of its own.
"""

from __future__ import annotations

import sys
import threading

from podcap.cli import warn


class Progress:
    """Packets, bytes, elapsed time and rate on one stderr line, refreshed by rich; and the
    phases (a helper created, pending, running, deleted; listening; stopping) as lines above
    it. Without a terminal: the phases only; with -q: nothing."""

    def __init__(self, quiet: bool):
        self.live = None
        self.quiet = quiet
        self.latest: dict[str | None, object] = {}
        self.lock = threading.Lock()
        if quiet or not sys.stderr.isatty():
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

    def step(self, text: str) -> None:
        """One phase, on a line of its own (above the progress line on a terminal)."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.console.print(f"podcap: {text}", markup=False, highlight=False)
        else:
            print(f"podcap: {text}", file=sys.stderr, flush=True)

    def update(self, label: str | None, progress) -> None:
        """``progress`` (a StreamProgress) is the latest of the capture ``label``."""
        if self.live is None:
            return
        with self.lock:
            self.latest[label] = progress
            line = progress_line(self.latest, self.live.console.width)
        self.live.update(self._text(line, no_wrap=True, overflow="ellipsis"))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def progress_line(latest: dict, width: int) -> str:
    """The progress line for the captures' latest counters (``{label: StreamProgress}``), at
    most ``width`` columns: each Pod's counts when they fit, else the sum over the Pods; the
    "(Ctrl-C stops)" reminder only where there is room."""
    elapsed = max(max(p.elapsed for p in latest.values()), 1e-6)
    total = sum(p.bytes_written for p in latest.values())
    timing = f"  {elapsed:.1f} s  {human(total / elapsed)}/s"
    each = "  ".join(
        (f"{label}: " if label else "") + f"{p.packets} packets  {human(p.bytes_written)}"
        for label, p in sorted(latest.items(), key=lambda item: item[0] or "")
    )
    summed = (
        f"{len(latest)} pods: {sum(p.packets for p in latest.values())} packets  {human(total)}"
    )
    for counts in (each, summed) if len(latest) > 1 else (each,):
        for hint in ("  (Ctrl-C stops)", ""):
            line = f"podcap: {counts}{timing}{hint}"
            if len(line) <= width:
                return line
    return line[: max(width - 1, 0)] + "…"


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _why_lost(member) -> str:
    """Why a capture's connection went, where podcap knows: its helper deleted by another."""
    helper = getattr(getattr(member.session, "transport", None), "helper", None)
    gone = getattr(helper, "vanished", None)
    return (
        f" (its helper pod {gone} was deleted meanwhile: podcap cleanup --force?)" if gone else ""
    )


def closing_line(named: str, result) -> str:
    """``podcap: [WHO: ]N packets, SIZE in S s to FILE (ended by WHY); tcpdump: ...``."""
    stats = result.node_stats
    where = "stdout" if result.output == "-" else result.output
    kernel = f"{stats.dropped} dropped by kernel" if stats else "kernel drops unknown"
    return (f"podcap: {named}{result.packets} packets, {human(result.bytes_written)} in "
            f"{result.duration:.1f} s to {where} (ended by {result.ended_by}); "
            f"tcpdump: {stats.captured if stats else '?'} captured, {kernel}")  # fmt: skip


SPREAD_WORTH_SAYING = 0.1  # seconds between the first and the last capture to begin


def window_spread(captures) -> float | None:
    """Seconds between the first and the last of the captures to begin (their first bytes
    home); None for fewer than two."""
    begun = [m.result.listening for m in captures if m.result and m.result.listening]
    if len(begun) < 2:
        return None
    return (max(begun) - min(begun)).total_seconds()


def report(captures, quiet: bool) -> None:
    """The closing line of each capture (fleet Members); a warning when the node sent more
    than arrived. ReachError, after every line, when a connection was lost mid-capture: the
    files hold the whole packets that arrived."""
    from podcap.errors import ReachError

    lost = []
    for one in captures:
        result, named = one.result, f"{one.label}: " if one.label else ""
        stats = result.node_stats
        where = "stdout" if result.output == "-" else result.output
        if not quiet:
            print(closing_line(named, result), file=sys.stderr)
            if (view := getattr(one, "node_view_result", None)) is not None:
                print(closing_line(f"{view.node} {view.spec.interface} (--also-node): ", view),
                      file=sys.stderr)  # fmt: skip
        if result.ended_by == "connection-lost":
            lost.append(
                f"{named}the connection to {result.node} was lost{_why_lost(one)}; {where} "
                f"holds the {result.packets} whole packets that arrived"
            )
        elif stats and stats.written != result.bytes_received:
            warn(
                f"{named}the node sent {stats.written} bytes but {result.bytes_received} "
                "arrived; the file ends at the last whole packet"
            )
        if one.drops_result is not None and not quiet:
            print(f"podcap: {one.drops_result.describe()}", file=sys.stderr)
    if (apart := window_spread(captures)) is not None and apart >= SPREAD_WORTH_SAYING:
        warn(f"the captures began up to {apart:.2f} s apart (each sidecar's when.listening): "
             "a packet seen at one point may predate another's window")  # fmt: skip
    if lost:
        raise ReachError("; ".join(lost))


def stopped_at_once(signum: int) -> None:
    """A second signal ended the captures without their nodes' statistics: the shell's status
    for the signal (130, 143), after the closing lines."""
    import typer

    from podcap.cli import error
    from podcap.signals import REASONS

    error(f"{REASONS[signum]} again: stopped at once; each file ends at its last whole packet, "
          "without tcpdump's statistics")  # fmt: skip
    raise typer.Exit(128 + signum)


def print_check(plan) -> None:
    """``--check``: one line per pre-flight check, exit 2 with one error line when any fails."""
    import typer

    from podcap.capture.plan import check_report
    from podcap.errors import LocateError

    failed = 0
    for what, why_not in check_report(plan.kube, plan.plan, plan.options.ephemeral):
        typer.echo(
            f"{'ok' if why_not is None else 'NO':<3} {what}" + (f": {why_not}" if why_not else "")
        )
        failed += why_not is not None
    if failed:
        raise LocateError(
            f"{failed} pre-flight check{'s' if failed > 1 else ''} failed",
            hint="deploy/rbac.yaml holds what a cluster admin applies",
        )


def print_summaries(outcome) -> None:
    """``--analyze``: podcap analyze's summary of each pcap file with packets in it."""
    from podcap.analysis.run import analyze as run_analysis
    from podcap.cli import render_reports

    for one in outcome.captures:
        if one.result.packets and one.result.output != "-":
            render_reports(run_analysis([one.result.output], reports=["summary"]), "table", None)
