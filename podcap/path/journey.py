"""Each connection followed from capture point to capture point: what each point saw of it,
how it ended for the client, and where its packets (or the answer) stopped.

A TCP connection is matched across the points by what NAT leaves alone (``podcap.snat.match``);
what a point saw of it is that point's flow (``podcap.flows``): its Zeek history says whether
the client's SYN (``S``), the server's SYN-ACK (``h``), data (``D``/``d``), resets
(``R``/``r``) and retransmissions (``T``/``t``) went by there. A UDP conversation or a ping
is matched by its payloads (``podcap.path.datagrams``); its history is ``D`` where the
client's datagrams went by, ``d`` where answers did.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from podcap.path.points import Point

DELIVERED, REFUSED, UNANSWERED = "delivered", "refused", "unanswered"
REPLY_LOST, RESET, PARTIAL = "reply_lost", "reset", "partial"


@dataclass(frozen=True)
class Sighting:
    """One connection at one capture point, as that point's flow saw it."""

    point: Point
    flow_id: int
    client: str  # ip:port as seen here
    server: str
    history: str
    state: str
    first_ts: float
    client_ttl: int
    # Data segments seen here, (seq, ack, payload length), the client's and the server's.
    client_segments: frozenset = frozenset()
    server_segments: frozenset = frozenset()
    protocol: str = "tcp"  # "tcp", "udp" or "icmp" (a ping)
    # Who sent an ICMP unreachable quoting it that went by here (the server's kernel for a
    # closed UDP port, a REJECT rule's host); "" when none did.
    refused_by: str = ""
    echo_id: int = -1  # a ping's identifier here (``client`` is then a bare address)
    answer_ts: float = float("nan")  # when the server's first packet went by here

    @property
    def saw_client(self) -> bool:
        """The client's first packet went by (its SYN; any of its packets without one)."""
        return "S" in self.history or any(c.isupper() for c in self.history)

    @property
    def saw_answer(self) -> bool:
        """The server's SYN-ACK, or a reset answering the SYN, went by; for a datagram, an
        answer or an ICMP error."""
        if self.protocol != "tcp":
            return "d" in self.history or bool(self.refused_by)
        return "h" in self.history or "r" in self.history or bool(self.refused_by)

    @property
    def client_ip(self) -> str:
        return self._address(self.client)

    @property
    def server_ip(self) -> str:
        return self._address(self.server)

    @property
    def server_port(self) -> int | None:
        """None for a ping: ``client`` and ``server`` are then bare addresses."""
        return None if self.protocol == "icmp" else int(self.server.rsplit(":", 1)[1])

    @property
    def ends(self) -> tuple[str, str, int, str, int]:
        """(protocol, client ip, port, server ip, port); a ping's echo identifier and -1."""
        if self.protocol == "icmp":
            return (self.protocol, self.client_ip, self.echo_id, self.server_ip, -1)
        port = lambda end: int(end.rsplit(":", 1)[1])  # noqa: E731
        return (self.protocol, self.client_ip, port(self.client), self.server_ip,
                port(self.server))  # fmt: skip

    def _address(self, end: str) -> str:
        return end if self.protocol == "icmp" else end.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Journey:
    """One connection along the whole path."""

    path: tuple[Point, ...]  # every capture point, client's end first
    sightings: tuple[Sighting, ...]  # the points that saw it, in path order
    evidence: tuple[str, ...]  # the NAT-invariant keys that matched it across points

    @property
    def first(self) -> Sighting:
        return self.sightings[0]

    @property
    def protocol(self) -> str:
        return self.first.protocol

    @property
    def outcome(self) -> str:
        """How it ended, as the client's end saw it."""
        history = self.first.history
        if self.protocol != "tcp":
            return self._datagram_outcome()
        if "h" not in history:
            if "r" in history or self.first.refused_by:  # a reset, or an ICMP error (REJECT)
                return REFUSED
            return REPLY_LOST if any(s.saw_answer for s in self.sightings) else UNANSWERED
        if ("T" in history or "t" in history) and self.first.state != "SF":
            return PARTIAL
        if "r" in history or "R" in history:
            return RESET
        return DELIVERED

    def _datagram_outcome(self) -> str:
        if self.first.refused_by:
            return REFUSED
        if "d" in self.first.history:
            return DELIVERED
        return REPLY_LOST if any(s.saw_answer for s in self.sightings) else UNANSWERED

    def index(self, point: Point) -> int:
        return self.path.index(point)

    @property
    def last_seen(self) -> Sighting:
        """The last point, in path order, that saw the client's first packet."""
        return [s for s in self.sightings if s.saw_client][-1]

    @property
    def destination_index(self) -> int:
        """The furthest point its packets should reach: the furthest that saw it, or whose
        own address is its server's (as any point saw the server)."""
        servers = {s.server_ip for s in self.sightings}
        own = [i for i, p in enumerate(self.path) if p.address and p.address in servers]
        return max([self.index(s.point) for s in self.sightings] + own)

    @property
    def lost_between(self) -> tuple[Point, Point] | None:
        """Where the client's packets stopped: the last point that saw them and the next one,
        when the connection failed before reaching its destination's point."""
        if self.outcome == PARTIAL:
            loss = self.segments_lost()
            return (loss.sent_at, loss.missing_at) if loss else None
        if self.outcome != UNANSWERED:
            return None
        at = self.index(self.last_seen.point)
        ahead = [p for p in self.path[at + 1 : self.destination_index + 1] if self.on_its_way(p)]
        return (self.path[at], ahead[0]) if ahead else None

    def on_its_way(self, point: Point) -> bool:
        """Whether ``point`` is on this connection's way: it saw it, or it is not a Pod or
        host of an address of someone else (another Pod's netns sees only that Pod's traffic),
        nor the NIC of a node both its Pods are on."""
        if any(s.point == point for s in self.sightings):
            return True
        ends = {s.client_ip for s in self.sightings} | {s.server_ip for s in self.sightings}
        if point.kind in ("pod", "peer") and point.address:
            return point.address in ends
        if point.kind == "node" and point.node:
            # Two Pods of one node talk over its bridge, never through its NIC.
            pods = [p for p in self.path if p.kind == "pod" and p.address in ends]
            return len(pods) < 2 or any(p.node != point.node for p in pods)
        return True

    @property
    def reply_last_seen(self) -> Sighting | None:
        """The point nearest the client that saw the server's answer."""
        answered = [s for s in self.sightings if s.saw_answer]
        return answered[0] if answered else None

    @property
    def reply_lost_between(self) -> tuple[Point, Point] | None:
        reply = self.reply_last_seen
        if self.outcome != REPLY_LOST or reply is None:
            return None
        at = self.index(reply.point)
        back = [p for p in self.path[:at] if self.on_its_way(p)]
        return (self.path[at], back[-1]) if back else None

    def segments_lost(self) -> SegmentLoss | None:
        """The first hop, either way, past which data segments went missing while the
        handshake got through (what an MTU black hole leaves): where, and their sizes."""
        seen = self.sightings
        for before, after in zip(seen, seen[1:], strict=False):  # the client's, onwards
            loss = _segment_loss(before, after, before.client_segments, after.client_segments)
            if loss:
                return loss
        for before, after in zip(seen[::-1], seen[-2::-1], strict=False):  # the answer, back
            loss = _segment_loss(before, after, before.server_segments, after.server_segments)
            if loss:
                return loss
        return None

    def rewrites(self) -> list[str]:
        """Each address change between two points that saw the connection, in words."""
        changes = []
        for before, after in zip(self.sightings, self.sightings[1:], strict=False):
            where = f"between {before.point} and {after.point}"
            if before.client != after.client:
                changes.append(f"source {before.client} -> {after.client} {where}")
            if before.server != after.server:
                changes.append(f"destination {before.server} -> {after.server} {where}")
        return changes


