"""Shims between Ethernet and IP, and tunnels carried in UDP that VXLAN and Geneve are not.

Between the Ethernet header and IP a frame may carry, besides VLAN tags, an MPLS label stack,
a PPPoE session header (with its PPP protocol), a VN-tag, or (an 802.3 frame, a length where
the EtherType would be) LLC/SNAP: :func:`l2_shims` steps over any mix of them and says what is
inside. These are framing, not overlays: no outer IP header, so ``encap`` stays empty.

Carried in UDP: GTP-U (2152; the user plane of a mobile core, which runs on Kubernetes too),
GRE in UDP (4754, RFC 8086) and AYIYA (5072). :func:`gtpu` finds a T-PDU's inner IP packet; the decoder
follows it as an overlay named ``gtp``, the outer (node) addresses kept.
"""

from __future__ import annotations

import numpy as np

from podcap.decode.bytesview import ByteView

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TYPES = (0x8100, 0x88A8, 0x9100, 0x9200)  # 802.1Q, 802.1ad and the old QinQ values
MPLS_TYPES = (0x8847, 0x8848)  # unicast, multicast
PPPOE_SESSION = 0x8864
VN_TAG = 0x8926
PPP_TO_ETHERTYPE = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}
LLC_SNAP = 0xAAAA03  # DSAP, SSAP, control (UI)
MAX_ETHERNET_LENGTH = 1500  # a value up to this is an 802.3 length, not an EtherType
MAX_SHIMS, MAX_MPLS_LABELS = 6, 8
GTPU_PORT, GRE_IN_UDP_PORT, AYIYA_PORT = 2152, 4754, 5072
GTP_TPDU = 0xFF
WCCP = 0x883E  # in GRE
# Aruba access points tunnel clients' 802.11 frames to their controller in GRE, with these
# protocol types (Wireshark 4.0's list; its newer 0x9000 it does not take).
ARUBA_GRE = np.arange(0x8200, 0x8380, 0x10)
LLC_SNAP = 0xAAAA03  # DSAP, SSAP, control; then a zero OUI and the ethertype
MAX_GTP_EXTENSIONS = 4


def l2_shims(
    view: ByteView, ethertype: np.ndarray, l3: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(ethertype, offset)`` of what follows every shim at ``l3``: IPv4 or IPv6 where the
    shims lead there, else the last EtherType seen (0 where a shim was cut short)."""
    lengths = np.flatnonzero((ethertype <= MAX_ETHERNET_LENGTH) & (l3 + 8 <= end))
    if len(lengths):  # rare: read only those frames
        at = l3[lengths]
        snap = lengths[((view.u16(at) << 8) | view.u8(at + 2)) == LLC_SNAP]
        ethertype, l3 = ethertype.copy(), l3.copy()
        ethertype[snap], l3[snap] = view.u16(l3[snap] + 6), l3[snap] + 8
    for _ in range(MAX_SHIMS):
        vlan = np.isin(ethertype, VLAN_TYPES) & (l3 + 4 <= end)
        tag = (ethertype == VN_TAG) & (l3 + 6 <= end)
        pppoe = (ethertype == PPPOE_SESSION) & (l3 + 8 <= end)
        mpls = np.isin(ethertype, MPLS_TYPES)
        if not (vlan.any() or tag.any() or pppoe.any() or mpls.any()):
            break
        ethertype = np.where(vlan, view.u16(l3 + 2), ethertype)
        ethertype = np.where(tag, view.u16(l3 + 4), ethertype)
        ethertype = np.where(pppoe, _ppp_ethertype(view.u16(l3 + 6)), ethertype)
        l3 = l3 + np.where(vlan, 4, 0) + np.where(tag, 6, 0) + np.where(pppoe, 8, 0)
        if mpls.any():
            inner, after = _mpls(view, l3[mpls], end[mpls])
            ethertype[mpls], l3[mpls] = inner, after
    return ethertype, l3


def _ppp_ethertype(protocol: np.ndarray) -> np.ndarray:
    out = np.zeros(len(protocol), np.int64)
    for ppp, ethertype in PPP_TO_ETHERTYPE.items():
        out[protocol == ppp] = ethertype
    return out


def _mpls(view: ByteView, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Past the label stack (to the bottom-of-stack entry): the payload's offset, and IPv4 or
    IPv6 by its first nibble, as Wireshark decides (0: something else, a pseudowire)."""
    at = at.copy()
    bottom = np.zeros(len(at), bool)
    for _ in range(MAX_MPLS_LABELS):
        live = ~bottom & (at + 4 <= end)
        if not live.any():
            break
        bottom |= live & ((view.u8(at + 2) & 1) == 1)
        at = np.where(live, at + 4, at)
    version = view.u8(at) >> 4
    ethertype = np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))
    return np.where(bottom & (at < end), ethertype, 0), at


