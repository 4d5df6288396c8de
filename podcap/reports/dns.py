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

import string

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


_TEMPLATE_FIELDS = {
    verdict: tuple(field for _, field, _, _ in string.Formatter().parse(words) if field)
    for verdict, words in EXPLANATIONS.items()
}


def dns_lookups(exchanges: pd.DataFrame) -> pd.DataFrame:
    """Lookups (rows of LOOKUP_COLUMNS) from DNS exchanges (``podcap.flows.dns``): the
    queries in (file, client, time) order, so each lookup's are contiguous and every sum,
    first and last is one numpy reduction over the lookups' starts; no Python step per query."""
    if not len(exchanges):
        return pd.DataFrame(columns=LOOKUP_COLUMNS)
    q = _in_client_order(exchanges)
    q["lookup"] = _lookup_numbers(q)
    lookups = q["lookup"].to_numpy()
    starts = np.flatnonzero(np.r_[True, lookups[1:] != lookups[:-1]])
    last = np.r_[starts[1:], len(q)] - 1
    each = lambda values, how=np.add: how.reduceat(np.asarray(values), starts)  # noqa: E731
    names = q["name"].array
    final_code = names.codes[last]
    final = names.codes == np.repeat(final_code, np.diff(np.r_[starts, len(q)]))
    rcode, ts = q["rcode"].to_numpy(), q["ts"].to_numpy()
    table = pd.DataFrame(
        {
            "file": q["file"].array.take(starts) if "file" in q else "",
            "ts": ts[starts],
            "client_ip": q["client_ip"].array.take(starts),
            "final_name": names.take(last),
            "queries": each(q["tries"].to_numpy()),
            "wasted_queries": each(~final & (rcode == 3)),
            "unanswered": each(unanswered_sendings(q)),
            "truncated": each(_truncated_unanswered(q, final, starts)) > 0,
        },
        index=lookups[starts],
        copy=False,
    )
    answered = each(np.where(final & (rcode >= 0), rcode, 99), np.minimum)
    table["rcode_number"] = np.where(answered == 99, -1, answered)
    table["answer"] = _first_answer(q, final, starts)
    ends = ts + np.nan_to_num(q["latency_ms"].to_numpy(dtype=float)) / 1000.0
    table["latency_ms"] = ((each(ends, np.maximum) - ts[starts]) * 1000.0).round(3)
    table["servers"] = _joined(q["server_ip"].array, starts)
    table["types"] = _type_names(q["qtype"].to_numpy(), starts)
    table["name"] = _base_names(names, starts, final_code)
    table["verdict"] = _verdicts(q, table)
    inverse, numbers = pd.factorize(table["rcode_number"].to_numpy())
    table["rcode"] = _categorical(inverse, [_rcode_name(int(n)) for n in numbers])
    table["explanation"] = _explanations(table)
    return table[LOOKUP_COLUMNS].sort_values("ts", ignore_index=True, kind="stable")


def _in_client_order(exchanges: pd.DataFrame) -> pd.DataFrame:
    """The queries ordered by file, client (its address as text) and time: by numbers, the
    few distinct addresses ranked once. Ranked by their text, not by where they came first,
    clients at one instant come in the same order however the captures were read (all at
    once, or one a Dask worker: ``podcap.analysis.on_dask``)."""
    keys = [exchanges["ts"].to_numpy()]
    clients = pd.Categorical(exchanges["client_ip"])
    rank = np.argsort(np.argsort(np.asarray(clients.categories, dtype=str), kind="stable"))
    keys.append(rank[clients.codes])
    if "file" in exchanges:
        keys.append(pd.Categorical(exchanges["file"]).codes)
    order = np.lexsort(keys)
    # Only the columns the folding reads, each taken alone (categoricals by their codes).
    q = pd.DataFrame({c: exchanges[c].array.take(order) for c in _FOLDED if c in exchanges},
                     copy=False)  # fmt: skip
    q["name"] = q["name"].astype("category")  # a few names asked over and over
    return q


_FOLDED = ["file", "ts", "client_ip", "client_port", "server_ip", "name", "qtype", "transport",
           "tries", "rcode", "latency_ms", "answers", "address", "truncated"]  # fmt: skip


