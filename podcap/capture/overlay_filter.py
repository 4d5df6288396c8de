"""The tcpdump filter for a node's NIC that keeps one Pod's packets, plain or inside an overlay.

Pure: Pod IPs in, a BPF expression out (``--also-node`` captures the node's NIC with it).
"""

from __future__ import annotations

import ipaddress

# Where an overlay puts the Pod's own IP header, as tcpdump filter offsets. VXLAN: the UDP
# header (8), VXLAN's (8) and the inner Ethernet header (14) come first. Geneve: its 8 bytes
# are followed by options, whose length (in 4-byte words) is in the low 6 bits of its first
# byte, then Ethernet (protocol 0x6558) or the IP header itself (protocol = its ethertype).
# IP-in-IP (and IPv6 in IPv4): after the outer header, whatever its length.
GENEVE_OPTIONS = "((udp[8] & 0x3f) * 4)"
OUTER_IP_LENGTH = "((ip[0] & 0x0f) * 4)"
# Per IP version: its ethertype, its protocol number inside IPv4, where its source and
# destination addresses sit in its header.
INNER_HEADERS = {4: ("0x0800", 4, (12, 16)), 6: ("0x86dd", 41, (8, 24))}


def _overlays(ethertype: str) -> tuple[tuple[str, str], ...]:
    """(what carries an inner IP header of this ethertype, where that header starts)."""
    return (
        (f"(udp port 4789 or udp port 8472) and udp[28:2] = {ethertype}", "30"),
        (f"udp port 6081 and udp[10:2] = 0x6558 and udp[28 + {GENEVE_OPTIONS}:2] = {ethertype}",
         f"30 + {GENEVE_OPTIONS}"),
        (f"udp port 6081 and udp[10:2] = {ethertype}", f"16 + {GENEVE_OPTIONS}"),
    )  # fmt: skip


def _address_at(proto: str, at: str, address: bytes) -> str:
    """``address`` at offset ``at`` of ``proto``: 4 bytes at a time, all a filter compares."""
    words = [address[i : i + 4] for i in range(0, len(address), 4)]
    return " and ".join(
        f"{proto}[{at} + {i * 4}:4] = 0x{word.hex()}" for i, word in enumerate(words)
    )


def pod_traffic_filter(pod_ips: list[str]) -> str:
    """A tcpdump filter for a node's NIC: the Pod's packets, as they are or inside an overlay.

    On an overlay (flannel/Calico VXLAN on 8472/4789, Cilium/OVN Geneve on 6081, Calico
    IP-in-IP) the NIC sees node addresses outside and the Pod's only inside, which ``host``
    never reads; so the inner IPv4 or IPv6 header is read too (under an IPv4 outer header)."""
    clauses = [f"host {ip}" for ip in pod_ips]
    addresses = [ipaddress.ip_address(ip) for ip in pod_ips]
    for version, (ethertype, ip_proto, fields) in INNER_HEADERS.items():
        packed = [a.packed for a in addresses if a.version == version]
        if not packed:
            continue
        clauses += [
            f"{carrier} and ({_any_address_at('udp', at, fields, packed)})"
            for carrier, at in _overlays(ethertype)
        ]
        inside_ip = _any_address_at("ip", OUTER_IP_LENGTH, fields, packed)
        clauses.append(f"ip proto {ip_proto} and ({inside_ip})")
    return " or ".join(f"({clause})" for clause in clauses) or "ip"


def _any_address_at(proto: str, header: str, fields, packed: list[bytes]) -> str:
    """Any of the ``packed`` addresses in any of the ``fields`` of the header at ``header``."""
    return " or ".join(
        f"({_address_at(proto, f'{header} + {field}', address)})"
        for address in packed
        for field in fields
    )
