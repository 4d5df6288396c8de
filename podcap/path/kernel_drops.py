"""The kernel's drops the nodes' watchers recorded (``podcap.dropsfile``), named and tied to
the connections of the path report.

Each drop happened in a network namespace; the captures' sidecars say whose each one is (a Pod
capture's ``point.netns``; a node's view, and a drops file's header, the node's root), so a
drop is placed "in pod default/web-b0" or "in node-b's root netns". A connection whose packets
stopped between two points gets the drops of its packets (its addresses and ports as the last
point that saw them had them, NAT leaves them so until the next hop): the reason and the
function that dropped them, where, and how many.

In the lab every "node" shares one kernel, so each watcher sees every node's drops; the same
drop recorded twice is kept once.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from podcap.dropsfile import drops_files, read_drops
from podcap.path.journey import PARTIAL, REFUSED, REPLY_LOST, UNANSWERED, Journey, Sighting
from podcap.path.points import point_name

COLUMNS = ["ts", "reason", "function", "where", "node", "interface", "proto", "src", "sport",
           "dst", "dport", "tcp_flags", "length", "netns"]  # fmt: skip
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
# What the reasons a dropped connection meets most mean, and what the guide would change.
NO_ROUTE = (
    "there was no route to its destination",
    "Add the route, or the Pod CIDR's: ip route get DST on that node says which is missing.",
)
REASONS = {
    # The verdict names the rule itself (from the node's saved rules).
    "NETFILTER_DROP": ("a netfilter rule (iptables/nftables) dropped it", ""),
    "IP_RPFILTER": ("reverse-path filtering dropped it: the way back to its source is not "
                    "through the interface it came in on",
                    "Make the route back symmetric, or set net.ipv4.conf.all.rp_filter=2 (loose) "
                    "and the interface's on that node."),
    "IP_NOROUTE": NO_ROUTE, "IP_INNOROUTES": NO_ROUTE, "IP_OUTNOROUTES": NO_ROUTE,
    "NEIGH_FAILED": ("its next hop never answered ARP (neighbour discovery): down, or not on "
                     "that link",
                     "Check the next hop is up and on the node's subnet: ip neigh, ip route get DST."),
    "NO_SOCKET": ("nothing listened on its port", ""),  # the refused verdict says what to do
    "OTHERHOST": ("it was addressed to another host's MAC address", "Check ARP and the bridge's forwarding."),
    "PKT_TOO_BIG": ("it was larger than the next hop's MTU", "Give every hop the same MTU, or clamp the MSS."),
    "QDISC_DROP": ("a queue discipline dropped it (a full queue, shaping)", "Check tc qdisc on that interface."),
    "SOCKET_RCVBUFF": ("the receiving socket's buffer was full", "The receiver reads too slowly."),
}  # fmt: skip
BEFORE_S, AFTER_S = 1.0, 120.0  # a drop of a connection's packet: from its first packet on


def drop_table(sidecars: dict[str, dict]) -> pd.DataFrame:
    """Every recorded drop of the captures' nodes, once, with where it happened in words."""
    names = _netns_names(sidecars)
    rows, roots = [], {}
    for path in drops_files(sidecars):
        head, drops = read_drops(path)
        if head.get("root_netns"):
            names.setdefault(head["root_netns"], f"{head['node']} root netns")
            roots[head["root_netns"]] = head.get("node", "")
        rows += [{**drop, "node": head.get("node", "")} for drop in drops]
    table = _once(pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "where"]), roots)
    table.insert(3, "where", [_where(n, names) for n in table["netns"]])
    return table.sort_values("ts", kind="stable").reset_index(drop=True)


SAME_DROP_S = 0.005  # two watchers' clocks for one drop differ by microseconds


def _once(table: pd.DataFrame, roots: dict[str, str]) -> pd.DataFrame:
    """Each drop once: two watchers sharing a kernel (the lab's nodes) both record it, a few
    microseconds apart by their clocks; the record kept is that of the node whose root netns
    it happened in, when one is."""
    key = ["reason", "function", "src", "sport", "dst", "dport", "netns", "tcp_flags", "length"]
    table = table.sort_values([*key, "ts"], kind="stable")
    same = table[key].eq(table[key].shift()).all(axis=1)
    close = table["ts"].diff().abs() < SAME_DROP_S
    one_drop = (~(same & close)).cumsum()
    elsewhere = [
        roots.get(netns) != node for netns, node in zip(table["netns"], table["node"], strict=True)
    ]
    ranked = table.assign(_drop=one_drop, _elsewhere=elsewhere)
    ranked = ranked.sort_values(["_drop", "_elsewhere"], kind="stable")
    return ranked.groupby("_drop", sort=False).head(1).drop(columns=["_drop", "_elsewhere"])