def _first_answer(q: pd.DataFrame, final: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per lookup, the first address answered for its final name ("" if none)."""
    address = pd.Categorical(q["address"])
    words = np.asarray(["", *address.categories.astype(str)], dtype=object)
    codes = address.codes.astype(np.int64) + 1  # 0: no address
    has = final & (words[codes] != "")
    first = np.minimum.reduceat(np.where(has, np.arange(len(q)), len(q)), starts)
    found = first < len(q)
    return _categorical(np.where(found, codes[np.minimum(first, len(q) - 1)], 0), words)


def _categorical(codes: np.ndarray, words) -> pd.Categorical:
    """``words[codes]`` as a Categorical of the distinct words (a word may repeat in
    ``words``): a million strings are not made, nor compared when sorted or written."""
    remap, distinct = pd.factorize(np.asarray(words, dtype=object))
    return pd.Categorical.from_codes(remap[codes], distinct)


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


def _explanations(table: pd.DataFrame) -> pd.Categorical:
    """Each lookup's verdict in words, with the fix; "answered" for those that were. Most
    repeat (the same name expanded the same way): each distinct one is worded once."""
    codes = np.zeros(len(table), np.int64)
    columns = {"client": "client_ip", "servers": "servers", "final_name": "final_name",
               "name": "name", "wasted": "wasted_queries", "unanswered": "unanswered"}  # fmt: skip
    verdicts = pd.Categorical(table["verdict"])
    words = [EXPLANATIONS["ok"]]
    for code in pd.unique(verdicts.codes):
        verdict = verdicts.categories[code]
        if verdict == "ok":
            continue
        rows = np.flatnonzero(verdicts.codes == code)
        used = _TEMPLATE_FIELDS[verdict]  # only what its words say tells two apart
        if not used:
            codes[rows] = len(words)
            words.append(EXPLANATIONS[verdict])
            continue
        case = np.zeros(len(rows), np.int64)
        for field in used:  # each field as a number, the numbers of the case combined
            values = table[columns[field]].array
            if isinstance(values, pd.Categorical):
                number = values.codes[rows].astype(np.int64)
            else:
                number = pd.factorize(np.asarray(values)[rows])[0]
            case = pd.factorize(case * (int(number.max(initial=0)) + 1) + number)[0]
        first = np.zeros(case.max(initial=-1) + 1, np.int64)
        first[case[::-1]] = np.arange(len(case))[::-1]  # each case's first lookup
        codes[rows] = len(words) + case
        shown = {f: np.asarray(table[columns[f]].take(rows[first])) for f in used}
        words += [EXPLANATIONS[verdict].format(**{f: shown[f][k] for f in used})
                  for k in range(len(first))]  # fmt: skip
    remap, categories = pd.factorize(np.asarray(words, dtype=object))
    return pd.Categorical.from_codes(remap[codes], categories)


def _truncated_unanswered(q: pd.DataFrame, final: np.ndarray, starts: np.ndarray):
    """Per query: its answer was truncated, and the final name got no answer over TCP."""
    over_tcp = final & (q["transport"] == "tcp").to_numpy() & (q["rcode"] >= 0).to_numpy()
    answered_over_tcp = np.add.reduceat(over_tcp, starts) > 0
    return q["truncated"].to_numpy() & ~np.repeat(answered_over_tcp, np.diff(np.r_[starts, len(q)]))


def unanswered_sendings(q: pd.DataFrame) -> np.ndarray:
    """Per query, the sendings no response came to: all but the last of its tries, and
    that one too when none came."""
    return q["tries"].to_numpy() - 1 + (q["rcode"].to_numpy() < 0)


def _joined(values: pd.Categorical, starts: np.ndarray) -> np.ndarray:
    """Per lookup (rows from each of ``starts`` to the next), its distinct ``values`` joined
    with commas, in the order they came (one, mostly)."""
    values = pd.Categorical(values)
    words = list(values.categories.astype(str))
    codes = values.codes
    out = codes[starts].astype(np.int64)
    several = np.flatnonzero(
        np.minimum.reduceat(codes, starts) != np.maximum.reduceat(codes, starts)
    )
    bounds = np.r_[starts, len(codes)]
    for n in several:  # rare: a lookup asked of several servers
        seen = pd.unique(codes[bounds[n] : bounds[n + 1]])
        out[n] = len(words)
        words.append(",".join(words[k] for k in seen))
    return _categorical(out, words)


def _type_names(qtypes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per lookup, the query types it asked, by name, sorted and joined (``A,AAAA``)."""
    codes, distinct = pd.factorize(qtypes)
    if len(distinct) > 63:  # a bit per type below; beyond, one Python step per lookup
        bounds = np.r_[starts, len(qtypes)]
        return np.array([",".join(sorted({TYPES.get(t, str(t)) for t in qtypes[a:b]}))
                         for a, b in zip(bounds[:-1], bounds[1:], strict=True)], dtype=object)  # fmt: skip
    masks = np.bitwise_or.reduceat(np.left_shift(1, codes.astype(np.int64)), starts)
    inverse, distinct_masks = pd.factorize(masks)
    spelled = [
        ",".join(
            sorted(TYPES.get(int(t), str(t)) for bit, t in enumerate(distinct) if m >> bit & 1)
        )
        for m in distinct_masks
    ]
    return _categorical(inverse, spelled)


def _rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, "no answer" if rcode < 0 else str(rcode))


