"""DNS exchanges: one row per query with the response that answered it, as tshark pairs them.

The DNS messages are the UDP payloads to or from port 53 and the TCP segments that start
one there (a truncated answer is asked again over TCP), and on any other UDP port (but
mDNS's 5353) a standard query that was answered by a standard response. Their bytes are
read again from the capture file at once (``podcap.decode.reread``, a mapping of the file)
and their fields with numpy (``podcap.decode.dns``). A response
answers the latest query before it with the same transaction id between the same two
sockets; its ``latency_ms`` is tshark's ``dns.time``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.dns import read_dns
from podcap.decode.reread import reopen
from podcap.decode.schema import TCP, UDP

DNS_PORT, MDNS_PORT = 53, 5353
RETRY_WINDOW = (
    5.0  # s: the same query again sooner is a retransmission (tshark's dns.retransmission_timer)
)
EXCHANGE_COLUMNS = [
    "file", "frame", "ts", "client_ip", "client_port", "server_ip", "server_port", "id",
    "name", "qtype", "transport", "tries", "response_frame", "rcode", "latency_ms", "answers",
    "address", "truncated",
]  # fmt: skip


def dns_messages(packets: pd.DataFrame) -> pd.DataFrame:
    """One row per DNS message of ``packets``: its row, addresses and ports, and the
    fields ``podcap.decode.dns.read_dns`` gives. Packets whose bytes cannot be read again
    (read from a pipe; the tshark engine) have none."""
    chosen = _dns_rows(packets)
    parts = []
    files = packets["file"] if "file" in packets else pd.Series("", index=packets.index)
    for path in pd.unique(files.iloc[chosen]):
        rows = chosen[(files.iloc[chosen] == path).to_numpy()]
        with reopen(path or None) as source:
            if source is not None:
                parts.append(_read(packets, rows, source.view()))
    if not parts:
        return _read(packets, chosen[:0], None)
    return pd.concat(parts, ignore_index=True)


def _dns_rows(packets: pd.DataFrame) -> np.ndarray:
    """UDP datagrams and TCP segments to or from port 53 long enough for a DNS header (over
    TCP, after its 2-byte length); TCP's retransmitted segments left out."""
    on_port = (packets["sport"] == DNS_PORT) | (packets["dport"] == DNS_PORT)
    mdns = (packets["sport"] == MDNS_PORT) | (packets["dport"] == MDNS_PORT)
    udp = (packets["ip_proto"] == UDP) & (packets["payload_len"] >= 12)
    tcp = (packets["ip_proto"] == TCP) & (packets["payload_len"] >= 14) & on_port
    if "retransmission" in packets:
        tcp &= ~packets["retransmission"]
    keep = (udp & ~mdns | tcp) & (packets["file_off"] >= 0)
    if "dup_of_frame" in packets:  # another interface's copy (tcpdump -i any) of one packet
        keep &= packets["dup_of_frame"] < 0
    return np.flatnonzero(keep.to_numpy())


def _read(packets: pd.DataFrame, rows: np.ndarray, view) -> pd.DataFrame:
    at = packets["file_off"].to_numpy()[rows] + packets["payload_off"].to_numpy()[rows]
    captured = packets["caplen"].to_numpy()[rows] - packets["payload_off"].to_numpy()[rows]
    end = at + np.minimum(captured, packets["payload_len"].to_numpy()[rows])
    tcp = packets["ip_proto"].to_numpy()[rows] == TCP
    table = packets.iloc[rows][["frame", "ts", "src", "dst", "sport", "dport"]]
    transport = pd.Categorical.from_codes(tcp.astype(np.int8), ["udp", "tcp"])
    table = table.reset_index(drop=True).assign(row=rows, transport=transport)
    if "file" in packets:
        table["file"] = packets["file"].to_numpy()[rows]
    if view is None:
        return table.iloc[:0]
    if tcp.any():  # a message over TCP follows its length (the first in the segment: ours)
        length = view.u16(at[tcp])
        at[tcp] += 2
        end[tcp] = np.minimum(end[tcp], at[tcp] + length)
    fields = read_dns(view, at, end)
    return table.assign(**{name: getattr(fields, name) for name in fields.__dataclass_fields__})