def wccp_redirect(
    view: ByteView, inner: np.ndarray, protocol: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GRE protocol 0x883E, a WCCP redirect (a cache engine's traffic): an IPv4 packet, behind
    the 4-byte WCCPv2 redirect header unless one starts right away (WCCPv1), as Wireshark
    tells them apart. Other protocols pass as they are."""
    wccp = protocol == WCCP
    if not wccp.any():
        return inner, protocol
    header = wccp & ((view.u8(inner) >> 4) != 4)
    return np.where(header, inner + 4, inner), np.where(wccp, ETH_IPV4, protocol)


def aruba_wlan(
    view: ByteView, inner: np.ndarray, protocol: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Aruba's GRE (``ARUBA_GRE``): an 802.11 frame without FCS. A data frame that is not
    encrypted carries LLC/SNAP, whose ethertype names the packet after it; its header is 24
    bytes, 30 with a fourth address (to and from the DS), 2 more for QoS, 4 more for an HT
    control field (QoS with the order bit). Other protocols pass as they are."""
    aruba = np.isin(protocol, ARUBA_GRE)
    if not aruba.any():
        return inner, protocol
    kind, flags = view.u8(inner).astype(np.int64), view.u8(inner + 1).astype(np.int64)
    qos = (kind & 0x80) != 0
    header = 24 + 6 * ((flags & 0x03) == 0x03) + 2 * qos + 4 * (qos & ((flags & 0x80) != 0))
    snap = inner + header
    data = ((kind & 0x0C) == 0x08) & ((flags & 0x40) == 0) & (snap + 8 <= end)
    data &= ((view.u32(snap) >> 8) == LLC_SNAP) & ((view.u32(snap + 2) & 0xFFFFFF) == 0)
    ethertype = np.where(data, view.u16(snap + 6), 0)
    return np.where(aruba, snap + 8, inner), np.where(aruba, ethertype, protocol)


def ayiya(view: ByteView, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AYIYA (Anything In Anything, 5072; SixXS's IPv6 tunnels through NAT): 8 bytes (the
    identity's length as a power of two, the signature's in 4-byte words, the next header,
    an epoch time), the identity, the signature, then the packet. ``(inner, ethertype)``."""
    identity = 1 << (view.u8(at) >> 4).astype(np.int64)
    signature = (view.u8(at + 1) >> 4).astype(np.int64) * 4
    inner = at + 8 + identity + signature
    next_header = view.u8(at + 3)
    ethertype = np.where(next_header == 41, ETH_IPV6, np.where(next_header == 4, ETH_IPV4, 0))
    return inner, np.where(inner < end, ethertype, 0)


def gtpu(view: ByteView, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For GTP headers at ``at``: ``(inner offset, ethertype)`` of a version 1 T-PDU's IP
    packet (after the optional sequence, N-PDU and extension headers); ethertype 0 for any
    other message (echo, error indication) or a header cut short."""
    flags = view.u8(at)
    tpdu = ((flags >> 5) == 1) & ((flags & 0x10) != 0) & (view.u8(at + 1) == GTP_TPDU)
    optional = (flags & 0x07) != 0
    inner = at + 8 + np.where(optional, 4, 0)
    next_type = np.where((flags & 0x04) != 0, view.u8(at + 11), 0)
    for _ in range(MAX_GTP_EXTENSIONS):  # each: length in 4-byte units, ..., next type
        more = (next_type != 0) & (inner < end)
        if not more.any():
            break
        length = view.u8(inner).astype(np.int64) * 4
        tpdu &= ~more | (length > 0)
        next_type = np.where(more & (length > 0), view.u8(inner + length - 1), 0)
        inner = np.where(more, inner + length, inner)
    version = view.u8(inner) >> 4
    ethertype = np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))
    return inner, np.where(tpdu & (inner < end), ethertype, 0)