def _base_names(names: pd.Categorical, starts: np.ndarray, final_code: np.ndarray):
    """The name each lookup was asked as: its final name or, for a lookup that went through
    several names (a search list), the labels its first and last names start with; each
    distinct (first, final) pair worked out once."""
    words = np.asarray(names.categories.astype(str), dtype=object)
    pairs = names.codes[starts].astype(np.int64) * len(words) + final_code
    inverse, distinct = pd.factorize(pairs)
    spelled = [_base_name(list(dict.fromkeys([words[p // len(words)], words[p % len(words)]])))
               for p in distinct]  # fmt: skip
    return _categorical(inverse, spelled)


def _verdicts(q: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    rcode = table["rcode_number"]
    code = np.select(
        [table["unanswered"] > 0, rcode == 2, rcode == 3, table["truncated"],
         table["wasted_queries"] > 0],
        [1, 2, 3, 4, 5],
        default=0,
    )  # fmt: skip
    code[table.index.isin(_raced_lookups(q)) & (code == 1)] = 6
    return _categorical(code, VERDICTS)


VERDICTS = ["ok", "timeout", "servfail", "nxdomain", "truncated", "ndots_expansion",
            "conntrack_race"]  # fmt: skip


def _raced_lookups(q: pd.DataFrame) -> np.ndarray:
    """Lookups with a query that went unanswered (or needed a retry) while the one of the
    other type, same name, sent with it from the same socket was answered at once: the
    A/AAAA pair of which conntrack dropped one."""
    key = ["lookup", "name", "client_port"]
    lost_rows = unanswered_sendings(q) > 0
    if not lost_rows.any():
        return np.zeros(0, np.int64)
    # Only the few lookups that lost a query need looking at; names by their codes.
    near = np.isin(q["lookup"].to_numpy(), q["lookup"].to_numpy()[lost_rows])
    q = pd.DataFrame({"lookup": q["lookup"].to_numpy(), "name": pd.Categorical(q["name"]).codes,
                      "client_port": q["client_port"].to_numpy(), "qtype": q["qtype"].to_numpy(),
                      "ts": q["ts"].to_numpy(), "tries": q["tries"].to_numpy(),
                      "rcode": q["rcode"].to_numpy()})[near]  # fmt: skip
    lost = q.loc[lost_rows[near], [*key, "qtype", "ts"]]
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
    # Point by point: a Pod is named as its sidecar says, not told apart by file name when
    # several captures are of it (the rows have their file).
    points = [p for f in in_pods for p in points_of([f], packets, analysis.sidecars)]
    pods = {(p.file, p.address): p.name.removeprefix("pod ") for p in points if p.kind == "pod"}
    return [
        pods.get((f, c), "") for f, c in zip(lookups["file"], lookups["client_ip"], strict=True)
    ]
