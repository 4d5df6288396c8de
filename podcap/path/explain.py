"""Why a connection ended as it did, and what to change: the cause the troubleshooting guide
checks at the hop where its packets stopped, with the facts the captures' sidecars hold (node
addresses, Pod CIDRs) named where they are known."""

from __future__ import annotations

from dataclasses import dataclass

from podcap.path.journey import (
    DELIVERED,
    PARTIAL,
    REFUSED,
    REPLY_LOST,
    RESET,
    Journey,
)
from podcap.path.points import Point

NODE_PORTS = (30000, 32767)  # the API server's default --service-node-port-range


@dataclass(frozen=True)
class Verdict:
    explanation: str
    fix: str


@dataclass(frozen=True)
class NodeFacts:
    """What the sidecars say of one node."""

    address: str | None = None
    pod_cidrs: tuple[str, ...] = ()
    rules: str = ""  # its iptables-save, when a capture saved it (--node-rules, diagnose)
    nft: str = ""  # its nft list ruleset, likewise


def node_facts(sidecars: dict[str, dict]) -> dict[str, NodeFacts]:
    """Per node named in a sidecar: its address and Pod CIDRs, from the cluster facts."""
    facts: dict[str, NodeFacts] = {}
    for sidecar in sidecars.values():
        node = ((sidecar or {}).get("point") or {}).get("node")
        cluster = (sidecar or {}).get("cluster") or {}
        listed = ((cluster.get("pod") or {}).get("node")) or {}
        address = cluster.get("node_ip") or listed.get("internal_ip")
        cidrs = tuple(cluster.get("pod_cidrs") or listed.get("pod_cidrs") or ())
        saved = cluster.get("node_rules") or {}
        rules, nft = saved.get("iptables-save") or "", saved.get("nft") or ""
        if node:
            known = facts.get(node, NodeFacts())
            facts[node] = NodeFacts(
                address or known.address, cidrs or known.pod_cidrs, rules or known.rules,
                nft or known.nft,
            )  # fmt: skip
    return facts


def explain(journey: Journey, facts: dict[str, NodeFacts]) -> Verdict:
    outcome = journey.outcome
    first = journey.first
    target = f"{first.server} from {first.client}"
    if outcome == DELIVERED:
        verdict = Verdict("Delivered and answered.", "")
    elif outcome == REFUSED:
        verdict = _refused(journey, facts)
    elif outcome == REPLY_LOST:
        verdict = _reply_lost(journey)
    elif outcome == RESET:
        who = "the server" if "r" in first.history else "the client"
        verdict = Verdict(f"{target}: reset by {who} after the handshake.", "")
    elif outcome == PARTIAL:
        verdict = _partial(journey)
    else:
        verdict = _unanswered(journey, facts)
    rewrites = journey.rewrites()
    if rewrites:
        who = _rewriters(journey)
        text = f"{verdict.explanation} Rewritten: {'; '.join(rewrites)}.{who}"
        verdict = Verdict(text, verdict.fix)
    return verdict


def _opening(journey: Journey) -> str:
    """What the client sent first, in words."""
    return {"udp": "UDP datagram", "icmp": "ping (ICMP echo request)"}.get(journey.protocol, "SYN")


