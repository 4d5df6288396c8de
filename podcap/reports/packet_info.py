"""The packets report's ``info`` column: what Wireshark's Info column says, plus the payload.

``38878 → 9000 [PSH, ACK] Len=8 "lbtest\\r\\n"``: ports, TCP flags by name and the payload
length as Wireshark writes them, then the first payload bytes (``podcap.decode.preview``)
quoted, printable ASCII as it is and every other byte escaped, so that ``tcp contains
"lbtest"`` shows the marker without opening Wireshark. An HTTP request or status line is
shown as the line itself, as Wireshark's HTTP rows are; a DNS message as Wireshark words it
(``Standard query 0x1a2b A name``); ICMP types are named.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from podcap.decode.dns import TYPES
from podcap.decode.preview import PREVIEW_BYTES
from podcap.decode.schema import ICMP, ICMPV6, TCP, UDP

# Wireshark's names of the TCP flags, bit 0 upwards, in the order it lists them.
FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
ICMP_TYPES = {
    ICMP: {0: "Echo (ping) reply", 3: "Destination unreachable", 5: "Redirect",
           8: "Echo (ping) request", 11: "Time-to-live exceeded"},
    ICMPV6: {1: "Destination Unreachable", 2: "Packet Too Big", 3: "Time Exceeded",
             128: "Echo (ping) request", 129: "Echo (ping) reply",
             133: "Router Solicitation", 134: "Router Advertisement",
             135: "Neighbor Solicitation", 136: "Neighbor Advertisement"},
}  # fmt: skip
DNS_PORT = 53
# How Wireshark's Info names a response's rcode (nothing for NOERROR).
DNS_OUTCOMES = {1: "Format error ", 2: "Server failure ", 3: "No such name ", 4: "Not implemented ",
                5: "Refused "}  # fmt: skip
HTTP_LINE = re.compile(rb"(?:[A-Z]{3,7} \S+ HTTP/\d\.\d|HTTP/\d\.\d \d{3}[^\r\n]*)(?=\r?\n)")
ESCAPES = {ord("\r"): "\\r", ord("\n"): "\\n", ord("\t"): "\\t", ord('"'): '\\"', ord("\\"): "\\\\"}
# Every byte as it is shown inside the quotes.
BYTE_TEXT = tuple(ESCAPES.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in range(256))


def info_column(packets: pd.DataFrame) -> np.ndarray:
    """One info text per row of ``packets`` (the analysis' packet table, ``payload_head``
    included when the decoder kept it)."""
    heads = packets["payload_head"] if "payload_head" in packets else None
    columns = zip(
        packets["ip_proto"].tolist(), packets["sport"].tolist(), packets["dport"].tolist(),
        packets["tcp_flags"].tolist(), packets["payload_len"].tolist(),
        packets["icmp_type"].tolist(),
        heads.tolist() if heads is not None else [b""] * len(packets),
        strict=True,
    )  # fmt: skip
    return np.array([_info(*row) for row in columns], dtype=object)


def _info(proto, sport, dport, flags, payload_len, icmp_type, head) -> str:
    if proto == TCP:
        return _with_payload(f"{sport} → {dport} [{flag_names(flags)}] Len={payload_len}", head,
                             payload_len)  # fmt: skip
    if proto == UDP:
        dns = dns_info(head) if DNS_PORT in (sport, dport) else None
        return dns or _with_payload(f"{sport} → {dport} Len={payload_len}", head, payload_len)
    if proto in ICMP_TYPES:
        return ICMP_TYPES[proto].get(icmp_type, f"type {icmp_type}" if icmp_type >= 0 else "")
    return ""


def dns_info(head: bytes) -> str | None:
    """Wireshark's Info of a DNS message from its first bytes: ``Standard query 0x1a2b A
    name``, ``Standard query response 0x1a2b No such name A name``; None when the question
    is not whole in them (the caller shows the bytes)."""
    if len(head) < 17:
        return None
    flags = int.from_bytes(head[2:4])
    labels, at = [], 12
    while at < len(head) and 0 < head[at] < 0x40:
        labels.append(head[at + 1 : at + 1 + head[at]].decode("latin-1"))
        at += 1 + head[at]
    if at + 3 > len(head) or head[at] != 0 or (flags >> 11) & 0xF:
        return None
    qtype = int.from_bytes(head[at + 1 : at + 3])
    question = f"{TYPES.get(qtype, f'Unknown ({qtype})')} {'.'.join(labels) or '<Root>'}"
    ident = f"0x{int.from_bytes(head[0:2]):04x}"
    if not flags >> 15:
        return f"Standard query {ident} {question}"
    outcome = DNS_OUTCOMES.get(flags & 0xF, "")
    return f"Standard query response {ident} {outcome}{question}"


def flag_names(flags: int) -> str:
    """``SYN, ACK`` for SYN+ACK, as Wireshark lists them; ``<None>`` for no flag at all."""
    return ", ".join(n for bit, n in enumerate(FLAG_NAMES) if flags >> bit & 1) or "<None>"


def _with_payload(text: str, head: bytes, payload_len: int) -> str:
    if not head:
        return text
    line = HTTP_LINE.match(head)
    if line:
        return line.group().decode("latin-1")
    cut = payload_len > len(head) or len(head) == PREVIEW_BYTES
    return f'{text} "{quoted(head)}{"…" if cut else ""}"'


def quoted(data: bytes) -> str:
    """``data`` as shown between quotes: printable ASCII kept, the rest escaped (``\\r``,
    ``\\x00``)."""
    return "".join(BYTE_TEXT[b] for b in data)
