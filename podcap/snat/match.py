"""Match one TCP connection across several captures by what NAT leaves alone.

SNAT/MASQUERADE rewrites the source address and, with ``--random-fully``, the source port;
DNAT rewrites the destination. Neither touches the client's initial sequence number (ISN), the
TCP timestamp (TSval), the IP ID, the server's ISN or the (seq, ack, length) of data segments.
So connections are keyed by those and never by addresses or ports.

The observations of one connection are ordered from the client towards the server by the TTL
of the client's packets: every routed hop lowers it and NAT does not touch it, so this needs no
clock agreement between the captures (the clocks are what we measure, not what we trust).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from podcap.decode.schema import ACK, SYN, TCP
from podcap.decode.strings import as_text

# How many data segments per connection to keep as keys: enough to be sure, bounded in memory.
DATA_KEYS_PER_CONNECTION = 32
MIN_DATA_KEYS = 3


@dataclass(frozen=True)
class Observation:
    """One connection as one capture saw it."""

    file: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    first_ts: float
    client_ttl: int
    packets: int
    isn: int = -1  # client's SYN sequence number; -1 when the SYN was not captured
    syn_tsval: int = -1
    syn_ip_id: int = -1
    server_isn: int = -1
    data_keys: frozenset[tuple[int, int, int]] = frozenset()
    # Of those, the client's segments (the others are the server's): which way each went.
    client_keys: frozenset[tuple[int, int, int]] = frozenset()
    flow_id: int = -1  # the flow (``podcap.flows``) of its first packet, when the table has one

    @property
    def has_syn(self) -> bool:
        return self.isn >= 0


@dataclass
class MatchedConnection:
    """Observations of one connection, ordered from the client side to the server side."""

    observations: list[Observation]
    evidence: list[str] = field(default_factory=list)

    @property
    def original(self) -> Observation:
        return self.observations[0]

    @property
    def observed(self) -> Observation:
        return self.observations[-1]

    @property
    def files(self) -> list[str]:
        return list(dict.fromkeys(o.file for o in self.observations))


_COLUMNS = [
    "file", "ts", "src", "dst", "sport", "dport", "ttl", "ip_id",
    "tcp_flags", "tcp_seq", "tcp_ack", "tcp_tsval", "payload_len",
]  # fmt: skip


def tcp_observations(packets: pd.DataFrame) -> list[Observation]:
    """One Observation per TCP connection per file (inner addresses, so overlays are fine).

    Vectorised over the whole table: a Python loop per connection costs ~10 ms in pandas,
    which is minutes on a busy node capture.
    """
    columns = _COLUMNS + (["flow_id"] if "flow_id" in packets else [])
    tcp = packets.loc[packets["ip_proto"] == TCP, columns]
    if tcp.empty:
        return []
    # Plain text: the packet table's categoricals would refuse mixing src and dst below.
    tcp = tcp.assign(file=tcp["file"].astype(str), src=as_text(tcp["src"]), dst=as_text(tcp["dst"]))
    tcp = _with_piece_ids(tcp)
    first = tcp.groupby("piece", sort=False).head(1).set_index("piece")
    syn = tcp[(tcp["tcp_flags"] & (SYN | ACK)) == SYN].groupby("piece", sort=False).head(1)
    syn = syn.set_index("piece")
    ends = _client_and_server(first, syn)
    tcp = tcp.join(ends[["client_ip", "client_port"]], on="piece")
    from_client = (tcp["src"] == tcp["client_ip"]) & (tcp["sport"] == tcp["client_port"])
    client_ttl = tcp[from_client].groupby("piece", sort=False)["ttl"].first()
    synack = tcp[((tcp["tcp_flags"] & (SYN | ACK)) == (SYN | ACK)) & ~from_client]
    server_isn = synack.groupby("piece", sort=False)["tcp_seq"].first()
    ends["packets"] = tcp.groupby("piece", sort=False).size()
    ends["flow_id"] = first["flow_id"] if "flow_id" in first else -1
    ends["client_ttl"] = client_ttl
    ends["server_isn"] = server_isn
    ends["isn"] = syn["tcp_seq"]
    ends["syn_tsval"] = syn["tcp_tsval"]
    ends["syn_ip_id"] = syn["ip_id"]
    numbers = ["client_ttl", "server_isn", "isn", "syn_tsval", "syn_ip_id"]
    ends[numbers] = ends[numbers].fillna(-1).astype("int64")
    data_keys = _data_keys(tcp)
    client_keys = _data_keys(tcp[from_client])
    fields = ["file", "client_ip", "client_port", "server_ip", "server_port", "ts", "client_ttl"]
    fields += ["packets", "isn", "syn_tsval", "syn_ip_id", "server_isn", "flow_id"]
    columns = [ends[f].to_numpy().tolist() for f in fields]
    return [
        Observation(
            file=file,
            client_ip=cip,
            client_port=int(cport),
            server_ip=sip,
            server_port=int(sport),
            first_ts=float(ts),
            client_ttl=ttl,
            packets=count,
            isn=isn,
            syn_tsval=tsval,
            syn_ip_id=ip_id,
            server_isn=server,
            data_keys=data_keys.get(piece, frozenset()),
            client_keys=client_keys.get(piece, frozenset()),
            flow_id=int(flow),
        )
        for piece, (
            file,
            cip,
            cport,
            sip,
            sport,
            ts,
            ttl,
            count,
            isn,
            tsval,
            ip_id,
            server,
            flow,
        ) in zip(ends.index.tolist(), zip(*columns, strict=True), strict=True)
    ]


def _with_piece_ids(tcp: pd.DataFrame) -> pd.DataFrame:
    """Number each connection: same file and endpoints, split where a SYN brings a new ISN
    (a 4-tuple reused for a new connection)."""
    a = tcp["src"] + ":" + tcp["sport"].astype(str)
    b = tcp["dst"] + ":" + tcp["dport"].astype(str)
    lower = a.where(a < b, b)
    upper = b.where(a < b, a)
    conversation = pd.Series(
        pd.factorize(tcp["file"] + "|" + lower + "|" + upper)[0], index=tcp.index
    )
    tcp = tcp.assign(_conv=conversation).sort_values(["_conv", "ts"], kind="stable")
    syn = (tcp["tcp_flags"] & (SYN | ACK)) == SYN
    last_isn = tcp["tcp_seq"].where(syn).groupby(tcp["_conv"]).ffill()
    previous_isn = last_isn.groupby(tcp["_conv"]).shift()
    new_isn = syn & (tcp["tcp_seq"] != previous_isn)
    split = new_isn.astype(int).groupby(tcp["_conv"]).cumsum()
    piece = pd.factorize(tcp["_conv"].astype(str) + "/" + split.astype(str))[0]
    return tcp.assign(piece=piece).drop(columns="_conv")


def _client_and_server(first: pd.DataFrame, syn: pd.DataFrame) -> pd.DataFrame:
    """Who opened each connection: the SYN's sender; without a SYN, the higher port."""
    ends = first[["file", "ts", "src", "sport", "dst", "dport"]].copy()
    swap = ends["sport"] < ends["dport"]
    ends["client_ip"] = ends["src"].where(~swap, ends["dst"])
    ends["client_port"] = ends["sport"].where(~swap, ends["dport"])
    ends["server_ip"] = ends["dst"].where(~swap, ends["src"])
    ends["server_port"] = ends["dport"].where(~swap, ends["sport"])
    seen = syn.index
    ends.loc[seen, "client_ip"] = syn["src"]
    ends.loc[seen, "client_port"] = syn["sport"]
    ends.loc[seen, "server_ip"] = syn["dst"]
    ends.loc[seen, "server_port"] = syn["dport"]
    return ends