def _netns_names(sidecars: dict[str, dict]) -> dict[str, str]:
    names = {}
    for file, sidecar in sidecars.items():
        point = (sidecar or {}).get("point") or {}
        if point.get("netns"):
            name = point_name(file, sidecar)
            names[point["netns"]] = (
                f"{point['node']} root netns" if point.get("kind") == "node" else name
            )
    return names


def _where(netns: str, names: dict[str, str]) -> str:
    if not netns:
        return "(no device)"
    return names.get(netns, f"netns {netns}")


def dropped_by(journey: Journey, drops: pd.DataFrame) -> str:
    """The kernel's drops of the packets ``journey`` lost on the way, in words ("" when none
    was recorded, or nothing was lost)."""
    # A refused packet is dropped too: by a REJECT rule, or as NO_SOCKET where nothing listens.
    if drops.empty or journey.outcome not in (UNANSWERED, REPLY_LOST, PARTIAL, REFUSED):
        return ""
    found = []
    for sighting, toward_server in _lost_at(journey):
        found += _drops_of(sighting, toward_server, drops)
    counts = Counter((d["reason"], d["function"], d["where"]) for d in found)
    return "; ".join(
        f"{reason} in {function} ({where}){f', {n} packets' if n > 1 else ''}"
        + (f": {REASONS[reason][0]}" if reason in REASONS else "")
        for (reason, function, where), n in counts.most_common()
    )


def kernel_fix(said: str) -> str:
    """What to change, for the reasons ``dropped_by`` names ("" for none known)."""
    fixes = [fix for reason, (_, fix) in REASONS.items() if fix and (
        said.startswith(f"{reason} in ") or f"; {reason} in " in said)]  # fmt: skip
    return " ".join(dict.fromkeys(fixes))


def _lost_at(journey: Journey) -> list[tuple[Sighting, bool]]:
    """Where the lost packets were last seen, and which way they went."""
    if journey.outcome in (UNANSWERED, REFUSED):
        return [(journey.last_seen, True)]
    if journey.outcome == REPLY_LOST and journey.reply_last_seen is not None:
        return [(journey.reply_last_seen, False)]
    loss = journey.segments_lost()
    at = [s for s in journey.sightings if loss is not None and s.point == loss.sent_at]
    return [(s, True) for s in at] + [(s, False) for s in at]


def _drops_of(sighting: Sighting, toward_server: bool, drops: pd.DataFrame) -> list[dict]:
    _, client_ip, client_port, server_ip, server_port = sighting.ends
    src, sport, dst, dport = (client_ip, client_port, server_ip, server_port)
    if not toward_server:
        src, sport, dst, dport = dst, dport, src, sport
    chosen = (drops["src"] == src) & (drops["dst"] == dst)
    chosen &= drops["proto"] == PROTOCOLS.get(sighting.protocol, -1)
    if sighting.protocol != "icmp":
        chosen &= (drops["sport"] == sport) & (drops["dport"] == dport)
    start = sighting.first_ts - BEFORE_S
    chosen &= drops["ts"].between(start, start + AFTER_S)
    return drops[chosen].to_dict("records")


def drop_comments(files: list[str], drops: pd.DataFrame) -> dict[tuple[int, int], str]:
    """{(file index, packet number from 0): comment} marking, for each drop, the last packet
    any capture holds of it before it died (its addresses, ports and protocol, up to two
    seconds before): what Wireshark users of the merged pcapng see as the packet's comment."""
    from podcap.decode import read_capture
    from podcap.decode.strings import as_text

    if drops.empty:
        return {}
    seen = []
    for index, file in enumerate(files):
        packets = read_capture(file).packets
        seen.append(packets.assign(src=as_text(packets["src"]), dst=as_text(packets["dst"]),
                                   _file=index, _number=range(len(packets))))  # fmt: skip
    table = pd.concat(seen, ignore_index=True)
    comments: dict[tuple[int, int], str] = {}
    for drop in drops.to_dict("records"):
        same = (table["src"] == drop["src"]) & (table["dst"] == drop["dst"])
        same &= table["ip_proto"] == drop["proto"]
        if drop["proto"] in (6, 17):
            same &= (table["sport"] == drop["sport"]) & (table["dport"] == drop["dport"])
        same &= table["ts"].between(drop["ts"] - 2.0, drop["ts"] + 0.001)
        if same.any():
            last = table[same].sort_values("ts").iloc[-1]
            said = f"podcap: then dropped by the kernel: {drop['reason']} in {drop['function']} ({drop['where']})"
            comments.setdefault((int(last["_file"]), int(last["_number"])), said)
    return comments


def comments_for(files: list[str]) -> dict[tuple[int, int], str]:
    """``drop_comments`` of the captures ``files``, from the drops files their sidecars name
    (for a merged pcapng of them: ``podcap diagnose``, ``podcap capture --drops --merge``)."""
    from podcap.sidecar import read_sidecar

    return drop_comments(files, drop_table({f: read_sidecar(f) or {} for f in files}))
