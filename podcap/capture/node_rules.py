"""The node's packet rules (``iptables-save``, ``ipvsadm -Ln``, ``nft list ruleset``), read
and saved.

``podcap capture --node-rules`` keeps them beside the Pods' captures and in their sidecars;
``podcap inspect`` saves them too (podcap.netns.snapshot).
"""

from __future__ import annotations

import re
from pathlib import Path

from podcap.errors import ReachError, UsageError


def node_rules(transport, node_pid: str | None = "1") -> dict[str, str]:
    """``iptables-save`` (and ``ipvsadm -Ln``, ``nft list ruleset`` where installed) from the
    node. Entering the
    node's mount namespace too runs the node's own iptables binary, so a legacy/nft mismatch
    with the helper image cannot hide rules. ``node_pid=None`` (podcap inspect --via
    local/ssh): the transport already runs on the node, so nothing is entered."""
    enter = ["nsenter", "-m", "-n", "-t", node_pid, "--"] if node_pid else []
    saved = transport.run([*enter, "iptables-save"], timeout=60)
    if saved.returncode != 0:
        raise ReachError(
            f"iptables-save on node {transport.node} failed: "
            f"{saved.stderr.decode(errors='replace').strip()}"
        )
    rules = {"iptables-save": saved.stdout.decode(errors="replace")}
    for name, argv in (("ipvsadm", "ipvsadm -Ln"), ("nft", "nft list ruleset")):
        tool = argv.split()[0]
        probe = f"command -v {tool} >/dev/null 2>&1 || exit 127; exec {argv}"
        done = transport.run([*enter, "sh", "-c", probe], timeout=60)
        if done.returncode == 0 and done.stdout.strip():
            rules[name] = done.stdout.decode(errors="replace")
    return rules


def node_file_part(node: str) -> str:
    """``node`` as the start of a file name: a node name is a DNS name in Kubernetes, but over
    ssh it is whatever the user typed."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", node) or "node"


def write_node_rules(rules: dict[str, str], directory: Path, node: str) -> dict[str, Path]:
    """Write each of a node's rule dumps (:func:`node_rules`) as ``DIRECTORY/NODE.NAME.txt``
    (e.g. ``node-a.iptables-save.txt``) to read or hand to ``podcap analyze --iptables``;
    returns ``{name: path}``. UsageError when the directory or a file cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{directory}: cannot create the directory ({exc.strerror})") from exc
    node_part = node_file_part(node)
    saved = {}
    for name, text in rules.items():
        path = directory / f"{node_part}.{name}.txt"
        try:
            path.write_text(text)
        except OSError as exc:
            raise UsageError(f"{path}: cannot write ({exc.strerror})") from exc
        saved[name] = path
    return saved
