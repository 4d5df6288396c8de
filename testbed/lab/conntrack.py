"""conntrack's own counters in a lab namespace: what the kernel says it dropped."""

from __future__ import annotations


def counter(lab, netns, name: str) -> int:
    """conntrack's ``name`` counter (``insert_failed``, ``drop``, ``invalid``...) in a lab
    namespace, summed over the CPUs (``/proc/net/stat/nf_conntrack``: one row per CPU, hex)."""
    lines = lab.run(netns, ["cat", "/proc/net/stat/nf_conntrack"], check=True).stdout.split("\n")
    column = lines[0].split().index(name)
    return sum(int(line.split()[column], 16) for line in lines[1:] if line.strip())
