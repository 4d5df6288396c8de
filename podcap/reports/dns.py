"""The ``dns`` report: one row per lookup as the application asked it, with a verdict.

A resolver turns one name into many queries: with ``options ndots:5`` (every Pod's
resolv.conf) ``api.shop`` is first tried in each search domain (``api.shop.default.svc.
cluster.local``, ``api.shop.svc.cluster.local``, ...), A and AAAA side by side, each answered
NXDOMAIN, before the name itself. The queries (``podcap.flows.dns``) of one client are folded
back into that lookup: the next name belongs to it when it shares the first label and the
query before failed (NXDOMAIN, no data, or no answer). The verdict names what went wrong,
with the fix:

- ``timeout``: a query was never answered; when the A and AAAA queries left one socket
  together and only one answer came, it is conntrack's race on UDP (kubernetes#56903).
- ``servfail`` / ``nxdomain``: how the last name ended.
- ``truncated``: the answer did not fit (TC bit); the client must ask again over TCP.
- ``ndots_expansion``: the answer came, after that many useless search-domain queries.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.dns import RCODES, TYPES
from podcap.decode.times import as_datetime

LOOKUP_COLUMNS = [
    "file", "ts", "client_ip", "name", "types", "verdict", "queries", "wasted_queries",
    "unanswered", "rcode", "answer", "final_name", "servers", "latency_ms", "explanation",
]  # fmt: skip
RACE_WINDOW = 0.01  # s: A and AAAA sent this close from one socket are a parallel pair
PAIR_WINDOW = 1.0  # s: queries of one name this close are one try (A and AAAA, ...)
LOOKUP_WINDOW = 15.0  # s: a resolver's next query of one lookup comes sooner (retries too)
RETRY_AFTER = 4.0  # s: glibc's first retry comes after its 5 s timeout

EXPLANATIONS = {
    "conntrack_race": (
        "the A and AAAA queries left {client} on one socket together and one answer never "
        "came ({unanswered} unanswered): conntrack's race on UDP (kubernetes#56903); set "
        "dnsConfig.options single-request-reopen (glibc) or run NodeLocal DNSCache"
    ),
    "timeout": (
        "{unanswered} queries from {client} to {servers} got no answer: check the DNS server "
        "Pods (CoreDNS) and that UDP 53 reaches them (NetworkPolicy, node firewall)"
    ),
    "servfail": (
        "the server answered SERVFAIL for {final_name}: it could not resolve it (CoreDNS "
        "without its upstream, or a broken zone); read the CoreDNS logs"
    ),
    "nxdomain": (
        "{name} exists in no search domain nor as given: check the Service's name and "
        "namespace (NAME.NAMESPACE.svc.cluster.local)"
    ),
    "truncated": (
        "the answer for {final_name} did not fit in UDP (TC bit): the client must ask again "
        "over TCP, which fails where TCP 53 to {servers} is blocked"
    ),
    "ndots_expansion": (
        "{wasted} queries for search-domain names came back NXDOMAIN before {final_name} was "
        "answered: ask for '{name}.' (a trailing dot), or lower ndots in the Pod's "
        "dnsConfig.options"
    ),
    "ok": "answered",
}


def dns_lookups(exchanges: pd.DataFrame) -> pd.DataFrame:
    """Lookups (rows of LOOKUP_COLUMNS) from DNS exchanges (``podcap.flows.dns``): grouped
    with numpy and pandas, no Python step per query."""
    if not len(exchanges):
        return pd.DataFrame(columns=LOOKUP_COLUMNS)
    q = exchanges.sort_values(["file", "client_ip", "ts"], kind="stable", ignore_index=True)
    q["name"] = q["name"].astype("category")  # a few names asked over and over
    q["lookup"] = _lookup_numbers(q)
    groups = q.groupby("lookup", sort=True)
    final_name = groups["name"].transform("last")
    final = (q["name"] == final_name).to_numpy()
    rcode = q["rcode"].to_numpy()
    table = pd.DataFrame(
        {
            "file": groups["file"].first(),
            "ts": groups["ts"].min(),
            "client_ip": groups["client_ip"].first().astype(str),
            "final_name": groups["name"].last().astype(object),
            "queries": groups["tries"].sum(),
            "wasted_queries": _per_lookup(q, ~final & (rcode == 3)),
            "unanswered": _per_lookup(q, _unanswered_sendings(q)),
            "truncated": _per_lookup(q, _truncated_unanswered(q, final)) > 0,
        }
    )
    answered = pd.Series(np.where(final & (rcode >= 0), rcode, 99), index=q.index)
    table["rcode_number"] = answered.groupby(q["lookup"]).min().replace(99, -1)
    address = q["address"].where(final & (q["address"] != ""))
    table["answer"] = address.groupby(q["lookup"]).first().fillna("")
    ends = q["ts"] + q["latency_ms"].fillna(0) / 1000.0
    table["latency_ms"] = ((ends.groupby(q["lookup"]).max() - table["ts"]) * 1000.0).round(3)
    table["servers"] = _joined(q, "server_ip")
    type_names = {qtype: TYPES.get(qtype, str(qtype)) for qtype in q["qtype"].unique()}
    table["types"] = _joined(q.assign(type_name=q["qtype"].map(type_names)), "type_name", True)
    table["name"] = _base_names(q, table)
    table["verdict"] = _verdicts(q, table)
    names = {code: _rcode_name(code) for code in table["rcode_number"].unique()}
    table["rcode"] = table["rcode_number"].map(names)
    table["explanation"] = _explanations(table)
    return table[LOOKUP_COLUMNS].sort_values("ts", ignore_index=True)


def _lookup_numbers(queries: pd.DataFrame) -> np.ndarray:
    """One number per lookup (``queries`` in time order per client). A query continues the
    lookup of the one before it from the same client, less than LOOKUP_WINDOW later and
    sharing its first label, when it asks the same name for another type together with it
    (the A/AAAA pair, within PAIR_WINDOW) or again after trouble (a failure, a lost sending,
    a truncated answer), or asks the next name after
    every query of the previous name failed (NXDOMAIN, SERVFAIL, no answer, or no data: the
    resolver goes on through the search list)."""
    names = pd.Categorical(queries["name"])
    labels = pd.Series(names.categories).str.split(".", n=1).str[0]
    first_label = pd.factorize(labels)[0][names.codes]
    client = pd.factorize(queries["file"])[0] * (1 << 32)
    client += pd.factorize(queries["client_ip"])[0]
    name, rcode, ts = names.codes, queries["rcode"].to_numpy(), queries["ts"].to_numpy()
    gap = np.diff(ts)
    near = (client[1:] == client[:-1]) & (first_label[1:] == first_label[:-1])
    near &= gap <= LOOKUP_WINDOW
    got_data = (rcode == 0) & (queries["answers"].to_numpy() > 0)
    same_name = name[1:] == name[:-1]
    # The runs of one name in a row; a run "worked" when one of its queries got data.
    run = np.cumsum(np.r_[True, ~(same_name & near)])
    worked = np.zeros(run[-1] + 1, bool)
    np.logical_or.at(worked, run, got_data)
    qtype = queries["qtype"].to_numpy()
    paired = (gap <= PAIR_WINDOW) & (qtype[1:] != qtype[:-1])
    trouble = (rcode != 0) | (queries["tries"].to_numpy() > 1) | queries["truncated"].to_numpy()
    again = same_name & (paired | trouble[:-1])
    next_name = ~same_name & ~worked[run[:-1]]
    return np.cumsum(~np.r_[False, near & (again | next_name)])


def _explanations(table: pd.DataFrame) -> np.ndarray:
    """Each lookup's verdict in words, with the fix; "answered" for those that were."""
    words = np.full(len(table), EXPLANATIONS["ok"], dtype=object)
    wrong = np.flatnonzero((table["verdict"] != "ok").to_numpy())
    columns = ("verdict", "client_ip", "servers", "final_name", "name", "wasted_queries",
               "unanswered")  # fmt: skip
    rows = zip(*(table[c].to_numpy()[wrong].tolist() for c in columns), strict=True)
    words[wrong] = [
        EXPLANATIONS[v].format(client=c, servers=s, final_name=f, name=n, wasted=w, unanswered=u)
        for v, c, s, f, n, w, u in rows
    ]
    return words


