"""Step into a Pod's network namespace on its node: a shell, one command, or a snapshot.

The operator's "one-click netns entry" from the troubleshooting guide (container ID -> PID ->
``nsenter -n -t PID``), over any transport. The node's tools run with the Pod's network:
``nsenter -n`` switches the network namespace only, so ``ip``/``ss``/``tcpdump`` come from the
node (or the helper Pod's image) and see the Pod's interfaces, routes and sockets.

Steps, each its own module:

- :mod:`.enter`: :func:`enter` resolves the target's PID on the node with the capture script's
  own ``--mode resolve`` (podcap/capture/node.sh: container ID of any runtime -> PID, and the
  check that its namespace is not the node's), then checks that the tools we are about to run
  exist; :func:`command_argv` / :func:`shell_argv` build the argv that runs there (no shell
  string is ever built from user input: argv items are passed as given); :func:`helper_session`
  reaches a Pod through its node's helper Pod.
- :mod:`.attach`: :func:`attach` runs such an argv with the user's terminal, through the
  transport.
- :mod:`.snapshot`: :func:`inspect` takes one snapshot (``ip -j addr``, ``ip -j route``,
  ``ss -tunlpH``), parsed into DataFrames by :mod:`.parse`; :func:`save_node_rules` saves the
  node's nat rules for ``podcap analyze --iptables``.
"""

from podcap.netns.attach import attach, exit_status
from podcap.netns.enter import (
    Entered,
    Target,
    command_argv,
    enter,
    helper_session,
    prompt,
    shell_argv,
)
from podcap.netns.parse import parse_addresses, parse_routes, parse_sockets
from podcap.netns.snapshot import Snapshot, inspect, nat_table, save_node_rules, take_snapshot

__all__ = [
    "Entered",
    "Snapshot",
    "Target",
    "attach",
    "command_argv",
    "enter",
    "exit_status",
    "helper_session",
    "inspect",
    "nat_table",
    "parse_addresses",
    "parse_routes",
    "parse_sockets",
    "prompt",
    "save_node_rules",
    "shell_argv",
    "take_snapshot",
]
