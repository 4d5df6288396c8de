"""Evaluate parsed filter nodes over one file's packet table: one numpy bool per packet.

Everything is vectorised: a comparison looks at a whole column at once, and address
comparisons work on the distinct values of the column, of which a capture has few.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

import numpy as np

from podcap.decode.schema import TCP, UDP
from podcap.dfilter.fields import FIELDS, UDP_OVERLAYS
from podcap.dfilter.lexer import NotNative
from podcap.dfilter.nodes import And, Compare, Exists, Literal, Node, Not, Or

if TYPE_CHECKING:
    import pandas as pd

_HEX_BYTES = re.compile(r"[0-9A-Fa-f]{2}([:.\-][0-9A-Fa-f]{2})*")


def check_native(node: Node) -> None:
    """Raise NotNative unless every field and value in ``node`` is one podcap evaluates."""
    if isinstance(node, And | Or):
        check_native(node.left)
        check_native(node.right)
    elif isinstance(node, Not):
        check_native(node.operand)
    elif isinstance(node, Exists):
        _field(node.field)
    elif node.field in ("tcp", "udp"):
        if node.op != "contains":
            raise NotNative(f"{node.field} {node.op}")
        payload_bytes(node.value)
    else:
        _comparator(node)


def needles(node: Node) -> set[bytes]:
    """The byte strings ``tcp contains``/``udp contains`` need the decoder to scan for."""
    if isinstance(node, And | Or):
        return needles(node.left) | needles(node.right)
    if isinstance(node, Not):
        return needles(node.operand)
    if isinstance(node, Compare) and node.op == "contains" and node.field in ("tcp", "udp"):
        return {payload_bytes(node.value)}
    return set()


def evaluate(node: Node, packets: pd.DataFrame, contains: dict[bytes, np.ndarray]) -> np.ndarray:
    """Boolean mask over ``packets``; raise NotNative when this file needs tshark."""
    if isinstance(node, And):
        return evaluate(node.left, packets, contains) & evaluate(node.right, packets, contains)
    if isinstance(node, Or):
        return evaluate(node.left, packets, contains) | evaluate(node.right, packets, contains)
    if isinstance(node, Not):
        return ~evaluate(node.operand, packets, contains)
    if isinstance(node, Exists):
        occurrences = _field(node.field).occurrences(packets)
        return np.logical_or.reduce([present for _, present in occurrences])
    if node.field in ("tcp", "udp"):
        return _payload_contains(node, packets, contains)
    return _comparator(node)(packets)


def payload_bytes(value: Literal) -> bytes:
    """The bytes of a ``contains`` value: a "string" or a byte string such as 6c:62:74."""
    if value.quoted:
        # Text is UTF-8; \xhh escapes >= 0x80 were kept as surrogates for their raw byte.
        return value.text.encode("utf-8", "surrogateescape")
    if _HEX_BYTES.fullmatch(value.text):
        return bytes.fromhex(re.sub(r"[:.\-]", "", value.text))
    raise NotNative(f"contains value {value.text!r}")


def _field(name: str):
    field = FIELDS.get(name.lower())
    if field is None:
        raise NotNative(f"field {name}")
    return field


def _payload_contains(node: Compare, packets: pd.DataFrame, contains) -> np.ndarray:
    hits = contains[payload_bytes(node.value)]
    proto = packets["ip_proto"].to_numpy()
    if node.field == "tcp":
        return hits & (proto == TCP)
    # The outer UDP of VXLAN/Geneve carries the whole inner packet, payload included.
    return hits & ((proto == UDP) | packets["encap"].isin(UDP_OVERLAYS).to_numpy())


def _comparator(node: Compare):
    """Build the function packets -> mask for one field comparison, checking it is native."""
    field = _field(node.field)
    if field.kind in ("ipv4", "ipv6"):
        test = _address_test(node, field.kind)
    elif field.kind == "int":
        test = _int_test(node)
    elif field.kind == "str":
        test = _string_test(node)
    else:
        raise NotNative(f"{node.field} {node.op}")

    def mask(packets: pd.DataFrame) -> np.ndarray:
        hit = np.zeros(len(packets), bool)
        present_any = np.zeros(len(packets), bool)
        for values, present in field.occurrences(packets):
            present_any |= present
            hit |= present & test(values)
        # Wireshark 4: "a != b" means no occurrence equals b (and the field is present).
        return present_any & ~hit if node.op == "!=" else hit

    return mask


def _address_test(node: Compare, kind: str):
    if node.op not in ("==", "!="):
        raise NotNative(f"{node.field} {node.op}")
    try:
        network = ipaddress.ip_network(node.value.text, strict=False)
    except ValueError as exc:
        raise NotNative(f"address {node.value.text!r}") from exc
    if f"ipv{network.version}" != kind:
        raise NotNative(f"address {node.value.text!r} for {node.field}")

    def test(values: np.ndarray) -> np.ndarray:
        import pandas as pd  # here: compiling a filter must not import pandas (podcap.analysis.run)

        codes, uniques = pd.factorize(values)
        inside = np.array([_in_network(u, network) for u in uniques] + [False], bool)
        return inside[codes]

    return test


def _in_network(text: str, network) -> bool:
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False


def _int_test(node: Compare):
    text = node.value.text.lower()
    if node.value.quoted or node.op in ("contains", "matches"):
        raise NotNative(f"{node.field} {node.op} {node.value.text!r}")
    if text in ("true", "false"):
        number = int(text == "true")
    else:
        try:
            number = int(text, 0)
        except ValueError as exc:
            raise NotNative(f"number {node.value.text!r}") from exc
    if node.field.endswith("port") and not 0 <= number <= 65535:
        raise NotNative(f"port {number}")  # tshark words the error ("too big for this field")
    op = "==" if node.op == "!=" else node.op
    return {
        "==": lambda v: v == number,
        "<": lambda v: v < number,
        ">": lambda v: v > number,
        "<=": lambda v: v <= number,
        ">=": lambda v: v >= number,
    }[op]


def _series(values) -> pd.Series:
    import pandas as pd  # here: compiling a filter must not import pandas (podcap.analysis.run)

    return pd.Series(values)


def _string_test(node: Compare):
    text = node.value.text
    if node.op in ("==", "!="):
        return lambda v: v == text
    if node.op == "contains":
        return lambda v: _series(v).str.contains(text, regex=False).to_numpy()
    if node.op == "matches":
        pattern = _regex(text)
        return lambda v: _series(v).str.contains(pattern, regex=True).to_numpy()
    raise NotNative(f"{node.field} {node.op}")


def _regex(text: str) -> re.Pattern:
    # Wireshark's "matches" is case-insensitive unless the pattern starts with (?-i).
    flags = re.IGNORECASE
    if text.startswith("(?-i)"):
        text, flags = text[5:], 0
    try:
        return re.compile(text, flags)
    except re.error as exc:
        raise NotNative(f"regular expression {text!r}") from exc
