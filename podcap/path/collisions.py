"""SNAT port collisions and conntrack insert failures, from captures at a Pod and its node.

MASQUERADE without ``--random-fully`` keeps a connection's source port when the node's
address and that port are free towards the destination, and searches for another one when
not. Two Pods connecting to one destination from one port at once race: both are given the
node's port before either's conntrack entry is confirmed, and the second to confirm is
dropped (conntrack's ``insert_failed`` counter). The client sends its SYN again 1 s later
(3 s on older kernels) unchanged; by then the port is taken and another is found, or it is
still held and the SYN is dropped again. The same drop happens when the port search has no
free port left (a narrow ``--to-ports`` range).

The same holds for UDP: a DNS query from a Pod's port given the node's port another Pod's
conversation holds is dropped as well, and asked again.

In captures: a Pod's SYNs (or datagrams: a DNS query and its retries) that its node's NIC never
saw (or saw only from a later try on),
while another Pod's connection to the same destination left that NIC from the node's address
and the port the first Pod asked for: ``snat_port_collision``, naming both Pods. The same
loss without such a holder in the captures: ``insert_failed``. And two Pods' connections
leaving the node from the same address and port to the same destination within
``CONNTRACK_LINGER_S`` of each other: a port reused while the destination (or a middlebox)
may still hold the first (``snat_port_collision`` too).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from podcap.decode.schema import ACK, SYN, TCP, UDP
from podcap.path.journey import Journey, Sighting

# conntrack keeps a closed TCP connection's entry (TIME_WAIT) this long, holding its port
# (a UDP conversation's: 30 s, 120 s once answered both ways).
CONNTRACK_LINGER_S = 120.0
NATTED = ("tcp", "udp")  # what MASQUERADE gives a node port (a ping keeps its own identifier)


@dataclass(frozen=True)
class Collision:
    """A connection whose first packets (SYNs, datagrams) were lost at the node, and the one
    that held its port."""

    verdict: str  # "snat_port_collision" or "insert_failed"
    journey: Journey
    lost_at: tuple[str, str]  # the point that saw them and the next one that did not
    sent: int
    lost: int
    delay_s: float  # from the first one sent to the first one past the node; NaN: none passed
    holder: Journey | None = None
    shared_end: str = ""  # the node's address and port both used (or the holder held)


@dataclass(frozen=True)
class _Firsts:
    count: int
    first_ts: float
    last_ts: float


def first_packets(packets: pd.DataFrame) -> dict[int, _Firsts]:
    """Per flow, its client's first packets: a TCP client's SYNs (SYN without ACK), a UDP
    client's datagrams (a DNS query and its retries): how many, the first and last time."""
    flags, proto = packets["tcp_flags"].to_numpy(), packets["ip_proto"].to_numpy()
    syn = (proto == TCP) & ((flags & SYN) != 0) & ((flags & ACK) == 0)
    datagram = (proto == UDP) & packets["c2s"].to_numpy().astype(bool)
    keep = (syn | datagram) & (packets["flow_id"].to_numpy() >= 0)
    sent = pd.DataFrame({"flow_id": packets["flow_id"].to_numpy()[keep],
                         "ts": packets["ts"].to_numpy()[keep]})  # fmt: skip
    by = sent.groupby("flow_id")["ts"].agg(["size", "min", "max"])
    return {int(i): _Firsts(int(r[0]), float(r[1]), float(r[2])) for i, r in zip(
        by.index, by.to_numpy(), strict=True)}  # fmt: skip


def snat_collisions(journeys, firsts: dict[int, _Firsts], flows: pd.DataFrame) -> list[Collision]:
    """The collisions among ``journeys`` (``podcap.path.journey``); ``firsts``: ``first_packets``
    of every file; ``flows``: the flow table of every file (for when each connection ended)."""
    last_ts = dict(zip(flows["flow_id"].to_numpy(), flows["last_ts"].to_numpy(), strict=True))
    rewritten = _by_node_end(j for j in journeys if j.protocol in NATTED and _outer(j) is not None)
    found = []
    for journey in journeys:
        if journey.protocol not in NATTED:
            continue
        loss = _first_packets_lost(journey, firsts)
        if loss is not None:
            found.append(_named(journey, loss, rewritten, last_ts, firsts))
        else:
            reuse = _reused_port(journey, rewritten, last_ts, firsts)
            if reuse is not None:
                found.append(reuse)
    return found