def _truncated_unanswered(q: pd.DataFrame, final: np.ndarray) -> np.ndarray:
    """Per query: its answer was truncated, and the final name got no answer over TCP."""
    over_tcp = final & (q["transport"] == "tcp").to_numpy() & (q["rcode"] >= 0).to_numpy()
    answered_over_tcp = _per_lookup(q, over_tcp).reindex(q["lookup"]).to_numpy() > 0
    return q["truncated"].to_numpy() & ~answered_over_tcp


def _unanswered_sendings(q: pd.DataFrame) -> np.ndarray:
    """Per query, the sendings no response came to: all but the last of its tries, and
    that one too when none came."""
    return q["tries"].to_numpy() - 1 + (q["rcode"].to_numpy() < 0)


def _per_lookup(q: pd.DataFrame, flags: np.ndarray) -> pd.Series:
    return pd.Series(flags.astype(np.int64), index=q.index).groupby(q["lookup"]).sum()


def _joined(q: pd.DataFrame, column: str, sort: bool = False) -> pd.Series:
    """Per lookup, the distinct values of ``column`` joined with commas (one, mostly)."""
    values = pd.Categorical(q[column])  # codes: no string per query
    words = np.asarray(values.categories.astype(str), dtype=object)
    width = len(words) + 1
    pairs = pd.unique(q["lookup"].to_numpy() * width + values.codes)  # in order of appearance
    lookups, codes = pairs // width, pairs % width
    if len(lookups) == len(np.unique(lookups)):  # one value each: nothing to join
        return pd.Series(words[codes], index=lookups).sort_index()
    order = np.lexsort((words[codes].astype(str), lookups) if sort else (lookups,))
    lookups, texts = lookups[order], words[codes[order]]
    starts = np.flatnonzero(np.r_[True, lookups[1:] != lookups[:-1]])
    joined = np.add.reduceat(np.asarray("," + texts.astype(object), dtype=object), starts)
    return pd.Series([text[1:] for text in joined], index=lookups[starts])


