"""A capture filter (BPF, tcpdump's ``tcp port 80``) typed where a display filter belongs:
recognised, and spelled as the display filter that selects the same packets.

Only the forms people type from habit: ``[tcp|udp] [src|dst] port N``, ``[src|dst] host
ADDR``, ``[src|dst] net CIDR``, ``src|dst ADDR``, protocol names, and ``and``/``or``/``not``
between them. Anything else is not a capture filter this module recognises (None).
"""

from __future__ import annotations

import re

DIRECTIONS = ("src", "dst")
PROTOCOLS = ("tcp", "udp")
CONNECTIVES = {"and": "&&", "&&": "&&", "or": "||", "||": "||", "not": "!", "!": "!"}
ALONE = {"tcp", "udp", "icmp", "ip", "ip6", "arp", "icmp6"}
BPF_WORDS = {"port", "host", "net", *DIRECTIONS}
_TOKEN = re.compile(r"\(|\)|&&|\|\||!|[^\s()!&|]+")


def as_display_filter(text: str) -> str | None:
    """The display filter meaning what the capture filter ``text`` means, or None when
    ``text`` is not a capture filter of the recognised forms."""
    tokens = _TOKEN.findall(text.lower())
    if not BPF_WORDS & set(tokens):
        return None
    out: list[str] = []
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if token in ("(", ")"):
            out.append(token)
            position += 1
        elif token in CONNECTIVES:
            out.append(CONNECTIVES[token])
            position += 1
        else:
            primitive = _primitive(tokens, position)
            if primitive is None:
                return None
            words, used = primitive
            out.append(words)
            position += used
    return " ".join(out).replace("( ", "(").replace(" )", ")").replace("! ", "!")


def _primitive(tokens: list[str], start: int) -> tuple[str, int] | None:
    """One primitive at ``start``: its display-filter text and how many tokens it took."""
    rest = tokens[start:]
    proto = rest[0] if rest and rest[0] in PROTOCOLS else None
    at = 1 if proto else 0
    direction = rest[at] if len(rest) > at and rest[at] in DIRECTIONS else None
    at += 1 if direction else 0
    kind = rest[at] if len(rest) > at and rest[at] in ("port", "host", "net") else None
    at += 1 if kind else 0
    if kind is None and direction is None:
        return (proto, 1) if proto else ((rest[0], 1) if rest and rest[0] in ALONE else None)
    if len(rest) <= at:
        return None
    value = rest[at]
    if kind == "port":
        return (_port(proto, direction, value), at + 1) if value.isdigit() else None
    if proto or kind not in (None, "host", "net"):
        return None
    field = {"src": "ip.src", "dst": "ip.dst", None: "ip.addr"}[direction]
    return f"{field} == {value}", at + 1


def _port(proto: str | None, direction: str | None, number: str) -> str:
    suffix = {"src": "srcport", "dst": "dstport", None: "port"}[direction]
    if proto:
        return f"{proto}.{suffix} == {number}"
    return f"(tcp.{suffix} == {number} || udp.{suffix} == {number})"
