"""Vectorised protocol decoding: link layer, IPv4/IPv6, TCP/UDP/ICMP and overlays.

Each function takes the packets it applies to as an index array plus the byte offset where
its layer starts in each of them, reads its header fields for all of them with one numpy
gather per field, writes the columns, and hands the packets on to the next layer grouped by
protocol. A field that lies past the captured bytes (snap length) keeps its sentinel.

Overlays recurse: a VXLAN/Geneve/IP-in-IP/GRE packet first gets its outer addresses copied to
the outer columns, then its inner headers are decoded over the same columns, so ``src``/``dst``
end up holding the Pod addresses.
"""

import socket
import sys

import numpy as np

from podcap import pcapfile
from podcap.decode import links, tunnels
from podcap.decode.bytesview import ByteView, be16, be32
from podcap.decode.columns import Columns
from podcap.decode.schema import GRE, ICMP, ICMPV6, IPIP, IPV6_IN_IP, TCP, UDP

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_TRANSPARENT_BRIDGING = 0x6558  # Ethernet inside GRE / Geneve
IPV6_EXTENSIONS = (0, 43, 60, 135, 139, 140)  # hop-by-hop, routing, dest opts, mobility, HIP, shim6
IPV6_FRAGMENT, IPV6_AH, IPV6_NO_NEXT = 44, 51, 59
MAX_IPV6_EXTENSIONS = 8
VXLAN_PORTS = (4789, 8472)  # IANA port, and the Linux kernel default used by flannel and Cilium
GENEVE_PORT = 6081
MAX_OVERLAY_DEPTH = 4
ECHO_TYPES = (0, 8, 128, 129)  # ICMP echo reply and request, ICMPv6's
BSD_AF_INET = 2
BSD_AF_INET6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, macOS
# Every link type podcap.pcapfile names is decoded (Decoder.link); others are counted only.
DECODED_LINKTYPES = frozenset(pcapfile.LINKTYPE_NAMES)
RARE_LINKS = {pcapfile.PPP: links.ppp, pcapfile.C_HDLC: links.cisco_hdlc,
              pcapfile.SLIP: links.slip, pcapfile.NFLOG: links.nflog,
              pcapfile.ARCNET_LINUX: links.arcnet}  # fmt: skip


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values, index of each value among them).

    pandas' hash factorize when pandas is loaded (3x numpy's sort-based unique on 150,000
    addresses); numpy otherwise, because the decoder must not import pandas: a helper
    process decodes while the caller imports it (podcap.decode.split)."""
    pd = sys.modules.get("pandas")
    if pd is None:
        return np.unique(values, return_inverse=True)
    inverse, uniques = pd.factorize(values)
    return uniques, inverse


class Decoder:
    """Decodes the packets of one chunk into a :class:`Columns`."""

    def __init__(self, view: ByteView, cols: Columns, end: np.ndarray, wire_end: np.ndarray):
        self.view = view
        self.cols = cols
        self.end = end  # absolute end of each packet's captured bytes
        self.wire_end = wire_end  # where the packet would end had nothing been cut

    # ---- link layer -------------------------------------------------------------------
    def link(self, data_off: np.ndarray, linktype: np.ndarray) -> None:
        for lt in np.unique(linktype):
            idx = np.flatnonzero(linktype == lt)
            off = data_off[idx]
            lt = int(lt)
            if lt == pcapfile.EN10MB:
                self.ethernet(idx, off, self.wire_end[idx], 0)
            elif lt == pcapfile.LINUX_SLL:
                self.cols.pkt_type[idx] = self.view.u16(off)
                self.ip(idx, off + 16, self.view.u16(off + 14), self.wire_end[idx], 0)
            elif lt == pcapfile.LINUX_SLL2:
                self.cols.if_index[idx] = self.view.u32(off + 4)
                self.cols.pkt_type[idx] = self.view.u8(off + 10)
                self.ip(idx, off + 20, self.view.u16(off), self.wire_end[idx], 0)
            elif lt in (pcapfile.RAW, pcapfile.RAW_BSD, pcapfile.RAW_BSD_OPENBSD):
                self.ip(idx, off, self._ethertype_from_version(off), self.wire_end[idx], 0)
            elif lt == pcapfile.IPV4:
                self.ip(idx, off, np.full(len(idx), ETH_IPV4), self.wire_end[idx], 0)
            elif lt == pcapfile.IPV6:
                self.ip(idx, off, np.full(len(idx), ETH_IPV6), self.wire_end[idx], 0)
            elif lt in (pcapfile.NULL, pcapfile.LOOP):
                self.ip(idx, off + 4, self._bsd_family(off, lt), self.wire_end[idx], 0)
            elif lt in RARE_LINKS:
                ip_off, ethertype = RARE_LINKS[lt](self.view, off, self.end[idx])
                self.ip(idx, ip_off, ethertype, self.wire_end[idx], 0)
            # Other link types keep ip_version 0: counted, timed, never decoded.

    def _ethertype_from_version(self, off: np.ndarray) -> np.ndarray:
        version = self.view.u8(off) >> 4
        return np.where(version == 4, ETH_IPV4, np.where(version == 6, ETH_IPV6, 0))

    def _bsd_family(self, off: np.ndarray, lt: int) -> np.ndarray:
        # NULL stores the family in the writer's byte order; accept either.
        big = self.view.u32(off, True)
        family = (
            big if lt == pcapfile.LOOP else np.where(big > 0xFFFF, self.view.u32(off, False), big)
        )
        v6 = np.isin(family, BSD_AF_INET6)
        return np.where(family == BSD_AF_INET, ETH_IPV4, np.where(v6, ETH_IPV6, 0))

    def ethernet(self, idx: np.ndarray, off: np.ndarray, wire_end: np.ndarray, depth: int) -> None:
        view, end = self.view, self.end[idx]
        # VLAN tags, MPLS, PPPoE, VN-tag, LLC/SNAP: framing on the way to IP.
        ethertype, l3 = tunnels.l2_shims(view, view.u16(off + 12), off + 14, end)
        ethertype = np.where(off + 14 <= end, ethertype, 0)
        self.ip(idx, l3, ethertype, wire_end, depth)

    # ---- network layer ----------------------------------------------------------------
    def ip(self, idx, off, ethertype, wire_end, depth) -> None:
        version = self.view.u8(off) >> 4
        v4 = (ethertype == ETH_IPV4) & (version == 4)
        v6 = (ethertype == ETH_IPV6) & (version == 6)
        if v4.any():
            self.ipv4(idx[v4], off[v4], wire_end[v4], depth)
        if v6.any():
            self.ipv6(idx[v6], off[v6], wire_end[v6], depth)

    def ipv4(self, idx, off, wire_end, depth) -> None:
        cols = self.cols
        ok = off + 20 <= self.end[idx]
        header = self.view.rows(off, 20)  # one gather for the whole fixed header
        ihl = (header[:, 0] & 0x0F).astype(np.int64) * 4
        total = be16(header, 2)
        # A total length shorter than the header is no IP packet (tshark: "Bogus IP length").
        ok &= (ihl >= 20) & ((total == 0) | (total >= ihl))
        if not ok.all():
            idx, off, wire_end, ihl, header = idx[ok], off[ok], wire_end[ok], ihl[ok], header[ok]
            total = total[ok]
        cols.ip_version[idx] = 4
        cols.ip_id[idx] = be16(header, 4)
        cols.ttl[idx] = header[:, 8]
        proto = header[:, 9].astype(np.int64)
        cols.ip_proto[idx] = proto
        cols.src[idx] = self._ipv4_codes(header[:, 12:16])
        cols.dst[idx] = self._ipv4_codes(header[:, 16:20])
        # Total length 0 is what TSO/GSO/BIG TCP super-packets carry: the frame length rules;
        # a total beyond the frame as it was on the wire is cut to it, as tshark does.
        ip_end = np.where(total == 0, wire_end, np.minimum(off + total, wire_end))
        first_fragment = (be16(header, 6) & 0x1FFF) == 0
        if not first_fragment.all():
            idx, off, ihl, proto, ip_end = (
                a[first_fragment] for a in (idx, off, ihl, proto, ip_end)
            )
        self.transport(idx, off + ihl, proto, ip_end, depth)

    def ipv6(self, idx, off, wire_end, depth) -> None:
        view, cols = self.view, self.cols
        ok = off + 40 <= self.end[idx]
        idx, off, wire_end = idx[ok], off[ok], wire_end[ok]
        cols.ip_version[idx] = 6
        cols.ttl[idx] = view.u8(off + 7)
        cols.src[idx] = self._ipv6_codes(view.rows(off + 8, 16))
        cols.dst[idx] = self._ipv6_codes(view.rows(off + 24, 16))
        length = view.u16(off + 4)
        # Payload length 0 is a jumbogram (BIG TCP): the frame length rules.
        ip_end = np.where(length == 0, wire_end, np.minimum(off + 40 + length, wire_end))
        proto, l4, decodable = self._skip_ipv6_extensions(idx, off + 40, view.u8(off + 6))
        cols.ip_proto[idx] = proto
        self.transport(idx[decodable], l4[decodable], proto[decodable], ip_end[decodable], depth)

    def _skip_ipv6_extensions(self, idx, pos, next_header):
        """Follow the extension-header chain; returns (transport proto, its offset, decodable)."""
        view, end = self.view, self.end[idx]
        proto = next_header.astype(np.int64)
        decodable = np.ones(len(idx), dtype=bool)
        for _ in range(MAX_IPV6_EXTENSIONS):
            ext = np.isin(proto, IPV6_EXTENSIONS + (IPV6_FRAGMENT, IPV6_AH)) & decodable
            if not ext.any():
                break
            at = pos[ext]
            readable = at + 8 <= end[ext]
            size = (view.u8(at + 1).astype(np.int64) + 1) * 8
            size = np.where(proto[ext] == IPV6_AH, (view.u8(at + 1).astype(np.int64) + 2) * 4, size)
            size = np.where(proto[ext] == IPV6_FRAGMENT, 8, size)
            # Only the first fragment (offset 0) carries the transport header.
            later_fragment = (proto[ext] == IPV6_FRAGMENT) & ((view.u16(at + 2) >> 3) != 0)
            decodable[ext] = readable & ~later_fragment
            proto[ext] = np.where(readable, view.u8(at), proto[ext])
            pos[ext] = at + size
        decodable &= ~np.isin(proto, IPV6_EXTENSIONS + (IPV6_FRAGMENT, IPV6_AH, IPV6_NO_NEXT))
        return proto, pos, decodable

    def _ipv4_codes(self, rows: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(rows).view(">u4")[:, 0].astype(np.uint32)
        uniq, inverse = _factorize(values)
        table = self.cols.strings.address_codes(uniq.tolist(), socket.AF_INET)
        return table[inverse]

    def _ipv6_codes(self, rows: np.ndarray) -> np.ndarray:
        halves = np.ascontiguousarray(rows).view(">u8").astype(np.uint64)
        high_uniq, high = _factorize(halves[:, 0])
        low_uniq, low = _factorize(halves[:, 1])
        pairs, inverse = _factorize(high.astype(np.int64) * len(low_uniq) + low)
        addresses = (
            int(high_uniq[p // len(low_uniq)]) << 64 | int(low_uniq[p % len(low_uniq)])
            for p in pairs
        )
        table = self.cols.strings.address_codes(addresses, socket.AF_INET6)
        return table[inverse]

    # ---- transport layer --------------------------------------------------------------
    def transport(self, idx, l4, proto, ip_end, depth) -> None:
        for number, handler in (
            (TCP, self.tcp),
            (UDP, self.udp),
            (ICMP, self.icmp),
            (ICMPV6, self.icmp),
        ):
            sel = proto == number
            if sel.any():
                handler(idx[sel], l4[sel], ip_end[sel], depth)
        if depth >= MAX_OVERLAY_DEPTH:
            return
        for number, ethertype in ((IPIP, ETH_IPV4), (IPV6_IN_IP, ETH_IPV6)):
            sel = proto == number
            if sel.any():
                self._enter_overlay(idx[sel], "ipip")
                self.ip(
                    idx[sel], l4[sel], np.full(int(sel.sum()), ethertype), ip_end[sel], depth + 1
                )
        sel = proto == GRE
        if sel.any():
            self.gre(idx[sel], l4[sel], ip_end[sel], depth)

    def _set_payload(self, idx, start, ip_end) -> None:
        cols, end = self.cols, self.end[idx]
        cols.payload_len[idx] = np.maximum(ip_end - start, 0)
        captured = start <= end
        cols.payload_start[idx] = np.where(captured, start, -1)
        cols.payload_end[idx] = np.where(captured, np.minimum(ip_end, end), -1)

    def tcp(self, idx, l4, ip_end, depth) -> None:
        cols, end = self.cols, self.end[idx]
        cols.l4_start[idx] = l4
        # The fixed header plus the 12 option bytes Linux sends on every segment.
        header = self.view.rows(l4, 32)
        has_ports = l4 + 4 <= end
        cols.sport[idx] = np.where(has_ports, be16(header, 0), -1)
        cols.dport[idx] = np.where(has_ports, be16(header, 2), -1)
        # The fixed header must lie inside the IP packet and the captured bytes alike, or tshark
        # reads the ports only (no flags, no sequence numbers, no stream).
        full = l4 + 20 <= np.minimum(end, ip_end)
        if not full.all():
            idx, l4, ip_end, header, end = (
                idx[full],
                l4[full],
                ip_end[full],
                header[full],
                end[full],
            )
        cols.tcp_seq[idx] = be32(header, 4)
        cols.tcp_ack[idx] = be32(header, 8)
        offset_and_flags = be16(header, 12)
        size = (offset_and_flags >> 12) * 4
        # A header length under 20 is bogus: tshark stops after the sequence number and the
        # length, and counts the payload from that length.
        sound = size >= 20
        cols.tcp_flags[idx] = np.where(sound, offset_and_flags & 0x0FFF, 0)
        cols.tcp_win[idx] = np.where(sound, be16(header, 14), cols.tcp_win[idx])
        cols.tcp_ack[idx] = np.where(sound, cols.tcp_ack[idx], -1)
        self._set_payload(idx, l4 + size, ip_end)
        opts_end = np.minimum(l4 + size, end)
        # Fast path: NOP, NOP, timestamps at option offset 0 (Linux data segments).
        usual = (be32(header, 20) == 0x0101080A) & (l4 + 32 <= opts_end)
        cols.tcp_tsval[idx[usual]] = be32(header[usual], 24)
        other = (size > 20) & ~usual
        if other.any():
            cols.tcp_tsval[idx[other]] = self._tcp_tsval(l4[other] + 20, opts_end[other])

    def _tcp_tsval(self, pos: np.ndarray, opts_end: np.ndarray) -> np.ndarray:
        """Walk the TCP options of many packets in lock step looking for kind 8 (timestamps)."""
        view = self.view
        tsval = np.full(len(pos), -1, dtype=np.int64)
        active = np.flatnonzero(pos < opts_end)
        pos = pos.copy()
        while len(active):
            at = pos[active]
            kind = view.u8(at)
            length = np.where(kind == 1, 1, view.u8(at + 1).astype(np.int64))
            found = (kind == 8) & (length == 10) & (at + 10 <= opts_end[active])
            tsval[active[found]] = view.u32(at[found] + 2)
            pos[active] = at + length
            # Stop at end-of-options, a malformed length, the timestamp, or the header end.
            keep = (kind != 0) & (length >= 1) & ((kind == 1) | (length >= 2)) & ~found
            active = active[keep & (pos[active] < opts_end[active])]
        return tsval

    def udp(self, idx, l4, ip_end, depth) -> None:
        view, cols, end = self.view, self.cols, self.end[idx]
        cols.l4_start[idx] = l4
        has_ports = l4 + 4 <= end
        sport = np.where(has_ports, view.u16(l4), -1)
        dport = np.where(has_ports, view.u16(l4 + 2), -1)
        cols.sport[idx], cols.dport[idx] = sport, dport
        full = l4 + 8 <= end
        self._set_payload(idx[full], l4[full] + 8, ip_end[full])
        if depth >= MAX_OVERLAY_DEPTH:
            return
        payload = l4 + 8
        room = end - payload
        vxlan = full & (np.isin(dport, VXLAN_PORTS) | np.isin(sport, VXLAN_PORTS)) & (room >= 22)
        vxlan &= (view.u8(payload) & 0x08) != 0  # the I flag: a valid VNI follows
        if vxlan.any():
            self._enter_overlay(idx[vxlan], "vxlan")
            self.ethernet(idx[vxlan], payload[vxlan] + 8, ip_end[vxlan], depth + 1)
        self._udp_tunnels(idx, payload, ip_end, full, sport, dport, depth)
        geneve = full & ((dport == GENEVE_PORT) | (sport == GENEVE_PORT)) & (room >= 8)
        geneve &= (view.u8(payload) >> 6) == 0  # version 0
        if geneve.any():
            options = (view.u8(payload[geneve]) & 0x3F).astype(np.int64) * 4
            self._inner_by_ethertype(
                idx[geneve],
                payload[geneve] + 8 + options,
                view.u16(payload[geneve] + 2),
                ip_end[geneve],
                depth,
                "geneve",
            )

    def _udp_tunnels(self, idx, payload, ip_end, full, sport, dport, depth) -> None:
        """GTP-U (overlay ``gtp``), AYIYA (``ayiya``) and GRE in UDP (``gre``):
        podcap.decode.tunnels."""
        on = lambda port: full & ((dport == port) | (sport == port))  # noqa: E731
        gtp = on(tunnels.GTPU_PORT) & (payload + 8 <= self.end[idx])
        if gtp.any():
            inner, ethertype = tunnels.gtpu(self.view, payload[gtp], self.end[idx[gtp]])
            self._inner_by_ethertype(idx[gtp], inner, ethertype, ip_end[gtp], depth, "gtp")
        ayiya = on(tunnels.AYIYA_PORT) & (payload + 8 <= self.end[idx])
        if ayiya.any():
            inner, ethertype = tunnels.ayiya(self.view, payload[ayiya], self.end[idx[ayiya]])
            self._inner_by_ethertype(idx[ayiya], inner, ethertype, ip_end[ayiya], depth, "ayiya")
        gre = on(tunnels.GRE_IN_UDP_PORT) & (payload + 4 <= self.end[idx])
        if gre.any():
            self.gre(idx[gre], payload[gre], ip_end[gre], depth)

    def icmp(self, idx, l4, ip_end, depth) -> None:
        end = self.end[idx]
        readable = l4 + 1 <= end
        kind = self.view.u8(l4[readable])
        self.cols.icmp_type[idx[readable]] = kind
        full = l4 + 8 <= end
        echo = full[readable] & np.isin(kind, ECHO_TYPES)
        self.cols.icmp_id[idx[readable][echo]] = self.view.u16(l4[readable][echo] + 4)
        self._set_payload(idx[full], l4[full] + 8, ip_end[full])

    def gre(self, idx, l4, ip_end, depth) -> None:
        view, end = self.view, self.end[idx]
        flags = view.u16(l4)
        version = flags & 0x7
        # Checksum/routing (C or R) add 4 bytes, key (K) 4, sequence (S) 4.
        header = 4 + 4 * (((flags & 0xC000) != 0).astype(np.int64))
        header += 4 * ((flags & 0x2000) != 0) + 4 * ((flags & 0x1000) != 0)
        ok = (version == 0) & (l4 + header <= end)
        inner, protocol = tunnels.wccp_redirect(view, l4 + header, view.u16(l4 + 2))
        inner, protocol = tunnels.aruba_wlan(view, inner, protocol, end)
        self._inner_by_ethertype(idx[ok], inner[ok], protocol[ok], ip_end[ok], depth, "gre")

    def _inner_by_ethertype(self, idx, off, ethertype, ip_end, depth, name) -> None:
        known = np.isin(ethertype, (ETH_TRANSPARENT_BRIDGING, ETH_IPV4, ETH_IPV6))
        idx, off, ethertype, ip_end = idx[known], off[known], ethertype[known], ip_end[known]
        if not len(idx):
            return
        self._enter_overlay(idx, name)
        bridged = ethertype == ETH_TRANSPARENT_BRIDGING
        if bridged.any():
            self.ethernet(idx[bridged], off[bridged], ip_end[bridged], depth + 1)
        if (~bridged).any():
            self.ip(idx[~bridged], off[~bridged], ethertype[~bridged], ip_end[~bridged], depth + 1)

    def _enter_overlay(self, idx: np.ndarray, name: str) -> None:
        cols = self.cols
        # The outermost tunnel names the overlay and the node addresses; nested ones don't.
        first = idx[cols.encap[idx] == 0]
        cols.encap[first] = cols.strings.code(name)
        cols.outer_src[first] = cols.src[first]
        cols.outer_dst[first] = cols.dst[first]
        cols.reset_inner(idx)