def _rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, "no answer" if rcode < 0 else str(rcode))


def _base_names(q: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """The name each lookup was asked as: its final name or, for a lookup that went through
    several names (a search list), the labels its first and last names start with."""
    first = q.groupby("lookup")["name"].first().astype(object)
    base = table["final_name"].copy()
    several = first != base
    # A few names asked over and over: each (first, final) pair is worked out once.
    pairs = pd.DataFrame({"first": first[several], "final": base[several]})
    distinct = pairs.drop_duplicates()
    common = pd.Series([_base_name([a, b]) for a, b in distinct.itertuples(index=False)],
                       index=pd.MultiIndex.from_frame(distinct))  # fmt: skip
    base[several] = common.reindex(pd.MultiIndex.from_frame(pairs)).to_numpy()
    return base


def _verdicts(q: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    rcode = table["rcode_number"]
    verdict = np.select(
        [table["unanswered"] > 0, rcode == 2, rcode == 3, table["truncated"],
         table["wasted_queries"] > 0],
        ["timeout", "servfail", "nxdomain", "truncated", "ndots_expansion"],
        default="ok",
    )  # fmt: skip
    verdict = pd.Series(verdict, index=table.index)
    verdict[verdict.index.isin(_raced_lookups(q)) & (verdict == "timeout")] = "conntrack_race"
    return verdict


def _raced_lookups(q: pd.DataFrame) -> np.ndarray:
    """Lookups with a query that went unanswered (or needed a retry) while the one of the
    other type, same name, sent with it from the same socket was answered at once: the
    A/AAAA pair of which conntrack dropped one."""
    key = ["lookup", "name", "client_port"]
    lost = q.loc[_unanswered_sendings(q) > 0, [*key, "qtype", "ts"]]
    if not len(lost):
        return np.zeros(0, np.int64)
    got = q.loc[(q["tries"] == 1) & (q["rcode"] >= 0), [*key, "qtype", "ts"]]
    pairs = lost.merge(got, on=key, suffixes=("", "_answered"))
    pairs = pairs[(pairs["qtype"] != pairs["qtype_answered"])]
    pairs = pairs[(pairs["ts"] - pairs["ts_answered"]).abs() <= RACE_WINDOW]
    return pairs["lookup"].unique()


def _base_name(names: list[str]) -> str:
    """The name the application asked for: the labels all the tried names start with."""
    if len(names) == 1:
        return names[0]
    split = [n.split(".") for n in names]
    common = []
    for labels in zip(*split, strict=False):
        if len(set(labels)) > 1:
            break
        common.append(labels[0])
    return ".".join(common) or names[-1]


def dns_report(analysis) -> pd.DataFrame:
    lookups = dns_lookups(analysis.dns_exchanges)
    lookups.insert(3, "client_pod", _client_pods(analysis, lookups))
    return analysis.without_file_column(as_datetime(lookups, "ts")).reset_index(drop=True)


def _client_pods(analysis, lookups: pd.DataFrame) -> list[str]:
    """The Pod that asked (``NAMESPACE/NAME``) where the lookup was captured in a Pod whose
    address is the client's (its sidecar says which Pod, ``podcap.path.points``)."""
    from podcap.path.points import points_of

    in_pods = [
        f
        for f in analysis.files
        if ((analysis.sidecars.get(f) or {}).get("point") or {}).get("kind") == "pod"
    ]
    if not len(lookups) or not in_pods:
        return [""] * len(lookups)
    packets = analysis.all_packets
    if len(in_pods) < len(analysis.files):
        packets = packets[packets["file"].isin(in_pods)]
    points = points_of(in_pods, packets, analysis.sidecars)
    pods = {(p.file, p.address): p.name.removeprefix("pod ") for p in points if p.kind == "pod"}
    return [
        pods.get((f, c), "") for f, c in zip(lookups["file"], lookups["client_ip"], strict=True)
    ]


SERVER_COLUMNS = [
    "file",
    "server_ip",
    "server_port",
    "queries",
    "answered",
    "unanswered",
    "nxdomain",
    "servfail",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "clients",
]  # fmt: skip  (and ``malformed``: messages to or from it that did not parse)


def dns_servers(exchanges: pd.DataFrame) -> pd.DataFrame:
    """One row per DNS server: how many queries it got, how it answered, and how fast
    (latency percentiles of the answered ones): an overloaded CoreDNS shows here."""
    if not len(exchanges):
        return pd.DataFrame(columns=SERVER_COLUMNS)
    rcode = exchanges["rcode"].to_numpy()
    q = exchanges.assign(
        file=exchanges["file"].astype(str),
        server_ip=exchanges["server_ip"].astype(str),
        answered=rcode >= 0,
        unanswered=_unanswered_sendings(exchanges),
        nxdomain=rcode == 3,
        servfail=rcode == 2,
    )
    keys = ["file", "server_ip", "server_port"]
    by = q.groupby(keys, sort=True)
    latency = q[q["answered"]].groupby(keys)["latency_ms"]
    table = by[["tries", "answered", "unanswered", "nxdomain", "servfail"]].sum()
    table = table.rename(columns={"tries": "queries"}).assign(
        p50_ms=latency.quantile(0.5),
        p90_ms=latency.quantile(0.9),
        p99_ms=latency.quantile(0.99),
        max_ms=latency.max(),
        clients=by["client_ip"].nunique(),
    )
    table = table.reset_index()
    return table[SERVER_COLUMNS].round({"p50_ms": 3, "p90_ms": 3, "p99_ms": 3, "max_ms": 3})


def dns_servers_report(analysis) -> pd.DataFrame:
    from podcap.flows.dns import malformed_on_port

    table = dns_servers(analysis.dns_exchanges)
    bad = malformed_on_port(analysis.dns_messages)
    keys = ["file", "server_ip", "server_port"]
    table = table.merge(bad, on=keys, how="outer") if len(bad) else table.assign(malformed=0)
    counts = ["queries", "answered", "unanswered", "nxdomain", "servfail", "clients", "malformed"]
    table[counts] = table[counts].fillna(0).astype("int64")
    return analysis.without_file_column(table).reset_index(drop=True)
