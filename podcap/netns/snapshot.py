"""``podcap inspect``'s work: one snapshot of a Pod's network, and the node's nat rules.

:func:`inspect` enters the target, runs ``ip``/``ss`` there in one command
(:func:`take_snapshot`), parses the output (podcap.netns.parse) and, when asked, saves the
node's nat rules for ``podcap analyze --iptables`` (:func:`save_node_rules`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from podcap.errors import CaptureError
from podcap.netns.enter import Entered, Target, command_argv, enter
from podcap.netns.parse import parse_addresses, parse_routes, parse_sockets

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
    capture does (podcap.capture.node_rules). Whose namespaces are "the
    node": ``node_pid``'s when given; else, from a helper Pod, PID 1's (hostPID); over
    local/ssh the commands already run on the node."""
    from podcap.capture.node_rules import node_rules, write_node_rules

    if node_pid is None and transport.name == "pod":
        node_pid = "1"
    rules = node_rules(transport, node_pid)
    rules["iptables-save"] = nat_table(rules["iptables-save"])
    return write_node_rules(rules, directory, transport.node)
