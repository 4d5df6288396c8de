"""UDP conversations and pings (ICMP echo) followed across capture points, as TCP
connections are (``podcap.snat.match``): by what NAT leaves alone, here their payloads.

NAT rewrites a datagram's addresses and ports (a ping's identifier too) but never its payload,
so each datagram is known at every point by a hash of its first bytes and its length; two
exchanges seen at two points are one when they share such a datagram. A ping's reply carries
its request's payload, so a request and its answer share their key as well.

An ICMP "destination unreachable" quotes the header of the datagram it answers; where one
quoting an exchange went by, that point saw the exchange refused (a closed UDP port, a REJECT
rule). Conntrack rewrites the quoted header back as it does the datagram, so the quote names the
exchange as the point it was captured at saw it.

The packets must carry ``payload_head`` (the decoder's ``preview``); without it no exchange
is found.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from podcap.decode.schema import ICMP, ICMPV6, TCP, UDP
from podcap.decode.strings import as_text

ECHO_REQUEST = {ICMP: 8, ICMPV6: 128}
ECHO_REPLY = {ICMP: 0, ICMPV6: 129}
UNREACHABLE = {ICMP: 3, ICMPV6: 1}
# A payload this long is unique enough alone (a ping carries its send time); shorter ones
# need a second shared datagram.
MIN_UNIQUE_PAYLOAD = 8
KEYS_PER_EXCHANGE = 32
_COLUMNS = ["file", "ts", "src", "dst", "sport", "dport", "ttl", "ip_proto", "icmp_type",
            "icmp_id", "payload_len", "payload_head", "flow_id"]  # fmt: skip


@dataclass(frozen=True)
class Exchange:
    """A UDP conversation (one flow) or a ping (its echoes from one address to another, one
    identifier), at one point."""

    file: str
    protocol: str  # "udp" or "icmp"
    flow_id: int
    client_ip: str
    client_port: int  # a ping's: its echo identifier (NAT rewrites it as it does a port)
    server_ip: str
    server_port: int  # -1 for a ping
    first_ts: float
    client_ttl: int
    client_keys: frozenset[tuple[int, int]] = frozenset()  # (payload hash, length)
    server_keys: frozenset[tuple[int, int]] = frozenset()
    refused_by: str = ""  # who sent the ICMP unreachable quoting it, where one went by here
    answer_ts: float = float("nan")  # when the first answer went by here

    @property
    def data_keys(self) -> frozenset[tuple[int, int]]:
        return self.client_keys | self.server_keys

    @property
    def has_syn(self) -> bool:  # as snat.match.Observation: a datagram has none
        return False


@dataclass
class MatchedExchange:
    """Exchanges of one conversation, ordered from the client side to the server side."""

    observations: list[Exchange]
    evidence: list[str] = field(default_factory=list)

    @property
    def original(self) -> Exchange:
        return self.observations[0]


def datagram_exchanges(
    packets: pd.DataFrame, refusals: dict[tuple, str] | None = None
) -> list[MatchedExchange]:
    """Every UDP conversation and ping of ``packets`` (all files), matched across files.
    ``refusals``: ``icmp_refusals(packets)``, when the caller has them already."""
    if "payload_head" not in packets or "flow_id" not in packets:
        return []
    wanted = packets["ip_proto"].isin([UDP, ICMP, ICMPV6])
    table = packets.loc[wanted, _COLUMNS]
    if table.empty:
        return []
    table = table.assign(file=table["file"].astype(str), src=as_text(table["src"]),
                         dst=as_text(table["dst"]), key=_payload_hashes(table))  # fmt: skip
    refusals = icmp_refusals(packets) if refusals is None else refusals
    exchanges = _udp_exchanges(table, refusals) + _pings(table, refusals)
    return _match(exchanges)


def _payload_hashes(table: pd.DataFrame) -> np.ndarray:
    heads = np.asarray(table["payload_head"].to_numpy(), dtype=object)
    return pd.util.hash_array(heads).astype(np.int64)


def _udp_exchanges(table: pd.DataFrame, refusals: dict[tuple, str]) -> list[Exchange]:
    udp = table[table["ip_proto"] == UDP]
    found = []
    for (file, flow_id), rows in udp.groupby(["file", "flow_id"], sort=False):
        first = rows.iloc[0]
        client = (first["src"], int(first["sport"]))
        server = (first["dst"], int(first["dport"]))
        from_client = (rows["src"] == client[0]) & (rows["sport"] == client[1])
        found.append(Exchange(
            file, "udp", int(flow_id), *client, *server,
            float(first["ts"]), int(first["ttl"]),
            _keys(rows[from_client]), _keys(rows[~from_client]),
            refusals.get((file, "udp", *client, *server), ""), _first_ts(rows[~from_client]),
        ))  # fmt: skip
    return found


def _pings(table: pd.DataFrame, refusals: dict[tuple, str]) -> list[Exchange]:
    icmp = table[table["ip_proto"].isin([ICMP, ICMPV6])]
    requests = icmp[icmp["icmp_type"] == icmp["ip_proto"].map(ECHO_REQUEST)]
    replies = icmp[icmp["icmp_type"] == icmp["ip_proto"].map(ECHO_REPLY)]
    by = ["file", "dst", "src", "icmp_id"]
    answers = {key: rows for key, rows in replies.groupby(by, sort=False)}
    found = []
    for key, rows in requests.groupby(["file", "src", "dst", "icmp_id"], sort=False):
        (file, client, server, ident), first = key, rows.iloc[0]
        answered = answers.get(key, replies.iloc[:0])
        found.append(Exchange(
            file, "icmp", int(first["flow_id"]), client, int(ident), server, -1,
            float(first["ts"]), int(first["ttl"]), _keys(rows), _keys(answered),
            refusals.get((file, "icmp", client, int(ident), server, -1), ""), _first_ts(answered),
        ))  # fmt: skip
    return found


def _first_ts(rows: pd.DataFrame) -> float:
    return float(rows["ts"].min()) if len(rows) else float("nan")


def _keys(rows: pd.DataFrame) -> frozenset[tuple[int, int]]:
    rows = rows.head(KEYS_PER_EXCHANGE)
    return frozenset(zip(rows["key"].tolist(), rows["payload_len"].tolist(), strict=True))


def icmp_refusals(packets: pd.DataFrame) -> dict[tuple, str]:
    """(file, protocol, src, sport, dst, dport) of each packet an ICMP unreachable quotes
    (a datagram, a ping, a TCP segment a REJECT rule answered) -> who sent the ICMP error."""
    if "payload_head" not in packets:
        return {}
    errors = packets[packets["icmp_type"] == packets["ip_proto"].map(UNREACHABLE)]
    columns = (errors["file"].astype(str), as_text(errors["src"]), errors["payload_head"])
    found: dict[tuple, str] = {}
    for file, sender, head in zip(*(c.tolist() for c in columns), strict=True):
        quoted = quoted_header(bytes(head))
        if quoted is not None:
            found.setdefault((file, *quoted), sender)
    return found


def quoted_header(head: bytes) -> tuple | None:
    """(protocol, src, sport, dst, dport) of the IP header an ICMP error quotes (its payload's
    first bytes); for a ping the echo identifier and -1; None when it quotes neither TCP, UDP
    nor an echo request."""
    head = head.ljust(64, b"\0")  # the preview drops trailing NUL bytes
    version = head[0] >> 4
    if version == 4:
        start, proto, src, dst = (head[0] & 0x0F) * 4, head[9], head[12:16], head[16:20]
    elif version == 6:
        start, proto, src, dst = 40, head[6], head[8:24], head[24:40]
    else:
        return None
    src_ip, dst_ip = str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    if proto in (UDP, TCP):
        sport, dport = (
            int.from_bytes(head[start : start + 2]),
            int.from_bytes(head[start + 2 : start + 4]),
        )
        return ("udp" if proto == UDP else "tcp", src_ip, sport, dst_ip, dport)
    if proto in (ICMP, ICMPV6) and head[start] in (8, 128):
        return ("icmp", src_ip, int.from_bytes(head[start + 4 : start + 6]), dst_ip, -1)
    return None


def _match(exchanges: list[Exchange]) -> list[MatchedExchange]:
    """Group the exchanges that share a datagram (union-find over shared keys)."""
    parent = list(range(len(exchanges)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    holders: dict[tuple, list[int]] = defaultdict(list)
    for index, exchange in enumerate(exchanges):
        for key in exchange.data_keys:
            holders[(exchange.protocol, key)].append(index)
    shared: dict[tuple[int, int], set] = defaultdict(set)
    for (_, key), members in holders.items():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if _apart(exchanges[i], exchanges[j]):
                    shared[(i, j)].add(key)
    evidence: dict[int, int] = defaultdict(int)
    for (i, j), keys in shared.items():
        if len(keys) < 2 and max(length for _, length in keys) < MIN_UNIQUE_PAYLOAD:
            continue
        ri, rj = root(i), root(j)
        best = max(evidence.pop(ri, 0), evidence.pop(rj, 0), len(keys))
        parent[rj] = ri
        evidence[ri] = best
    groups: dict[int, list[Exchange]] = defaultdict(list)
    for index, exchange in enumerate(exchanges):
        groups[root(index)].append(exchange)
    return [
        MatchedExchange(sorted(members, key=lambda e: (-e.client_ttl, e.first_ts)),
                        _evidence(members[0].protocol, evidence.get(r, 0)))
        for r, members in groups.items()
    ]  # fmt: skip


def _apart(a: Exchange, b: Exchange) -> bool:
    """Two exchanges that may be one seen twice: in two files, or in one file (a node's
    ``-i any``) before and after NAT."""
    ends = lambda e: (e.client_ip, e.client_port, e.server_ip, e.server_port)  # noqa: E731
    return a.file != b.file or ends(a) != ends(b)


def _evidence(protocol: str, shared: int) -> list[str]:
    if not shared:
        return []
    what = "datagram" if protocol == "udp" else "echo payload"
    return [f"{shared} {what}{'s' if shared > 1 else ''} (payload hash, length)"]
