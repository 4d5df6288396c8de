"""Packet and capture-file builders for the decoder tests, and a tshark runner to compare with.
(Plain helpers, no pytest fixtures: the test modules import them.)

Packets are assembled byte by byte with struct so each edge case (a link type, an overlay,
an extension header, a cut packet) is exactly what the test says it is.
"""

import socket
import struct
from pathlib import Path

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ip_bytes(address: str) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return socket.inet_pton(family, address)


def ethernet(payload: bytes, ethertype: int = ETH_IPV4, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b""
    next_type = ethertype
    # Build the tag stack inside out: the outermost tag's TPID is the frame's ethertype.
    tpids = [0x88A8] + [0x8100] * (len(vlans) - 1) if len(vlans) > 1 else [0x8100] * len(vlans)
    for tpid, vid in reversed(list(zip(tpids, vlans, strict=True))):
        tags = struct.pack("!HH", vid, next_type) + tags
        next_type = tpid
    return MAC_A + MAC_B + struct.pack("!H", next_type) + tags + payload


def ipv4(src, dst, proto, payload, total_length=None, ttl=64, ident=1, frag=0) -> bytes:
    total = 20 + len(payload) if total_length is None else total_length
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, ident, frag, ttl, proto, 0, ip_bytes(src), ip_bytes(dst)
    )
    return header + payload


def ipv6(src, dst, next_header, payload, hop_limit=64, extensions=b"", payload_length=None):
    length = len(extensions) + len(payload) if payload_length is None else payload_length
    header = struct.pack("!IHBB", 0x60000000, length, next_header, hop_limit)
    return header + ip_bytes(src) + ip_bytes(dst) + extensions + payload


def ipv6_extension(next_header: int, body: bytes = b"\x00" * 6) -> bytes:
    """Hop-by-hop / routing / destination-options shape: next header, length in 8-byte units."""
    assert (len(body) + 2) % 8 == 0
    return struct.pack("!BB", next_header, (len(body) + 2) // 8 - 1) + body


def ipv6_fragment(next_header: int, offset: int = 0, more: bool = False) -> bytes:
    return struct.pack("!BBHI", next_header, 0, (offset << 3) | int(more), 0x1234)


def tcp(sport, dport, flags=0x18, payload=b"", seq=1000, ack=2000, win=502, tsval=None) -> bytes:
    options = b""
    if tsval is not None:
        options = b"\x01\x01" + struct.pack("!BBII", 8, 10, tsval, 7)
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (offset << 12) | flags, win, 0, 0)
    return header + options + payload


def tcp_syn_options(sport, dport, tsval) -> bytes:
    """A SYN with the Linux option layout: MSS, SACK-permitted, timestamps, NOP, window scale."""
    options = struct.pack("!BBH", 2, 4, 1460) + b"\x04\x02" + struct.pack("!BBII", 8, 10, tsval, 0)
    options += b"\x01" + struct.pack("!BBB", 3, 3, 7)
    header = struct.pack("!HHIIHHHH", sport, dport, 1, 0, (10 << 12) | 0x02, 64240, 0, 0)
    return header + options


def udp(sport, dport, payload=b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(kind=8, payload=b"ping", ident=1) -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, ident, 1) + payload


def vxlan(inner_frame: bytes, vni=1) -> bytes:
    return struct.pack("!BBHI", 0x08, 0, 0, vni << 8) + inner_frame


def geneve(inner: bytes, protocol=0x6558, options=b"") -> bytes:
    return struct.pack("!BBHI", len(options) // 4, 0, protocol, 5 << 8) + options + inner


def gre(inner: bytes, protocol=ETH_IPV4, key=None) -> bytes:
    flags = 0x2000 if key is not None else 0
    return (
        struct.pack("!HH", flags, protocol)
        + (b"" if key is None else struct.pack("!I", key))
        + inner
    )


def wlan_data(ip_packet: bytes, ethertype=ETH_IPV4, qos=False, four_addresses=False) -> bytes:
    """An 802.11 data frame (no FCS) carrying ``ip_packet`` behind LLC/SNAP, as Aruba's access
    points tunnel their clients' frames to the controller in GRE."""
    control = bytes([0x88 if qos else 0x08, 0x03 if four_addresses else 0x01])  # to the DS
    stations = bytes.fromhex("020000000001020000000002020000000003")
    header = control + b"\x00\x00" + stations + b"\x10\x00"
    header += (bytes.fromhex("020000000004") if four_addresses else b"") + (
        b"\x00\x00" if qos else b""
    )
    return header + b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", ethertype) + ip_packet


def sll(ip_packet: bytes, protocol=ETH_IPV4) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_A + b"\0\0", protocol) + ip_packet


def sll2(ip_packet: bytes, protocol=ETH_IPV4, ifindex=3) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, 1, 0, 6, MAC_A + b"\0\0") + ip_packet


def ppp(ip_packet: bytes, v6: bool = False, compressed: bool = False) -> bytes:
    """A PPP frame: address/control and a 2-byte protocol, or (ACFC + PFC) 1 byte only."""
    if compressed:
        return bytes([0x57 if v6 else 0x21]) + ip_packet
    return b"\xff\x03" + struct.pack("!H", 0x0057 if v6 else 0x0021) + ip_packet


def cisco_hdlc(ip_packet: bytes, v6: bool = False) -> bytes:
    return b"\x0f\x00" + struct.pack("!H", ETH_IPV6 if v6 else ETH_IPV4) + ip_packet


def slip(ip_packet: bytes, sent: bool = False) -> bytes:
    """libpcap's SLIP pseudo-header: the direction, then 15 bytes of compressed-header info."""
    return bytes([1 if sent else 0]) + bytes(15) + ip_packet