def _unanswered(journey: Journey, facts: dict[str, NodeFacts]) -> Verdict:
    first, lost = journey.first, journey.lost_between
    last, opening = journey.last_seen.point, _opening(journey)
    if lost is None and journey.protocol != "tcp" and last.address == journey.last_seen.server_ip:
        return _arrived_unanswered(journey, last)
    if lost is None:
        return Verdict(
            f"The {opening} to {first.server} was last seen at {last} and never answered; no capture "
            f"point after {last} is on its way to {first.server}, so where it stopped is not "
            "known from these captures.",
            f"Capture further along the path (the destination's node and Pod: podcap diagnose "
            f"does it), or check {first.server} is up and reachable from {last}.",
        )
    a, b = lost
    seen = f"The {opening} to {first.server} reached {a} but never {b}"
    if a.kind == "pod" and b.kind == "node" and a.node == b.node:
        return _node_drop(
            journey, facts, a.node,
            f"{seen}: {a.node} dropped it between the Pod's veth and its NIC (its "
            "iptables/nftables FORWARD rules or a NetworkPolicy on the Pod).",
            f"kubectl get networkpolicy -A, those selecting {a}",
        )  # fmt: skip
    if a.kind == "node" and b.kind == "pod" and a.node == b.node:
        return _node_drop(
            journey, facts, b.node,
            f"{seen}: {b.node} dropped it between its NIC and the Pod (its "
            "iptables/nftables FORWARD rules or a NetworkPolicy on the destination Pod).",
            f"kubectl get networkpolicy -A, those selecting {b}",
        )  # fmt: skip
    if a.kind == "node" and b.kind == "node" and a.node != b.node:
        return Verdict(
            f"{seen}: it was dropped between the two nodes, by {b.node}'s security group "
            "or firewall, or a VPC route that does not send the Pod CIDR to it.",
            _between_nodes_fix(a, b, facts),
        )
    port = first.server_port
    if b.kind == "node" and port is not None and NODE_PORTS[0] <= port <= NODE_PORTS[1]:
        client = journey.last_seen.client_ip
        return Verdict(
            f"{seen}: port {port} is a NodePort, and something before {b} drops it: the "
            f"node's security group or firewall does not let {NODE_PORTS[0]}-{NODE_PORTS[1]} in.",
            f"Allow {journey.protocol} {NODE_PORTS[0]}-{NODE_PORTS[1]} from {client} into {b.node} in its "
            "security group / firewall (every node: kube-proxy answers a NodePort on all).",
        )
    if b.kind == "peer":
        return Verdict(
            f"{seen}: it was dropped between the cluster and the peer (a firewall on the way, "
            "or the peer's own).",
            f"Allow {journey.last_seen.client_ip} to {first.server} in the "
            "peer's firewall and any firewall between the VPC and it.",
        )
    return Verdict(f"{seen}.", f"Check the filters and routes between {a} and {b}.")


def _arrived_unanswered(journey: Journey, last: Point) -> Verdict:
    """A datagram or ping that reached its destination's own point and got no answer."""
    first = journey.first
    if journey.protocol == "icmp":
        return Verdict(
            f"The pings reached {last}, their destination, and were not answered: it ignores "
            "pings (net.ipv4.icmp_echo_ignore_all) or a rule in its own namespace drops them.",
            f"In {last}'s network namespace: sysctl net.ipv4.icmp_echo_ignore_all; "
            "iptables-save | grep -i icmp.",
        )
    return Verdict(
        f"The UDP datagram to {first.server} reached {last}, its destination, and nothing "
        "answered: the network delivered it; the application ignored it (UDP has no "
        "handshake: a service drops what it does not understand) or its answer was never sent.",
        f"Check the application in {last} reads UDP port {first.server_port} and answers such "
        "a datagram (a DNS server answers a DNS query, not a marker).",
    )


def _node_drop(journey: Journey, facts: dict[str, NodeFacts], node, why: str, policy: str):
    """The verdict for a packet a node dropped: its rules that drop it named, when saved."""
    from podcap.path.filters import dropping_rules

    first, seen = journey.first, journey.last_seen
    known = facts.get(node or "")
    rules = []
    if known and (known.rules or known.nft):
        rules = dropping_rules(known.rules, seen.client_ip, seen.server_ip, seen.server_port,
                               journey.protocol, known.nft)  # fmt: skip
    if rules:
        named = "; ".join(rules[:3])
        which = "that rule" if len(rules) == 1 else "those rules"
        how = "iptables -D ..."
        if any(rule.startswith("table ") for rule in rules):
            how += "; nft delete rule FAMILY TABLE CHAIN handle N, N from nft -a list ruleset"
        return Verdict(
            f"{why} Its rules that drop {first.server}: {named}.",
            f"On {node}: remove or narrow {which} ({how}), or the NetworkPolicy "
            f"that made it; {policy}.",
        )
    return Verdict(
        why,
        f"On {node}: iptables-save | grep -E 'DROP|REJECT' (FORWARD, KUBE-*, cali-*) and nft "
        f"list ruleset | grep -E 'drop|reject'; {policy}.",
    )