@dataclass(frozen=True)
class SegmentLoss:
    """Data segments that one point saw and the next one, on their way, never did."""

    sent_at: Point
    missing_at: Point
    largest_passed: int  # payload bytes; 0 when no data segment passed
    smallest_lost: int
    lost: int  # how many segments (distinct) went missing


def _segment_loss(before: Sighting, after: Sighting, sent, arrived) -> SegmentLoss | None:
    lost = sent - arrived
    if not lost:
        return None
    passed = sent & arrived
    return SegmentLoss(
        before.point, after.point,
        max((length for _, _, length in passed), default=0),
        min(length for _, _, length in lost), len(lost),
    )  # fmt: skip


def follow(
    path: list[Point],
    connections,
    flows: pd.DataFrame,
    answers: dict[int, float] | None = None,
    refusals: dict[tuple, str] | None = None,
) -> list[Journey]:
    """A Journey per connection of ``connections`` (``podcap.snat.match``), ordered by the
    time its client's end first saw it. ``flows``: the flow table of every file; ``answers``:
    when each TCP flow's server sent its first packet (``first_answers``); ``refusals``: the
    ICMP errors quoting a packet (``podcap.path.datagrams.icmp_refusals``)."""
    by_file = {p.file: p for p in path}
    rows = flows.set_index("flow_id")
    back = (answers or {}, refusals or {})
    journeys = []
    for connection in connections:
        seen = [_sighting(by_file[o.file], o, rows, *back) for o in connection.observations]
        seen = [s for s in seen if s is not None]
        if not any(s.saw_client for s in seen):
            # Only the server's side went by (a SYN-ACK or reset still retransmitted for a
            # connection whose client's packets came before the captures): no journey of a
            # client's packet to follow.
            continue
        seen.sort(key=lambda s: path.index(s.point))
        journeys.append(Journey(tuple(path), tuple(seen), tuple(connection.evidence)))
    return sorted(journeys, key=lambda j: j.first.first_ts)


