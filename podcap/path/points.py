"""Capture points: what each file saw from (a Pod, a node's NIC, a peer host) and their order
along the path, from the client's end to the server's.

The order comes from the packets first: every routed hop lowers the TTL of the client's
packets and NAT leaves it alone, so of two points that saw the same connection the one with
the higher client TTL is nearer the client (the same TTL: the one that saw it first). Points
that share no connection keep the order they were given in.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from podcap.decode.strings import as_text


@dataclass(frozen=True)
class Point:
    """One capture point: a file and where it was captured."""

    file: str
    name: str  # as the reports show it: "pod default/web-a0", "node-a eth0", the file's stem
    kind: str | None = None  # "pod", "node", "peer" (the sidecar's point.kind), None unknown
    node: str | None = None
    address: str | None = None  # the Pod's or peer's own IP, when known or plain from the file
    # The TCP ports it listened on, when its sidecar says (podcap diagnose records them).
    listening: tuple[int, ...] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.name


def points_of(files: list[str], packets: pd.DataFrame, sidecars: dict[str, dict]) -> list[Point]:
    """One Point per file, in their order, named from the sidecars (a file without a packet
    is a point too: what it did not see is evidence). Two files of the same point (captures
    taken at different times) are told apart by their file names."""
    points = [_point(file, sidecars.get(file) or {}, packets) for file in files]
    counts = Counter(p.name for p in points)
    return [
        replace(p, name=f"{p.name} ({Path(p.file).name})") if counts[p.name] > 1 else p
        for p in points
    ]


def point_name(file: str, sidecar: dict) -> str:
    """How the reports name a capture point: ``pod NS/POD``, ``NODE IFACE``, ``peer HOST``
    from its sidecar, else the file's name."""
    where = sidecar.get("point") or {}
    kind, node = where.get("kind"), where.get("node")
    if kind == "pod" and where.get("pod"):
        return f"pod {where.get('namespace') or 'default'}/{where['pod']}"
    if kind == "node" and node:
        return f"{node} {where.get('interface') or 'eth0'}"
    if kind == "peer":
        return f"peer {where.get('target') or Path(file).stem}"
    return Path(file).name


def _point(file: str, sidecar: dict, packets: pd.DataFrame) -> Point:
    where = sidecar.get("point") or {}
    kind, node = where.get("kind"), where.get("node")
    name = point_name(file, sidecar)
    cluster = sidecar.get("cluster") or {}
    # A Pod's own address; a node's, for traffic to the node itself (a NodePort).
    address = cluster.get("pod_ip") if kind != "node" else cluster.get("node_ip")
    if address is None and kind in ("pod", "peer", None):
        address = _own_address(packets[packets["file"].astype(str) == file])
    listening = (sidecar.get("cluster") or {}).get("listening")
    ports = tuple(int(p) for p in listening) if isinstance(listening, list) else None
    return Point(file, name, kind, node, address, ports)


def _own_address(packets: pd.DataFrame) -> str | None:
    """The address in every packet of a file, if there is one: a Pod's or a host's own."""
    if packets.empty:
        return None
    src, dst = as_text(packets["src"]), as_text(packets["dst"])
    counts = Counter(src.tolist()) + Counter(dst.tolist())
    address, seen = counts.most_common(1)[0]
    in_every = ((src == address) | (dst == address)).all()
    return address if address and in_every and seen else None


def path_order(points: list[Point], connections) -> tuple[list[Point], str]:
    """``points`` ordered from the client's end, and how the order was found (in words).

    ``connections``: ``podcap.snat.match.MatchedConnection`` s, their observations already
    ordered client side first. Each says, for each two points that saw it, which comes first;
    where the votes disagree (traffic both ways) the majority wins."""
    index = {p.file: i for i, p in enumerate(points)}
    votes: dict[tuple[int, int], int] = defaultdict(int)
    for connection in connections:
        files = list(dict.fromkeys(o.file for o in connection.observations))
        for earlier, later in zip(files, files[1:], strict=False):
            votes[(index[earlier], index[later])] += 1
    before = {(a, b) for (a, b), n in votes.items() if n > votes.get((b, a), 0)}
    ranks = _sidecar_ranks(points, connections)
    # Where no connection says, the sidecars do (client's Pod, its node, ..., the server's
    # node, the server's Pod), then the order given.
    fallback = sorted(range(len(points)), key=lambda i: (ranks[i], i))
    order = _topological(len(points), before, fallback)
    placed = {i for pair in before for i in pair}
    others = "by their sidecars" if len(set(ranks)) > 1 else "as given"
    if not placed:
        how = f"{others}: no connection was seen at two points"
    elif len(placed) == len(points):
        how = "by the connections they share: the TTL falls hop by hop, then time"
    else:
        how = f"by the connections they share, the others {others}"
    return [points[i] for i in order], how


def _sidecar_ranks(points: list[Point], connections) -> list[int]:
    """Where each point sits when no packet says: 0 a Pod that opened connections, 1 its
    node, 2 anything else, 3 a node of a Pod that was connected to, 4 that Pod."""
    clients = {c.original.client_ip for c in connections}
    servers = {o.server_ip for c in connections for o in c.observations}
    client_nodes = {p.node for p in points if p.kind == "pod" and p.address in clients}
    server_nodes = {p.node for p in points if p.kind == "pod" and p.address in servers}

    def rank(point: Point) -> int:
        if point.kind == "pod":
            return 0 if point.address in clients else 4 if point.address in servers else 2
        if point.kind == "node" and point.node:
            return 1 if point.node in client_nodes else 3 if point.node in server_nodes else 2
        return 2

    return [rank(p) for p in points]


def _topological(n: int, before: set[tuple[int, int]], fallback: list[int]) -> list[int]:
    """0..n-1 with every (a, b) of ``before`` a before b, else in ``fallback``'s order (Kahn's
    algorithm; a cycle left by the votes is broken at the first in ``fallback``)."""
    incoming = {i: {a for a, b in before if b == i} for i in range(n)}
    position = {i: at for at, i in enumerate(fallback)}
    order: list[int] = []
    while len(order) < n:
        ready = [i for i in range(n) if i not in order and not (incoming[i] - set(order))]
        left = ready or [i for i in range(n) if i not in order]
        order.append(min(left, key=position.__getitem__))
    return order
