"""The node's own filter rules that would drop a packet: named in the path report's verdict
when the captures' sidecars carry the node's ``iptables-save`` (``podcap capture --node-rules``,
``podcap diagnose``).

A rule is named when it drops or rejects (``-j DROP``/``REJECT``) in the filter table and none
of its address, protocol or port matches excludes the packet; a rule with a match this reading
does not know (a negation, a set, a mark) is named too, as one that may drop it, so the reader
checks it rather than never hears of it (only when no rule surely matches); so is a FORWARD
policy of DROP.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

DROPPING = ("DROP", "REJECT")
KNOWN = {"-A", "-s", "--source", "-d", "--destination", "-p", "--protocol", "--dport",
         "--destination-port", "-j", "-m", "-i", "-o", "--comment", "--reject-with"}  # fmt: skip


def dropping_rules(
    iptables_save: str,
    src: str,
    dst: str,
    dport: int | None,
    proto: str = "tcp",
    nft_ruleset: str = "",
) -> list[str]:
    """The filter-table rules of ``iptables_save`` that drop a ``proto`` packet from ``src``
    to ``dst:dport`` (``dport`` None: a packet without ports, a ping), as their ``-A CHAIN
    ...`` lines, and those of ``nft_ruleset`` (``podcap.path.nft_rules``); when none surely
    does, those that may (a match not understood here), leaving out ``--ctstate INVALID``
    (a SYN is never)."""
    from podcap.path.nft_rules import Packet, dropping_nft_rules

    sure, maybe = dropping_nft_rules(nft_ruleset, Packet(src, dst, dport, proto))
    if re.search(r"^\*filter\n(?:(?!COMMIT).*\n)*?:FORWARD DROP\b", iptables_save, re.M):
        maybe.append(":FORWARD DROP (the filter table's FORWARD policy: what no rule accepts)")
    for line in _filter_rules(iptables_save):
        words = shlex.split(line)
        if _value(words, "-j") not in DROPPING:
            continue
        verdict = _matches(words, src, dst, dport, proto)
        if verdict is True:
            sure.append(line)
        elif verdict is None and "INVALID" not in words:
            maybe.append(line)
    return sure or maybe


def _filter_rules(text: str):
    table = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and line.startswith("-A "):
            yield line


def _value(words: list[str], *names: str) -> str | None:
    for name in names:
        if name in words:
            at = words.index(name)
            if at + 1 < len(words) and (at == 0 or words[at - 1] != "!"):
                return words[at + 1]
    return None


def _matches(words: list[str], src: str, dst: str, dport: int | None, proto: str) -> bool | None:
    """True: every match holds; False: one excludes the packet; None: one is not understood."""
    if "!" in words:
        return None
    for names, value in ((("-s", "--source"), src), (("-d", "--destination"), dst)):
        given = _value(words, *names)
        if given is not None and not _in_network(value, given):
            return False
    given = _value(words, "-p", "--protocol")
    if given is not None and given not in (proto, "all"):
        return False
    given = _value(words, "--dport", "--destination-port")
    if given is not None and (dport is None or not _in_ports(dport, given)):
        return False
    unknown = [w for w in words if w.startswith("-") and w not in KNOWN]
    return None if unknown else True


def _in_network(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return True  # a name or something unparsed: cannot exclude


def _in_ports(port: int, given: str) -> bool:
    low, _, high = given.partition(":")
    try:
        return int(low or 0) <= port <= int(high or low)
    except ValueError:
        return True