def nflog(ip_packet: bytes, v6: bool = False, prefix: bytes = b"podcap-drop") -> bytes:
    """What `tcpdump -i nflog` writes: the NFLOG header, then TLVs in the host's (here
    little-endian) byte order: the packet header, the rule's prefix, then the payload."""

    def tlv(kind: int, value: bytes) -> bytes:
        body = struct.pack("<HH", 4 + len(value), kind) + value
        return body + bytes(-len(body) % 4)

    header = struct.pack("!BBH", 10 if v6 else 2, 0, 5)
    packet_header = struct.pack("!HBB", ETH_IPV6 if v6 else ETH_IPV4, 3, 0)  # hook LOCAL_OUT
    return header + tlv(1, packet_header) + tlv(10, prefix + b"\0") + tlv(9, ip_packet)


def arcnet(ip_packet: bytes, v6: bool = False, rfc1051: bool = False) -> bytes:
    """Linux's ARCNET header (source, destination, offset, protocol ID), then RFC 1201's split
    flag and sequence number, or (RFC 1051) nothing more."""
    if rfc1051:
        return bytes([1, 2, 0, 0, 0xF0]) + ip_packet
    return bytes([1, 2, 0, 0, 0xC4 if v6 else 0xD4, 0, 0, 1]) + ip_packet


def bsd_null(ip_packet: bytes, family=2) -> bytes:
    return struct.pack("<I", family) + ip_packet


def http_request(uri="/mytest", host="svc.example", method="GET", extra=b"") -> bytes:
    return f"{method} {uri} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode() + extra


def write_pcap(path: Path, linktype: int, packets, nano=False, big_endian=False, snaplen=262144):
    """packets: iterable of bytes, or (ts, bytes) or (ts, bytes, wire length)."""
    endian = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, item in enumerate(packets):
        ts, data, wire = _unpack_item(i, item)
        seconds = int(ts)
        fraction = round((ts - seconds) * (1e9 if nano else 1e6))
        out.append(struct.pack(endian + "IIII", seconds, fraction, len(data), wire) + data)
    path.write_bytes(b"".join(out))
    return path


def _unpack_item(i, item):
    if isinstance(item, bytes):
        return 1_700_000_000 + i * 0.001, item, len(item)
    if len(item) == 2:
        return item[0], item[1], len(item[1])
    return item


def pcapng_block(block_type: int, body: bytes, endian="<") -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", block_type, length) + body + struct.pack(endian + "I", length)


def pcapng_option(code: int, value: bytes, endian="<") -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_shb(endian="<") -> bytes:
    return pcapng_block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)


def pcapng_idb(linktype: int, tsresol: int | None = None, endian="<", snaplen=0) -> bytes:
    options = b""
    if tsresol is not None:
        options = pcapng_option(9, bytes([tsresol]), endian) + pcapng_option(0, b"", endian)
    return pcapng_block(1, struct.pack(endian + "HHI", linktype, 0, snaplen) + options, endian)


def pcapng_epb(iface: int, ticks: int, data: bytes, wire=None, endian="<") -> bytes:
    header = struct.pack(
        endian + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wire or len(data)
    )
    return pcapng_block(6, header + data, endian)


def pcapng_spb(data: bytes, endian="<") -> bytes:
    return pcapng_block(3, struct.pack(endian + "I", len(data)) + data, endian)


def mpls(payload: bytes, labels: tuple[int, ...] = (16, 1024)) -> bytes:
    """An MPLS label stack (the last entry has the bottom-of-stack bit), then the payload."""
    stack = b"".join(
        struct.pack("!I", label << 12 | (1 << 8 if i == len(labels) - 1 else 0) | 64)
        for i, label in enumerate(labels)
    )
    return stack + payload


def pppoe_session(ip_packet: bytes, v6: bool = False, session: int = 0x1234) -> bytes:
    """A PPPoE session frame's payload: the 6-byte header, the PPP protocol, the IP packet."""
    body = struct.pack("!H", 0x0057 if v6 else 0x0021) + ip_packet
    return struct.pack("!BBHH", 0x11, 0, session, len(body)) + body


def vntag(ip_packet: bytes, ethertype: int = ETH_IPV4) -> bytes:
    """What follows EtherType 0x8926: the 4-byte VN-tag, then the real EtherType."""
    return struct.pack("!IH", 0x80010002, ethertype) + ip_packet


def llc_snap_frame(ip_packet: bytes, ethertype: int = ETH_IPV4) -> bytes:
    """An 802.3 frame (a length where the EtherType would be) carrying LLC/SNAP."""
    llc = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack("!H", ethertype) + ip_packet
    return MAC_A + MAC_B + struct.pack("!H", len(llc)) + llc


def ayiya(ip_packet: bytes, v6: bool = True, identity_power: int = 4, signature_words: int = 5):
    """An AYIYA header (identity 2**power bytes, signature in 4-byte words), then the packet."""
    head = bytes([identity_power << 4 | 1, signature_words << 4 | 2, 1 << 4 | 1, 41 if v6 else 4])
    identity, signature = bytes(2**identity_power), bytes(signature_words * 4)
    return head + struct.pack("!I", 1700000000) + identity + signature + ip_packet


def gtpu(ip_packet: bytes, teid: int = 7, sequence: int | None = None) -> bytes:
    """A GTPv1-U T-PDU: 8 bytes (version 1, PT 1, type 255, length, TEID), 4 more with S."""
    extra = b"" if sequence is None else struct.pack("!HBB", sequence, 0, 0)
    flags = 0x30 | (0x02 if sequence is not None else 0)
    return struct.pack("!BBHI", flags, 0xFF, len(extra) + len(ip_packet), teid) + extra + ip_packet