def _data_keys(tcp: pd.DataFrame) -> dict[int, frozenset[tuple[int, int, int]]]:
    data = tcp[tcp["payload_len"] > 0]
    data = data[data.groupby("piece", sort=False).cumcount() < DATA_KEYS_PER_CONNECTION]
    keys: dict[int, set] = defaultdict(set)
    columns = (data["piece"], data["tcp_seq"], data["tcp_ack"], data["payload_len"])
    for piece, seq, ack, length in zip(*(c.to_numpy().tolist() for c in columns), strict=True):
        keys[piece].add((seq, ack, length))
    return {piece: frozenset(k) for piece, k in keys.items()}


def match_keys(a: Observation, b: Observation) -> list[str] | None:
    """The NAT-invariant keys two observations share, or None when any of them disagrees.

    At least two independent keys are required, so one 32-bit coincidence never matches.
    """
    keys = []
    if a.has_syn and b.has_syn:
        if a.isn != b.isn:
            return None
        keys.append(f"SYN ISN {a.isn}")
        answered_alike = a.server_isn >= 0 and a.server_isn == b.server_isn
        for name, x, y in (
            ("TSval", a.syn_tsval, b.syn_tsval),
            ("SYN-ACK ISN", a.server_isn, b.server_isn),
        ):
            if x >= 0 and y >= 0:
                if x != y and name == "TSval" and answered_alike:
                    continue  # the first SYN lost between them: a retransmission's TSval
                if x != y:
                    return None
                keys.append(f"{name} {x}")
        if a.syn_ip_id > 0 and a.syn_ip_id == b.syn_ip_id:
            keys.append(f"IP ID {a.syn_ip_id}")
    shared = len(a.data_keys & b.data_keys)
    if shared:
        keys.append(f"{shared} data segments (seq, ack, length)")
    enough = len(keys) >= 2 or shared >= MIN_DATA_KEYS
    return keys if enough else None