def dns_exchanges(packets: pd.DataFrame, messages: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per DNS query (its retransmissions counted in ``tries``), with its response's
    frame, rcode (-1: none came), latency from the first sending, answer count and first
    address. ``messages``: ``dns_messages(packets)``, when the caller has them already."""
    if messages is None:
        messages = dns_messages(packets)
    if len(messages):
        on_port = (messages["sport"] == DNS_PORT) | (messages["dport"] == DNS_PORT)
        messages = messages[~messages["malformed"] & (on_port | messages["plausible"])]
    if not len(messages):
        return pd.DataFrame(columns=EXCHANGE_COLUMNS)
    messages = messages.assign(
        key=_exchange_keys(messages), name_code=pd.factorize(messages["name"])[0]
    )
    queries = messages[~messages["response"]].rename(
        columns={
            "src": "client_ip",
            "sport": "client_port",
            "dst": "server_ip",
            "dport": "server_port",
            "ident": "id",
        }  # fmt: skip
    )
    answers = messages[messages["response"]].rename(
        columns={
            "dst": "client_ip",
            "dport": "client_port",
            "src": "server_ip",
            "sport": "server_port",
            "ident": "id",
        }  # fmt: skip
    )
    paired = _pair(queries, answers)
    # Elsewhere than port 53, what reads as DNS is DNS when it was answered as DNS.
    elsewhere = (paired["server_port"] != DNS_PORT) & (paired["client_port"] != DNS_PORT)
    paired = paired[~elsewhere | paired["response_frame"].notna()]
    return paired[EXCHANGE_COLUMNS].reset_index(drop=True)


def _exchange_keys(messages: pd.DataFrame) -> np.ndarray:
    """One number per (file, client socket, server socket, transaction id): a query and its
    responses share it (a response's addresses and ports are the query's, swapped)."""
    response = messages["response"].to_numpy()
    src, dst = _address_codes(messages["src"], messages["dst"])
    sport, dport = messages["sport"].to_numpy(), messages["dport"].to_numpy()
    parts = {
        "file": pd.factorize(messages["file"])[0] if "file" in messages else 0,
        "client": np.where(response, dst, src),
        "client_port": np.where(response, dport, sport),
        "server": np.where(response, src, dst),
        "server_port": np.where(response, sport, dport),
        "id": messages["ident"].to_numpy(),
    }
    return pd.DataFrame(parts).groupby(list(parts), sort=False).ngroup().to_numpy()


def _address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes of two address columns in one numbering (their categories may differ)."""
    src, dst = src.astype("category"), dst.astype("category")
    union = src.cat.categories.union(dst.cat.categories)
    return (
        union.get_indexer(src.cat.categories)[src.cat.codes.to_numpy()],
        union.get_indexer(dst.cat.categories)[dst.cat.codes.to_numpy()],
    )


def _pair(queries: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """One row per query as first sent, its retransmissions counted in ``tries``
    (``_first_sendings``); each response answers the latest query before it on the same
    sockets with the same id, that is its first sending's (tshark's dns.time runs from
    there); a query answered twice keeps the first response."""
    key = ["key"]
    for table in (queries, answers):
        if "file" not in table:
            table["file"] = ""
    answers = answers.rename(columns={"frame": "response_frame", "ts": "response_ts"})
    queries = _first_sendings(queries, answers, key)
    answers = answers.assign(query_ts=answers["response_ts"])
    matched = pd.merge_asof(
        answers.sort_values("query_ts"),
        queries[[*key, "ts", "original"]].sort_values("ts"),
        left_on="query_ts",
        right_on="ts",
        by=key,
        direction="backward",
    )
    matched = matched.dropna(subset=["original"]).drop_duplicates("original", keep="first")
    found = matched.set_index("original")[
        ["response_frame", "response_ts", "rcode", "answers", "address", "truncated"]
    ]
    found = found.rename(columns=lambda c: c if c.startswith("response") else f"{c}_response")
    out = queries[queries["frame"] == queries["original"]].join(found, on="frame")
    answered = out["response_frame"].notna()
    out["response_frame"] = out["response_frame"].astype("Int64")
    out["rcode"] = out["rcode_response"].where(answered, -1).astype(np.int64)
    out["answers"] = out["answers_response"].where(answered, 0).astype(np.int64)
    out["address"] = out["address_response"].where(answered, "")
    out["truncated"] = out["truncated_response"].where(answered, False).astype(bool)
    out["latency_ms"] = ((out["response_ts"] - out["ts"]) * 1000.0).round(3)
    return out.sort_values("frame", kind="stable")


def _first_sendings(queries: pd.DataFrame, answers: pd.DataFrame, key: list[str]):
    """``queries`` with ``original`` (the frame that first sent each one) and, on the first
    sendings, ``tries`` (how many times it was sent). A query is sent again, as tshark
    reckons, when the same one (sockets, id, name, type) went out less than RETRY_WINDOW
    before and no response with its id came in between."""
    same = [*key, "name_code", "qtype"]
    queries = queries.sort_values("ts", kind="stable", ignore_index=True)
    previous = queries.groupby(same, sort=False)["ts"].shift()
    answered = pd.merge_asof(
        queries[[*key, "ts"]].reset_index(),
        answers[[*key, "response_ts"]].sort_values("response_ts"),
        left_on="ts",
        right_on="response_ts",
        by=key,
        direction="backward",
    ).set_index("index")["response_ts"]
    resent = (queries["ts"] - previous < RETRY_WINDOW) & ~(answered >= previous)
    order = queries.sort_values([*same, "ts"], kind="stable").index.to_numpy()
    run = np.empty(len(queries), np.int64)
    run[order] = np.cumsum(~resent.to_numpy()[order])
    firsts = np.zeros(run.max(initial=0) + 1, np.int64)
    firsts[run[~resent.to_numpy()]] = queries["frame"].to_numpy()[~resent.to_numpy()]
    queries["original"] = firsts[run]
    queries["tries"] = np.bincount(run)[run]
    return queries


def malformed_on_port(messages: pd.DataFrame) -> pd.DataFrame:
    """Per server (its address and port 53), how many messages to or from it did not parse
    as DNS: ``file``, ``server_ip``, ``server_port``, ``malformed``."""
    bad = messages[messages["malformed"]] if len(messages) else messages
    if not len(bad):
        return pd.DataFrame(columns=["file", "server_ip", "server_port", "malformed"])
    to_server = (bad["dport"] == DNS_PORT).to_numpy()
    table = pd.DataFrame(
        {
            "file": bad["file"].astype(str).to_numpy() if "file" in bad else "",
            "server_ip": np.where(to_server, bad["dst"].astype(str), bad["src"].astype(str)),
            "server_port": DNS_PORT,
        }
    )
    return (
        table.groupby(["file", "server_ip", "server_port"]).size().rename("malformed").reset_index()
    )
