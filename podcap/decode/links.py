"""The rarer link types: where each packet's IP header starts, and which IP it is.

Ethernet, Linux cooked (v1, v2), raw IP and BSD loopback are decoded in
:class:`podcap.decode.layers.Decoder` itself; these come from other places an operator
captures: ``tcpdump -i nflog`` on a node (``iptables -j NFLOG``, LINKTYPE_NFLOG), PPP and
Cisco HDLC serial links, SLIP and ARCNET. Each function takes the offsets where the link header
starts and the captured ends, and returns ``(ip_offset, ethertype)`` arrays (ethertype 0:
nothing this decoder follows, the packet stays counted and undecoded). Vectorised like the
rest: an NFLOG packet's TLVs are walked for all packets at once, a bounded number of steps.
"""

from __future__ import annotations

import numpy as np

from podcap import pcapfile
from podcap.decode.bytesview import ByteView

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD

# PPP protocol numbers (RFC 1661, 1332, 5072) for IPv4 and IPv6.
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
# SLIP in pcap: a 16-byte pseudo-header (direction, then the compressed-header bytes).
SLIP_HEADER = 16
# NFLOG (libpcap's pcap-linktype.html): family (AF_INET 2, AF_INET6 10), version, resource id,
# then TLVs whose length and type are in the capturing host's byte order; the packet itself
# is the NFULA_PAYLOAD TLV, from its IP header on. Lengths count the 4-byte TLV header and
# the next TLV starts at a 4-byte boundary.
NFLOG_HEADER, NFULA_PAYLOAD, NFLOG_MAX_TLVS = 4, 9, 32
AF_INET, AF_INET6 = 2, 10
# ARCNET protocol IDs: RFC 1201's IP and IPv6 (RFC 2497), RFC 1051's older IP.
ARCNET_IP_1201, ARCNET_IPV6, ARCNET_IP_1051 = 0xD4, 0xC4, 0xF0


def ppp(view: ByteView, off: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PPP (LINKTYPE_PPP, 9): address 0xff and control 0x03 unless compressed away (ACFC),
    then a 2-byte protocol, or 1 byte when its low bit is set (PFC)."""
    framed = view.u16(off) == 0xFF03
    at = np.where(framed, off + 2, off)
    short = (view.u8(at) & 1) == 1
    protocol = np.where(short, view.u8(at), view.u16(at))
    ethertype = np.where(protocol == PPP_IPV4, ETH_IPV4,
                         np.where(protocol == PPP_IPV6, ETH_IPV6, 0))  # fmt: skip
    ip_off = at + np.where(short, 1, 2)
    return ip_off, np.where(ip_off < end, ethertype, 0)


def cisco_hdlc(view: ByteView, off: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cisco HDLC (LINKTYPE_C_HDLC, 104): address, control, then an Ethernet type."""
    return off + 4, np.where(off + 4 < end, view.u16(off + 2), 0)


def slip(view: ByteView, off: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SLIP (LINKTYPE_SLIP, 8): the pseudo-header, then the IP datagram."""
    at = off + SLIP_HEADER
    return at, np.where(at < end, _ethertype_from_version(view, at), 0)


def nflog(view: ByteView, off: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NFLOG (LINKTYPE_NFLOG, 239): the NFULA_PAYLOAD TLV's value, found by walking every
    packet's TLVs together; a packet whose TLVs do not lead there stays undecoded."""
    big = _nflog_big_endian(view, off, end)
    position, payload = off + NFLOG_HEADER, np.full(len(off), -1, np.int64)
    for _ in range(NFLOG_MAX_TLVS):
        walking = (payload < 0) & (position + 4 <= end)
        if not walking.any():
            break
        length = np.where(big, view.u16(position), view.u16(position, big=False))
        kind = np.where(big, view.u16(position + 2), view.u16(position + 2, big=False)) & 0x7FFF
        sound = walking & (length >= 4) & (position + length <= end)
        payload = np.where(sound & (kind == NFULA_PAYLOAD), position + 4, payload)
        position = np.where(sound, position + ((length + 3) & ~3), end)
    found = payload >= 0
    family = view.u8(off)
    ethertype = np.where(family == AF_INET, ETH_IPV4, np.where(family == AF_INET6, ETH_IPV6, 0))
    return np.where(found, payload, off), np.where(found & (payload < end), ethertype, 0)


def arcnet(view: ByteView, off: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ARCNET as Linux captures it (LINKTYPE_ARCNET_LINUX, 129): source, destination, a 2-byte
    offset, the protocol ID. RFC 1201's IP and IPv6 then carry a split flag and a sequence
    number (4 more after an exception packet's 0xFF flag); RFC 1051's IP follows at once."""
    protocol = view.u8(off + 4)
    exception = view.u8(off + 5) == 0xFF
    rfc1201 = off + np.where(exception, 12, 8)
    ip_off = np.where(protocol == ARCNET_IP_1051, off + 5, rfc1201)
    ethertype = np.where(np.isin(protocol, (ARCNET_IP_1201, ARCNET_IP_1051)), ETH_IPV4,
                         np.where(protocol == ARCNET_IPV6, ETH_IPV6, 0))  # fmt: skip
    return ip_off, np.where(ip_off < end, ethertype, 0)


def _nflog_big_endian(view: ByteView, off: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The TLVs' byte order, per packet: the capturing host's. A first TLV length that reads
    as sound (4 or more, within the packet) little-endian is taken as little-endian (x86,
    arm64), else big-endian."""
    first = off + NFLOG_HEADER
    little = view.u16(first, big=False)
    return ~((little >= 4) & (first + little <= end))


def _ethertype_from_version(view: ByteView, off: np.ndarray) -> np.ndarray:
    version = view.u8(off) >> 4
    return np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))


def undecoded_warnings(linktypes: np.ndarray, present: list[int]) -> list[str]:
    """One warning naming the link types the decoder does not know and how many packets are
    on them: counted and timed, not decoded (tshark's engine may know them)."""
    unknown = [lt for lt in present if lt not in pcapfile.LINKTYPE_NAMES]
    if not unknown:
        return []
    count = int(np.isin(linktypes, unknown).sum())
    names = ", ".join(pcapfile.linktype_name(lt) for lt in unknown)
    return [f"{count} packets on link type {names} are counted but not decoded "
            "(--engine tshark decodes what Wireshark knows)"]  # fmt: skip
