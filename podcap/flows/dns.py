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
from podcap.decode.table import concat_tables

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
    return concat_tables(parts)


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


MESSAGE_COLUMNS = ["frame", "ts", "src", "dst", "sport", "dport"]


def _read(packets: pd.DataFrame, rows: np.ndarray, view) -> pd.DataFrame:
    at = packets["file_off"].to_numpy()[rows] + packets["payload_off"].to_numpy()[rows]
    captured = packets["caplen"].to_numpy()[rows] - packets["payload_off"].to_numpy()[rows]
    end = at + np.minimum(captured, packets["payload_len"].to_numpy()[rows])
    tcp = packets["ip_proto"].to_numpy()[rows] == TCP
    # The few columns wanted, each taken alone (categoricals by their codes): not a copy of
    # every column of a million rows.
    columns = {name: packets[name].array.take(rows) for name in MESSAGE_COLUMNS}
    columns["row"] = rows
    columns["transport"] = pd.Categorical.from_codes(tcp.astype(np.int8), ["udp", "tcp"])
    if "file" in packets:
        columns["file"] = packets["file"].array.take(rows)
    if view is None:
        return pd.DataFrame(columns).iloc[:0]
    if tcp.any():  # a message over TCP follows its length (the first in the segment: ours)
        length = view.u16(at[tcp])
        at[tcp] += 2
        end[tcp] = np.minimum(end[tcp], at[tcp] + length)
    fields = _reader()(view, at, end)
    columns |= {name: getattr(fields, name) for name in fields.__dataclass_fields__}
    return pd.DataFrame(columns, copy=False)  # the fresh arrays as they are: not stacked again


def _reader():
    """The C reader when the flows' extension is in use (``podcap.flows.backend``), else
    numpy's: the same columns."""
    from podcap.flows import backend, compiled

    return compiled.dns_fields if backend.ACTIVE is backend.COMPILED else read_dns