def first_answers(packets: pd.DataFrame) -> dict[int, float]:
    """Per TCP flow, when its server's first packet was captured."""
    from podcap.decode.schema import TCP

    if "c2s" not in packets:
        return {}
    answers = packets[(packets["ip_proto"] == TCP) & ~packets["c2s"].astype(bool)]
    return answers.groupby("flow_id")["ts"].min().to_dict()


def _sighting(point: Point, observation, rows: pd.DataFrame, answers, refusals) -> Sighting | None:
    protocol = getattr(observation, "protocol", "tcp")
    if protocol != "tcp":
        return _datagram_sighting(point, observation)
    if observation.flow_id not in rows.index:
        return None
    flow = rows.loc[observation.flow_id]
    client = (str(flow["client_ip"]), int(flow["client_port"]))
    server = (str(flow["server_ip"]), int(flow["server_port"]))
    return Sighting(
        point=point,
        flow_id=int(observation.flow_id),
        client=f"{client[0]}:{client[1]}",
        server=f"{server[0]}:{server[1]}",
        history=str(flow["history"]),
        state=str(flow["state"]),
        first_ts=float(observation.first_ts),
        client_ttl=int(observation.client_ttl),
        client_segments=observation.client_keys,
        server_segments=observation.data_keys - observation.client_keys,
        answer_ts=answers.get(observation.flow_id, float("nan")),
        refused_by=refusals.get((point.file, "tcp", *client, *server), ""),
    )


def _datagram_sighting(point: Point, exchange) -> Sighting:
    """A UDP conversation or a ping at one point (``podcap.path.datagrams.Exchange``)."""
    ping = exchange.protocol == "icmp"
    ends = [(exchange.client_ip, exchange.client_port), (exchange.server_ip, exchange.server_port)]
    client, server = (ip if ping else f"{ip}:{port}" for ip, port in ends)
    answered = bool(exchange.server_keys)
    return Sighting(
        point=point, flow_id=exchange.flow_id, client=client, server=server,
        history=("D" if exchange.client_keys else "") + ("d" if answered else ""),
        state="SF" if answered else "S0", first_ts=exchange.first_ts,
        client_ttl=exchange.client_ttl, client_segments=exchange.client_keys,
        server_segments=exchange.server_keys, protocol=exchange.protocol,
        refused_by=exchange.refused_by, echo_id=exchange.client_port if ping else -1,
        answer_ts=exchange.answer_ts,
    )  # fmt: skip


@dataclass(frozen=True)
class LinedUp:
    """The capture points in path order and every connection along them."""

    path: tuple[Point, ...]
    journeys: tuple[Journey, ...]
    how: str  # how the order was found

    @property
    def note(self) -> str:
        points = " > ".join(map(str, self.path))
        return f"capture points, client's end first: {points} (ordered {self.how})"


def line_up(
    files: list[str],
    packets: pd.DataFrame,
    flows: pd.DataFrame,
    connections,
    sidecars,
    refusals: dict[tuple, str] | None = None,
) -> LinedUp:
    """The capture points of ``files`` ordered along the path, and the journeys along them.
    ``refusals``: ``podcap.path.datagrams.icmp_refusals(packets)``, read here when not given."""
    from podcap.path.datagrams import icmp_refusals
    from podcap.path.points import path_order, points_of

    if refusals is None:
        refusals = icmp_refusals(packets)
    path, how = path_order(points_of(files, packets, sidecars), connections)
    journeys = follow(path, connections, flows, first_answers(packets), refusals)
    return LinedUp(tuple(path), tuple(journeys), how)