def _between_nodes_fix(a: Point, b: Point, facts: dict[str, NodeFacts]) -> str:
    source, target = facts.get(a.node or ""), facts.get(b.node or "")
    allowed = [x for x in ((source.address if source else None),) if x]
    allowed += list(source.pod_cidrs) if source else []
    allow = ", ".join(allowed) if allowed else f"{a.node}'s subnet and its Pod CIDR"
    routed = ", ".join(target.pod_cidrs) if target and target.pod_cidrs else "its Pod CIDR"
    return (
        f"Allow {allow} into {b.node} in its security group / firewall, and check the "
        f"VPC route table sends {routed} to {b.node}."
    )


def _refused(journey: Journey, facts: dict[str, NodeFacts]) -> Verdict:
    first = journey.first
    if first.refused_by and first.refused_by not in (first.server_ip, journey.last_seen.server_ip):
        return _rejected(journey, facts)
    if journey.protocol != "tcp":
        return _datagram_refused(journey)
    port = first.server_port
    answered_at = journey.reply_last_seen
    furthest = journey.sightings[-1]
    if furthest.point.kind == "pod" and "r" in furthest.history:
        listening = furthest.point.listening
        heard = ""
        if listening is not None:
            ports = ", ".join(map(str, listening)) or "no TCP port"
            heard = f" (it listens on {ports})"
        return Verdict(
            f"{first.server} answered the SYN with a reset at {furthest.point}: nothing listens "
            f"on port {port} there{heard}.",
            f"Check the container listens on {port} (podcap inspect on the Pod, or its "
            "containerPort) and the Service's targetPort.",
        )
    where = answered_at.point if answered_at else first.point
    return Verdict(
        f"The SYN to {first.server} was answered with a reset, seen first at {where}: nothing "
        f"listens on port {port}, or a REJECT rule after {journey.last_seen.point} answers for "
        "it.",
        f"Check the server listens on {port}; on the nodes: iptables-save | grep REJECT.",
    )


def _rejected(journey: Journey, facts: dict[str, NodeFacts]) -> Verdict:
    """An ICMP unreachable from a host on the way, not the server: a REJECT rule there."""
    from podcap.path.filters import dropping_rules

    first, seen = journey.first, journey.last_seen
    sender = first.refused_by
    where = [s.point for s in journey.sightings if s.refused_by][-1]  # nearest the sender
    node = next((name for name, known in facts.items() if known.address == sender), None)
    who = f"{node} ({sender})" if node else sender
    text = (f"The {_opening(journey)} to {first.server} was rejected: an ICMP unreachable from "
            f"{who} came back (seen from {where} on): a REJECT rule there answers for the "
            "server. Refused, not silently dropped.")  # fmt: skip
    known = facts.get(node or "")
    rules = []
    if known and (known.rules or known.nft):
        rules = dropping_rules(known.rules, seen.client_ip, seen.server_ip, seen.server_port,
                               journey.protocol, known.nft)  # fmt: skip
        rules = [r for r in rules if "REJECT" in r or "reject" in r] or rules
    if rules:
        return Verdict(f"{text} Its rule: {'; '.join(rules[:3])}.",
                       f"On {node}: remove or narrow that rule, or the NetworkPolicy that made it.")  # fmt: skip
    place = f"On {node}" if node else f"On the host {sender}"
    return Verdict(text, f"{place}: iptables-save | grep REJECT; nft list ruleset | grep reject.")


