"""The ``conntrack`` report: connections conntrack and NAT broke, one row each, with the fix.

Verdicts: ``snat_port_collision`` (two Pods' connections given the node's same source port
towards one destination: one's SYNs or DNS queries dropped, or the port reused within
seconds; both Pods named; ``podcap.path.collisions``), ``insert_failed`` (a Pod's SYNs or
datagrams lost between it and its
node while a later identical one passed: the shape conntrack's insert failures leave), and
``reset_after_invalid`` (a Service connection reset after a server packet conntrack marked
INVALID reached the client un-NATed; ``podcap.flows.invalid_resets``). The first two need a
capture at the Pod and one at its node; the last needs only the client's.
"""

from __future__ import annotations

import pandas as pd

from podcap.reports.missing import with_na

CONNTRACK_COLUMNS = [
    "verdict", "protocol", "client_ip", "client_port", "server_ip", "server_port", "other",
    "shared_end", "lost", "delay_ms", "ts", "where", "explanation", "fix",
]  # fmt: skip

RANDOM_FULLY_FIX = (
    "add --random-fully to the MASQUERADE rules (ip-masq-agent 2.10+ and kube-proxy do when "
    "iptables supports it; check the CNI's own masquerade rule), or give Pods distinct "
    "source ports; `conntrack -S` on the node counts the drops in insert_failed"
)
INVALID_FIX = (
    "drop INVALID packets before they are forwarded (`iptables -I FORWARD -m conntrack "
    "--ctstate INVALID -j DROP`, as kube-proxy 1.15+ does), or let conntrack accept "
    "out-of-window packets (sysctl net.netfilter.nf_conntrack_tcp_be_liberal=1; kube-proxy "
    "--conntrack-tcp-be-liberal)"
)


def conntrack_report(analysis) -> pd.DataFrame:
    from podcap.path.collisions import first_packets, snat_collisions

    packets, flows = analysis.all_packets, analysis.all_flows
    rows = []
    if len(analysis.files) > 1:  # a collision shows between a Pod's capture and its node's
        found = snat_collisions(analysis.journeys.journeys, first_packets(packets), flows)
        rows = [_collision_row(c) for c in found]
    rows += _reset_rows(analysis.invalid_resets, flows)
    table = pd.DataFrame(rows, columns=[*CONNTRACK_COLUMNS, "_flows"])
    if analysis.filter_text is not None and rows:
        table = table[table["_flows"].apply(_chosen(analysis))]
    table = table.drop(columns=["_flows"]).sort_values("ts", kind="stable")
    table["ts"] = pd.to_datetime(table["ts"], unit="s", utc=True)
    for column in ("client_port", "server_port", "lost"):
        table[column] = table[column].astype("Int64")
    table["delay_ms"] = table["delay_ms"].astype("Float64")
    return with_na(table.reset_index(drop=True), texts=("other", "shared_end"))


def _chosen(analysis):
    chosen = set(analysis.matched_flow_ids.tolist())
    return lambda flows: bool(chosen & set(flows))


def _collision_row(collision) -> dict:
    journey, first = collision.journey, collision.journey.first
    _, client_ip, client_port, server_ip, server_port = first.ends
    row = {
        "verdict": collision.verdict, "protocol": journey.protocol, "client_ip": client_ip, "client_port": client_port,
        "server_ip": server_ip, "server_port": server_port, "other": "", "shared_end": "",
        "lost": collision.lost, "ts": first.first_ts,
        "delay_ms": None if collision.delay_s != collision.delay_s else
        round(collision.delay_s * 1000, 3),
        "where": f"{collision.lost_at[0]} -> {collision.lost_at[1]}",
        "_flows": [s.flow_id for s in journey.sightings],
    }  # fmt: skip
    what = "SYNs" if journey.protocol == "tcp" else "datagrams"
    lost = (f"{collision.lost} of its {collision.sent} {what} went by "
            f"{collision.lost_at[0]} and never by {collision.lost_at[1]}")  # fmt: skip
    if collision.delay_s == collision.delay_s:
        lost += f"; a later one passed {collision.delay_s:.3f} s after the first"
    if collision.holder is None:
        row["explanation"] = (
            f"{lost}: the first was dropped at the node, after the Pod and before the NIC, "
            "and its unchanged retransmission got through: the shape of a conntrack insert "
            "failure (two connections given the same NAT tuple at once)"
        )
        row["fix"] = RANDOM_FULLY_FIX
        return row
    holder = collision.holder.first
    row["other"] = f"{holder.client} ({holder.point})"
    row["shared_end"] = collision.shared_end
    row["_flows"] += [s.flow_id for s in collision.holder.sightings]
    if collision.lost:
        row["explanation"] = (
            f"{lost}, while {holder.client} ({holder.point}) held {collision.shared_end} "
            f"towards {holder.server}: MASQUERADE keeps a connection's source port when it "
            f"can, both Pods asked for port {client_port}, and the node's conntrack dropped "
            "the second one to claim it (insert_failed)"
        )
    else:
        row["explanation"] = (
            f"it left the node as {collision.shared_end} towards {first.server}, the address "
            f"and port {holder.client} ({holder.point}) had used to the same destination "
            "shortly before: the destination, or a firewall on the way, may still hold the "
            "first connection's state and drop or reset the second"
        )
    row["fix"] = RANDOM_FULLY_FIX
    return row


def _reset_rows(resets: pd.DataFrame, flows: pd.DataFrame) -> list[dict]:
    rows = []
    for r in resets.itertuples():
        client_ip, client_port = _split(r.local)
        server_ip, server_port = _split(r.peer)
        rows.append({
            "verdict": "reset_after_invalid", "protocol": "tcp", "client_ip": client_ip, "client_port": client_port,
            "server_ip": server_ip, "server_port": server_port, "other": r.stray_from,
            "shared_end": "", "lost": None, "delay_ms": None, "ts": r.stray_ts,
            "where": _file_of(flows, r.flow_id),
            "explanation": (
                _how_it_came(r) + f" and {r.local} answered it with a reset: conntrack marked "
                "it INVALID (outside the TCP window it tracks), so NAT did not rewrite it back "
                f"to the Service's address; the reset reached {r.stray_from} and killed the "
                "connection there" + _then_reset(flows, r.flow_id)
            ),
            "fix": INVALID_FIX, "_flows": [r.flow_id, r.stray_flow_id],
        })  # fmt: skip
    return rows


def _how_it_came(r) -> str:
    if r.flow_id == r.stray_flow_id:  # seen past the NAT: the connection has the server's address
        return (f"a segment from {r.stray_from} far outside the connection's sequence numbers "
                f"reached {r.local}")  # fmt: skip
    return (f"a packet from {r.stray_from} reached {r.local}, the end of a connection to {r.peer}, "
            f"from the server's own address instead of {r.peer},")  # fmt: skip


def _then_reset(flows: pd.DataFrame, flow_id: int) -> str:
    history = flows.loc[flows["flow_id"] == flow_id, "history"]
    server_reset = len(history) and "r" in str(history.iloc[0])
    return " (the client's next packet was answered with a reset)" if server_reset else ""


def _file_of(flows: pd.DataFrame, flow_id: int) -> str:
    if "file" not in flows:
        return ""
    from pathlib import Path

    files = flows.loc[flows["flow_id"] == flow_id, "file"]
    return Path(str(files.iloc[0])).name if len(files) else ""


def _split(end: str) -> tuple[str, int]:
    address, _, port = end.rpartition(":")
    return address.strip("[]"), int(port)
