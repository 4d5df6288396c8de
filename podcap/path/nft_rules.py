"""The node's nftables rules that would drop a packet, read from ``nft list ruleset``: the
same question ``podcap.path.filters`` answers for ``iptables-save``, for nodes whose firewall
(firewalld, kube-proxy's nftables mode, a hand-written ``nftables.conf``) is native nftables.

The tables iptables-nft keeps (``ip``/``ip6`` ``filter``, ``nat``, ``mangle``, ``raw``,
``security``) are left out: ``iptables-save`` names their rules already. A rule is named when
its verdict is ``drop`` or ``reject`` and none of its matches excludes the packet; a match
not read here (a negation, a named set, a rate limit) makes it one that may drop it, as
``filters`` does; a forward chain whose policy is ``drop`` may drop it too.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass

IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}
DROPPING = ("drop", "reject")
PASSING = ("accept", "jump", "goto", "return", "continue", "queue")
SKIPPED = {"counter": 0, "packets": 1, "bytes": 1, "comment": 1, "log": 0, "prefix": 1,
           "iifname": 1, "oifname": 1, "iif": 1, "oif": 1, "with": 0}  # fmt: skip
TRANSPORTS = ("tcp", "udp", "sctp", "udplite")
SET = re.compile(r"\{\s*([^{}]*?)\s*\}")


@dataclass(frozen=True)
class Packet:
    """What the verdict knows of the packet that was lost."""

    src: str
    dst: str
    dport: int | None  # None: no ports (a ping)
    proto: str  # "tcp", "udp", "icmp"


def dropping_nft_rules(ruleset: str, packet: Packet) -> tuple[list[str], list[str]]:
    """(the rules that surely drop ``packet``, those that may), each as ``table FAMILY NAME
    chain CHAIN: RULE``."""
    sure, maybe = [], []
    for where, rule, hooked in _rules(ruleset):
        if rule.startswith("type "):
            # A Pod's packets cross the node's forward hook (a NodePort's, its input: the
            # packet was lost before the node's own capture there, not inside the node).
            if re.search(r"\bhook forward\b.*\bpolicy drop\b", rule):
                maybe.append(f"{where}: policy drop")
            continue
        words = _words(rule)
        verdict = next((w for w in words if w in DROPPING + PASSING), None)
        if verdict not in DROPPING:
            continue
        matched = _matches(words, packet)
        if matched is True and hooked:
            sure.append(f"{where}: {_shown(rule)}")
        elif matched is not False:
            maybe.append(f"{where}: {_shown(rule)}")
    return sure, maybe


def _rules(ruleset: str):
    """(``table FAMILY NAME chain CHAIN``, rule line, whether the chain hooks into the
    packet path itself) of every chain of every table that is not iptables-nft's. A rule of a
    chain only jumped to may drop the packet, never surely: the jump may not apply."""
    table = chain = None
    hooked = False
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("table "):
            _, family, name = (line.removesuffix("{").split() + ["", ""])[:3]
            ours = not (family in ("ip", "ip6") and name in IPTABLES_TABLES)
            table, chain = (f"table {family} {name}" if ours else None), None
        elif line.startswith("chain ") and table:
            chain, hooked = line.removesuffix("{").split()[1], False
        elif line == "}":
            chain, table = (None, table) if chain else (None, None)
        elif table and chain and line:
            hooked |= line.startswith("type ") and " hook " in line
            yield f"{table} chain {chain}", line, hooked


def _words(rule: str) -> list[str]:
    """The rule's words, a set ``{ 53, 5353 }`` as one word ``{53,5353}``."""
    rule = SET.sub(lambda m: "{" + re.sub(r"\s*,\s*", ",", m.group(1)) + "}", rule)
    try:
        return shlex.split(rule)
    except ValueError:
        return rule.split()


def _shown(rule: str) -> str:
    return re.sub(r"\s*counter packets \d+ bytes \d+", "", rule)


def _matches(words: list[str], packet: Packet) -> bool | None:
    """True: every match holds; False: one excludes the packet; None: one is not read here."""
    unknown, at = False, 0
    while at < len(words):
        word, rest = words[at], words[at + 1 :]
        if word in DROPPING:
            break
        if word in SKIPPED:
            at += 1 + SKIPPED[word]
            continue
        verdict, used = _one_match(word, rest, packet)
        if verdict is False:
            return False
        unknown |= verdict is None
        at += 1 + used
    return None if unknown else True


def _one_match(word: str, rest: list[str], packet: Packet) -> tuple[bool | None, int]:
    """Whether the match starting at ``word`` holds, and how many words after it it used."""
    negated = bool(rest) and rest[0] == "!="
    if negated or (len(rest) > 1 and rest[1] == "!="):
        return None, 3
    if word in ("ip", "ip6") and len(rest) >= 2 and rest[0] in ("saddr", "daddr"):
        address = packet.src if rest[0] == "saddr" else packet.dst
        return _in_any_network(address, rest[1]), 2
    if word in ("ip", "ip6") and len(rest) >= 2 and rest[0] in ("protocol", "nexthdr"):
        return packet.proto in _values(rest[1]), 2
    if word == "meta" and len(rest) >= 2 and rest[0] in ("l4proto", "protocol"):
        return (packet.proto in _values(rest[1])) if rest[0] == "l4proto" else None, 2
    if word in (*TRANSPORTS, "th") and len(rest) >= 2 and rest[0] in ("dport", "sport"):
        if word != "th" and word != packet.proto:
            return False, 2
        if rest[0] == "sport" or packet.dport is None:
            return (None if packet.dport is not None else False), 2
        return _in_ports(packet.dport, rest[1]), 2
    if word in ("icmp", "icmpv6") and rest:
        return (None if packet.proto == "icmp" else False), 2
    if word == "ct" and len(rest) >= 2 and rest[0] == "state":
        return "new" in _values(rest[1]), 2  # the lost packet opens its connection
    return None, 0


def _values(word: str) -> set[str]:
    return set(word.strip("{}").split(","))


def _in_any_network(address: str, given: str) -> bool | None:
    if given.startswith("@"):
        return None  # a named set: not read here
    try:
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(v, strict=False) for v in _values(given))
    except ValueError:
        return None


def _in_ports(port: int, given: str) -> bool | None:
    if given.startswith("@"):
        return None
    for value in _values(given):
        low, _, high = value.partition("-")
        try:
            if int(low) <= port <= int(high or low):
                return True
        except ValueError:
            return None  # a service name
    return False