def match_connections(observations: list[Observation]) -> list[MatchedConnection]:
    """Group observations of the same connection; a connection seen once is a group of one."""
    candidates = _candidate_pairs(observations)
    parent = list(range(len(observations)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    evidence: dict[int, list[str]] = defaultdict(list)
    for i, j in candidates:
        keys = match_keys(observations[i], observations[j])
        if keys is None:
            continue
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[rj] = ri
            keys = evidence.pop(rj, []) + keys
        evidence[ri] = list(dict.fromkeys(evidence[ri] + keys))
    groups: dict[int, list[Observation]] = defaultdict(list)
    for index, obs in enumerate(observations):
        groups[root(index)].append(obs)
    return [
        MatchedConnection(sorted(members, key=_client_side_first), evidence.get(r, []))
        for r, members in groups.items()
    ]


def _candidate_pairs(observations: list[Observation]) -> set[tuple[int, int]]:
    # Only observations that share a client ISN or a data segment can match: index by those
    # instead of comparing every pair.
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for index, obs in enumerate(observations):
        if obs.has_syn:
            buckets[("isn", obs.isn)].append(index)
        for key in obs.data_keys:
            buckets[("data", key)].append(index)
    pairs = set()
    for members in buckets.values():
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if observations[i].file != observations[j].file or _differs(
                    observations[i], observations[j]
                ):
                    pairs.add((min(i, j), max(i, j)))
    return pairs


def _differs(a: Observation, b: Observation) -> bool:
    # Inside one file (a node capture with -i any) the same connection can show up before and
    # after NAT; the same 4-tuple twice is just one observation split by a new SYN.
    return (a.client_ip, a.client_port, a.server_ip, a.server_port) != (
        b.client_ip,
        b.client_port,
        b.server_ip,
        b.server_port,
    )


def _client_side_first(obs: Observation) -> tuple:
    return (-obs.client_ttl, obs.first_ts)


def clock_offsets(connections: list[MatchedConnection]) -> pd.DataFrame:
    """Median time difference between captures, from the SYNs they both saw.

    It includes the one-way delay between the two capture points (microseconds on one host,
    the path latency between hosts), so it bounds the clock offset rather than isolating it.
    """
    deltas: dict[tuple[str, str], list[float]] = defaultdict(list)
    for connection in connections:
        syn_seen = [o for o in connection.observations if o.has_syn]
        for earlier, later in zip(syn_seen, syn_seen[1:], strict=False):
            if earlier.file != later.file:
                deltas[(earlier.file, later.file)].append(later.first_ts - earlier.first_ts)
    rows = [
        {"file_a": a, "file_b": b, "offset_s": statistics.median(d), "connections": len(d)}
        for (a, b), d in deltas.items()
    ]
    return pd.DataFrame(rows, columns=["file_a", "file_b", "offset_s", "connections"])
