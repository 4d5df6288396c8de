"""Link-layer header types (LINKTYPE_* values as written in pcap/pcapng files)."""

NULL = 0  # BSD loopback: 4-byte address family in the writer's byte order
EN10MB = 1  # Ethernet
RAW_BSD = 12  # DLT_RAW as some BSD writers store it
RAW_BSD_OPENBSD = 14
RAW = 101  # raw IPv4/IPv6, version nibble decides (Calico tunl0, WireGuard, tun)
LOOP = 108  # OpenBSD loopback: address family in network byte order
LINUX_SLL = 113  # Linux cooked v1, `tcpdump -i any` with older libpcap
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276  # Linux cooked v2, `tcpdump -i any` with libpcap >= 1.10

NAMES = {
    NULL: "NULL",
    EN10MB: "EN10MB",
    RAW_BSD: "RAW",
    RAW_BSD_OPENBSD: "RAW",
    RAW: "RAW",
    LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL",
    IPV4: "IPV4",
    IPV6: "IPV6",
    LINUX_SLL2: "LINUX_SLL2",
}

SUPPORTED = frozenset(NAMES)

# The upper bits of the pcap link-type field carry FCS length flags (libpcap LT_LINKTYPE).
LINKTYPE_MASK = 0x0FFFFFFF


def name(linktype: int) -> str:
    """Short name as tcpdump prints it, e.g. 'EN10MB'; unknown ones as 'LINKTYPE_147'."""
    return NAMES.get(linktype, f"LINKTYPE_{linktype}")
