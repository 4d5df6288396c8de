"""The pcap and pcapng file formats: magic numbers, header layouts, block, option and link types.

Written down once for everything that reads or writes capture files: the decoder
(``podcap.decode.framing``), the capture stream that copies tcpdump's output home
(``podcap.capture.stream``), the merger of per-Pod files (``podcap.capture.merge``) and the
empty file the filter check hands tshark (``podcap.dfilter.tshark_fallback``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# --- classic pcap (libpcap): a 24-byte file header, then a 16-byte header per record ---------
PCAP_HEADER_LEN = 24
# seconds, fraction of a second, captured length, original (wire) length
PCAP_RECORD_HEADER_LEN = 16
PCAP_CAPLEN_AT = 8  # where a record header holds its captured length
PCAP_MAGIC_MICROS = 0xA1B2C3D4
PCAP_MAGIC_NANOS = 0xA1B23C4D
# The file's first four bytes -> (struct byte order, timestamp fraction units per second).
PCAP_MAGICS = {
    struct.pack(order + "I", magic): (order, per_second)
    for magic, per_second in ((PCAP_MAGIC_MICROS, 1_000_000), (PCAP_MAGIC_NANOS, 1_000_000_000))
    for order in "<>"
}
# No real capture has a record this large (libpcap's maximum snap length is 256 KiB); a larger
# length means a corrupt or hostile header, which must not make us allocate gigabytes.
MAX_RECORD = 16 * 1024 * 1024


@dataclass(frozen=True)
class PcapHeader:
    """A classic pcap file header, as far as podcap reads it."""

    byte_order: str  # struct prefix of every header in the file: "<" or ">"
    fractions_per_second: int  # 10**6 (microsecond file) or 10**9 (nanosecond file)
    snaplen: int
    linktype: int  # as written: the upper bits may carry FCS flags (LINKTYPE_MASK)


def parse_pcap_header(raw: bytes) -> PcapHeader | None:
    """The pcap file header at the start of ``raw``; None when ``raw`` does not start with one
    (too short, or another magic)."""
    if len(raw) < PCAP_HEADER_LEN or raw[:4] not in PCAP_MAGICS:
        return None
    order, per_second = PCAP_MAGICS[raw[:4]]
    snaplen, linktype = struct.unpack_from(order + "II", raw, 16)
    return PcapHeader(order, per_second, snaplen, linktype)


def pcap_header(snaplen: int, linktype: int) -> bytes:
    """A little-endian, microsecond pcap file header (version 2.4, UTC)."""
    return struct.pack("<IHHiIII", PCAP_MAGIC_MICROS, 2, 4, 0, 0, snaplen, linktype)


# --- pcapng: typed blocks, each ``type, length, body, length`` ---------------------------------
PCAPNG_SHB = 0x0A0D0D0A  # section header block; also the file's first four bytes
PCAPNG_MAGIC = struct.pack("<I", PCAPNG_SHB)  # the same bytes in either byte order
BYTE_ORDER_MAGIC = 0x1A2B3C4D  # in the section header: tells the section's byte order
BLOCK_IDB, BLOCK_OPB, BLOCK_SPB, BLOCK_EPB = (
    1,
    2,
    3,
    6,
)  # interface, obsolete/simple/enhanced packet
OPT_END, OPT_COMMENT = 0, 1
# Interface description options.
IF_NAME, IF_DESCRIPTION, IF_TSRESOL, IF_TSOFFSET = 2, 3, 9, 14


def section_byte_order(raw: bytes, at: int) -> str | None:
    """The byte order ("<" or ">") of the section whose header block starts at ``raw[at]``;
    None when its byte-order magic is cut off or wrong."""
    if at + 12 > len(raw):
        return None
    magic = raw[at + 8 : at + 12]
    return next((o for o in "<>" if magic == struct.pack(o + "I", BYTE_ORDER_MAGIC)), None)


# --- link types: the LINKTYPE_* value of a pcap header or a pcapng interface ------------------
NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
EN10MB = 1  # Ethernet
SLIP = 8  # serial line IP, behind a 16-byte pseudo-header
PPP = 9  # point-to-point, with or without address/control and a compressed protocol
RAW_BSD = 12  # DLT_RAW as some BSD writers store it
RAW_BSD_OPENBSD = 14
RAW = 101  # raw IPv4/IPv6, version nibble decides (Calico tunl0, WireGuard, tun)
LOOP = 108  # OpenBSD loopback: address family in network byte order
C_HDLC = 104  # Cisco HDLC: address, control, Ethernet type
ARCNET_LINUX = 129  # ARCNET as Linux captures it: addresses, a 2-byte offset, protocol ID
LINUX_SLL = 113  # Linux cooked v1, `tcpdump -i any` with older libpcap
IPV4 = 228
IPV6 = 229
NFLOG = 239  # `tcpdump -i nflog:N`: what iptables -j NFLOG hands over, as TLVs
LINUX_SLL2 = 276  # Linux cooked v2, `tcpdump -i any` with libpcap >= 1.10

LINKTYPE_NAMES = {
    NULL: "NULL",
    EN10MB: "EN10MB",
    SLIP: "SLIP",
    PPP: "PPP",
    C_HDLC: "C_HDLC",
    ARCNET_LINUX: "ARCNET_LINUX",
    NFLOG: "NFLOG",
    RAW_BSD: "RAW",
    RAW_BSD_OPENBSD: "RAW",
    RAW: "RAW",
    LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL",
    IPV4: "IPV4",
    IPV6: "IPV6",
    LINUX_SLL2: "LINUX_SLL2",
}

# The upper bits of the pcap link-type field carry FCS length flags (libpcap LT_LINKTYPE).
LINKTYPE_MASK = 0x0FFFFFFF


def linktype_name(linktype: int) -> str:
    """Short name as tcpdump prints it, e.g. 'EN10MB'; unknown ones as 'LINKTYPE_147'."""
    return LINKTYPE_NAMES.get(linktype, f"LINKTYPE_{linktype}")