def dns_exchanges(packets: pd.DataFrame, messages: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per DNS query (its retransmissions counted in ``tries``), with its response's
    frame, rcode (-1: none came), latency from the first sending, answer count and first
    address. ``messages``: ``dns_messages(packets)``, when the caller has them already."""
    if messages is None:
        messages = dns_messages(packets)
    if len(messages):
        on_port = (messages["sport"] == DNS_PORT) | (messages["dport"] == DNS_PORT)
        kept = ~messages["malformed"] & (on_port | messages["plausible"])
        messages = messages if kept.all() else messages[kept]
    if not len(messages):
        return pd.DataFrame(columns=EXCHANGE_COLUMNS)
    return _pair(messages.reset_index(drop=True))


def _exchange_keys(messages: pd.DataFrame) -> np.ndarray:
    """One number per (file, client socket, server socket, transaction id): a query and its
    responses share it (a response's addresses and ports are the query's, swapped)."""
    response = messages["response"].to_numpy()
    src, dst = _address_codes(messages["src"], messages["dst"])
    sport = messages["sport"].to_numpy().astype(np.int64)
    dport = messages["dport"].to_numpy().astype(np.int64)
    client = pd.factorize(np.where(response, dst, src) << 16 | np.where(response, dport, sport))
    server = pd.factorize(np.where(response, src, dst) << 16 | np.where(response, sport, dport))
    files = pd.Categorical(messages["file"]).codes if "file" in messages else 0
    sockets = _combined(_combined(client[0], server[0]), np.zeros(len(sport), np.int64) + files)
    return _combined(sockets, messages["ident"].to_numpy())


def _combined(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One number per distinct (a, b) pair of two arrays of non-negative codes (not dense):
    a * (largest b + 1) + b, ``a`` renumbered first where that would not fit in 63 bits."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    width = int(b.max(initial=0)) + 1
    if int(a.max(initial=0)) >= (1 << 62) // width:
        a = pd.factorize(a)[0].astype(np.int64)
    return a * width + b


def _address_codes(src: pd.Series, dst: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes of two address columns in one numbering (their categories may differ)."""
    src, dst = src.astype("category"), dst.astype("category")
    union = src.cat.categories.union(dst.cat.categories)
    return (
        union.get_indexer(src.cat.categories)[src.cat.codes.to_numpy()].astype(np.int64),
        union.get_indexer(dst.cat.categories)[dst.cat.codes.to_numpy()].astype(np.int64),
    )


def _pair(messages: pd.DataFrame) -> pd.DataFrame:
    """One row per query as first sent, its retransmissions counted in ``tries``
    (``_runs``); each response answers the latest query before it on the same sockets with
    the same id, that is its first sending's (tshark's dns.time runs from there); a query
    answered twice keeps the first response. With numpy over the messages in (exchange, time)
    order: one sort, then scans."""
    key = _exchange_keys(messages)
    ts = messages["ts"].to_numpy()
    order = (np.argsort(key, kind="stable") if np.all(np.diff(ts) >= 0)
             else np.lexsort((ts, key)))  # fmt: skip
    key, ts = key[order], ts[order]
    response = messages["response"].to_numpy()[order]
    start = _group_starts(key)
    last_query = _last_before(~response, start)  # per message, the latest query up to it
    group = np.cumsum(np.r_[0, key[1:] != key[:-1]])  # the exchanges numbered, in order
    first, tries = _runs(messages, order, group, ts, response, _last_before(response, start))
    # A response answers the run of the latest query before it; the run's first response wins.
    answering = np.flatnonzero(response & (last_query >= 0))
    run_of = np.full(len(key), -1, np.int64)
    run_of[~response] = first
    answered = run_of[last_query[answering]]
    by_time = np.lexsort((ts[answering], answered))
    kept = np.r_[True, answered[by_time][1:] != answered[by_time][:-1]]
    answer_of = np.full(len(key), -1, np.int64)
    answer_of[answered[by_time][kept]] = answering[by_time][kept]
    return _exchange_rows(messages, order, np.flatnonzero(~response & (run_of == np.arange(
        len(key)))), tries, answer_of)  # fmt: skip


def _group_starts(key: np.ndarray) -> np.ndarray:
    """Per row (sorted by key), the position where its key's rows start."""
    new = np.r_[True, key[1:] != key[:-1]]
    return np.maximum.accumulate(np.where(new, np.arange(len(key)), 0))


def _last_before(flag: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row, the last row of its key group at or before it with ``flag``; -1 if none."""
    last = np.maximum.accumulate(np.where(flag, np.arange(len(flag)), -1))
    return np.where(last >= start, last, -1)


def _runs(messages, order, key, ts, response, last_response):
    """Per query (in the sorted order), the row of its first sending, and per row how many
    times that query was sent. A query is sent again, as tshark reckons, when the same one
    (sockets, id, name, type) went out less than RETRY_WINDOW before and no response with
    its id came in between."""
    queries = np.flatnonzero(~response)
    name = pd.Categorical(messages["name"]).codes[order][queries]
    qtype = messages["qtype"].to_numpy()[order][queries].astype(np.int64)
    same = _combined(_combined(key[queries], name), qtype & 0xFFFF)
    within = np.argsort(same, kind="stable")  # sorted by time already, within each
    previous = np.full(len(queries), -1, np.int64)
    follows = same[within][1:] == same[within][:-1]
    previous[within[1:][follows]] = within[:-1][follows]
    prev_ts = np.where(previous >= 0, ts[queries][np.maximum(previous, 0)], -np.inf)
    answer = last_response[queries]
    answered_since = (answer >= 0) & (ts[np.maximum(answer, 0)] >= prev_ts)
    resent = (previous >= 0) & (ts[queries] - prev_ts < RETRY_WINDOW) & ~answered_since
    run = np.empty(len(queries), np.int64)
    run[within] = np.cumsum(~resent[within]) - 1
    firsts = np.empty(run.max(initial=-1) + 1, np.int64)
    firsts[run[~resent]] = queries[~resent]
    tries = np.zeros(len(key), np.int64)
    tries[firsts] = np.bincount(run)
    return firsts[run], tries


def _exchange_rows(messages, order, first_rows, tries, answer_of) -> pd.DataFrame:
    """The output: one row per first sending, with its response's fields."""
    column = lambda name: messages[name].to_numpy()  # noqa: E731
    rows, answers = order[first_rows], answer_of[first_rows]
    # Elsewhere than port 53, what reads as DNS is DNS when it was answered as DNS.
    sport, dport = column("sport")[rows], column("dport")[rows]
    keep = (answers >= 0) | (sport == DNS_PORT) | (dport == DNS_PORT)
    by_frame = np.argsort(column("frame")[rows[keep]], kind="stable")
    first_rows = first_rows[keep][by_frame]
    rows, answers = order[first_rows], answer_of[first_rows]
    got = answers >= 0
    reply = order[np.maximum(answers, 0)]
    taken = lambda name, at: messages[name].array.take(at)  # noqa: E731 (categories kept)
    ts = column("ts")[rows]
    out = pd.DataFrame({
        "file": taken("file", rows) if "file" in messages else "",
        "frame": column("frame")[rows], "ts": ts,
        "client_ip": taken("src", rows), "client_port": column("sport")[rows],
        "server_ip": taken("dst", rows), "server_port": column("dport")[rows],
        "id": column("ident")[rows], "name": taken("name", rows), "qtype": column("qtype")[rows],
        "transport": taken("transport", rows), "tries": tries[first_rows],
        "response_frame": pd.arrays.IntegerArray(column("frame")[reply], ~got),
        "rcode": np.where(got, column("rcode")[reply], -1).astype(np.int64),
        "latency_ms": np.where(got, ((column("ts")[reply] - ts) * 1000.0).round(3), np.nan),
        "answers": np.where(got, column("answers")[reply], 0).astype(np.int64),
        "address": _blank_where(taken("address", reply), ~got),
        "truncated": got & column("truncated")[reply],
    }, copy=False)  # fmt: skip
    return out


def _blank_where(values: pd.Categorical, blank: np.ndarray) -> pd.Categorical:
    """``values`` with "" where ``blank`` (no response: no address)."""
    if "" not in values.categories:
        values = values.add_categories([""])
    codes = np.where(blank, values.categories.get_loc(""), values.codes)
    return pd.Categorical.from_codes(codes, values.categories)


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