def _by_node_end(rewritten) -> dict[tuple, list[Journey]]:
    """The rewritten connections by (protocol, point, server as its client asked, node port):
    the only ones a connection's collision can be with (looked up, not searched)."""
    index = defaultdict(list)
    for journey in rewritten:
        outer = _outer(journey)
        index[journey.protocol, outer.point, journey.first.server, outer.ends[2]].append(
            journey)  # fmt: skip
    return index


def _outer(journey: Journey) -> Sighting | None:
    """The first sighting past the client's end whose source was rewritten (SNAT)."""
    return next((s for s in journey.sightings[1:] if s.client != journey.first.client), None)


def _first_packets_lost(journey: Journey, firsts: dict[int, _Firsts]):
    """(point that saw them, next point, sent, lost, delay) when some of the client's SYNs
    went by its first point and never by the next one on its way."""
    first = firsts.get(journey.first.flow_id)
    if first is None or first.count < 2:  # a lone SYN lost is a plain drop, not this shape
        return None
    if len(journey.sightings) > 1:
        after = journey.sightings[1]
        passed = firsts.get(after.flow_id)
        if passed is None or passed.count >= first.count:
            return None
        delay = passed.first_ts - first.first_ts
        return journey.first.point, after.point, first.count, first.count - passed.count, delay
    node = _pods_node(journey)
    if node is None:
        return None
    return journey.first.point, node, first.count, first.count, float("nan")


def _pods_node(journey: Journey):
    """The capture point past the client's Pod its packets must go by: the next one on its
    way, and of the client's own node when the sidecars say where the points are."""
    start = journey.first.point
    ahead = [p for p in journey.path[journey.index(start) + 1 :] if journey.on_its_way(p)]
    if start.node is not None:
        ahead = [p for p in ahead if p.kind == "node" and p.node == start.node]
    return ahead[0] if ahead else None


def _named(journey, loss, rewritten, last_ts, firsts) -> Collision:
    at, missing_at, sent, lost, delay = loss
    port = journey.first.ends[2]
    first = firsts[journey.first.flow_id]
    for holder in rewritten.get((journey.protocol, missing_at, journey.first.server, port), []):
        outer = _outer(holder)
        if holder is journey or holder.first.client_ip == journey.first.client_ip:
            continue  # the same Pod: its own ports never collide
        if _held(outer, last_ts, first.first_ts, first.last_ts):
            return Collision("snat_port_collision", journey, (str(at), str(missing_at)), sent,
                             lost, delay, holder, outer.client)  # fmt: skip
    return Collision("insert_failed", journey, (str(at), str(missing_at)), sent, lost, delay)


def _held(outer: Sighting, last_ts: dict, start: float, end: float) -> bool:
    """Whether the connection seen at ``outer`` held its port at some time in [start, end]:
    from its first packet there until conntrack let its entry go."""
    return outer.first_ts <= end and last_ts.get(outer.flow_id, outer.first_ts) + \
        CONNTRACK_LINGER_S >= start  # fmt: skip


def _reused_port(journey, rewritten, last_ts, firsts) -> Collision | None:
    """Another Pod's connection that left the node from the same address and port to the
    same destination shortly before this one did."""
    outer = _outer(journey)
    if outer is None:
        return None
    key = (journey.protocol, outer.point, journey.first.server, outer.ends[2])
    for earlier in rewritten.get(key, []):
        other = _outer(earlier)
        if earlier is journey or other.first_ts >= outer.first_ts:
            continue
        if earlier.first.client_ip == journey.first.client_ip:
            continue
        if (other.client, other.server) != (outer.client, outer.server):
            continue
        if _held(other, last_ts, outer.first_ts, outer.first_ts):
            sent = firsts.get(journey.first.flow_id)
            count = sent.count if sent else 0
            return Collision("snat_port_collision", journey, (str(journey.first.point),
                             str(outer.point)), count, 0, float("nan"), earlier, other.client)  # fmt: skip
    return None