def _datagram_refused(journey: Journey) -> Verdict:
    """An ICMP "destination unreachable" came back for a datagram or a ping."""
    first, furthest = journey.first, journey.sightings[-1]
    where = next((s.point for s in journey.sightings if s.refused_by), first.point)
    if journey.protocol == "icmp":
        return Verdict(
            f"The ping to {first.server} was answered with ICMP destination unreachable, seen "
            f"first at {where}: a REJECT rule or a missing route on the way.",
            "On the nodes: iptables-save | grep REJECT; ip route get " + first.server_ip + ".",
        )
    port = first.server_port
    if furthest.point.kind == "pod" and furthest.refused_by:
        return Verdict(
            f"{first.server} answered the UDP datagram with ICMP port unreachable at "
            f"{furthest.point}: nothing listens on UDP port {port} there.",
            f"Check the container listens on UDP {port} (its containerPort, protocol: UDP) and "
            "the Service's targetPort and protocol.",
        )
    return Verdict(
        f"The UDP datagram to {first.server} was answered with ICMP unreachable, seen first at "
        f"{where}: nothing listens on UDP port {port}, or a REJECT rule after "
        f"{journey.last_seen.point} answers for it.",
        f"Check the server listens on UDP {port}; on the nodes: iptables-save | grep REJECT.",
    )


def _reply_lost(journey: Journey) -> Verdict:
    first, reply = journey.first, journey.reply_last_seen
    lost = journey.reply_lost_between
    where = f", between {lost[0]} and {lost[1]}" if lost else ""
    return Verdict(
        f"{first.server} answered ({_answer(journey)} seen at {reply.point if reply else '?'}) but "
        f"the answer never reached the client{where}: the return path differs from the way "
        "in (asymmetric routing) or reverse-path filtering drops it.",
        f"Check the route back to {first.client_ip} on the way and "
        "net.ipv4.conf.*.rp_filter on the nodes (2 = loose, when routing is asymmetric).",
    )


def _answer(journey: Journey) -> str:
    return {"udp": "its answer", "icmp": "its echo reply"}.get(journey.protocol, "its SYN-ACK")


def _partial(journey: Journey) -> Verdict:
    first, loss = journey.first, journey.segments_lost()
    if loss is not None:
        passed = (f"segments of up to {loss.largest_passed} bytes of data got through"
                  if loss.largest_passed else "no data segment got through")  # fmt: skip
        return Verdict(
            f"The handshake with {first.server} passed but data did not: {passed}, while "
            f"{loss.lost} segment{'s' if loss.lost > 1 else ''} of {loss.smallest_lost} bytes or "
            f"more left {loss.sent_at} and never "
            f"reached {loss.missing_at}: an MTU black hole between them (a hop with a "
            "smaller MTU drops the large ones, and no ICMP 'fragmentation needed' comes back).",
            f"Give every hop between {loss.sent_at} and {loss.missing_at} the same MTU (the "
            "Pods' must leave room for the overlay: 50 bytes for VXLAN), let ICMP type 3 code 4 "
            "through, or clamp the MSS: iptables -t mangle -A FORWARD -p tcp --tcp-flags "
            "SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu.",
        )
    return Verdict(
        f"The handshake with {first.server} passed but data was retransmitted and the "
        "connection never closed cleanly: segments were lost on the way (only large ones: an "
        "MTU / PMTUD black hole).",
        "Compare the interfaces' MTU along the path (overlay headers take 50 bytes) and let "
        "ICMP 'fragmentation needed' through; or clamp the MSS.",
    )


def _rewriters(journey: Journey) -> str:
    """What rewrote the addresses, when the hop says: leaving the Pod's node, a source
    rewrite is masquerading; a destination rewrite there is a Service's DNAT."""
    notes = ""
    pairs = zip(journey.sightings, journey.sightings[1:], strict=False)
    for before, after in pairs:
        leaving = (before.point.kind, after.point.kind) == ("pod", "node")
        if leaving and before.client != after.client:
            notes += " Masqueraded by ip-masq-agent or the CNI (-r snat: the rule and the fix)."
        if leaving and before.server != after.server:
            notes += (" The Service's rules on the node (kube-proxy DNAT) sent it to endpoint "
                      f"{after.server}.")  # fmt: skip
    return notes
