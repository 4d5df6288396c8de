"""The packet table: the one DataFrame every analyze step reads.

``podcap.decode.read_capture(path)`` returns a ``Capture`` whose ``packets`` DataFrame has one
row per packet, in file order, with exactly these columns. "Inner" means after overlay
decapsulation: for a VXLAN/Geneve/IP-in-IP/GRE packet, ``src``/``dst``/ports are the Pod
addresses and ``outer_src``/``outer_dst`` the node addresses. Missing values use the sentinel
given (never NaN), so the columns keep compact integer dtypes. Text columns ("str" below) are
pandas categoricals whose categories are the strings the column holds, sorted: a few thousand
addresses and URIs over millions of packets, 4 bytes a row, and ``==``, ``isin``, ``.str``
and ``groupby`` work on them as on text (``astype(str)`` gives plain text).

Wireshark field equivalents are given so filters and tests can map one to the other. The
numbers ``ip_proto`` and ``tcp_flags`` hold are named here too, for every step that reads them.
"""

# ``ip_proto``: IANA protocol numbers (IPV6_IN_IP: an IPv6 packet carried in IP, as IPIP is IPv4).
ICMP, IPIP, TCP, UDP, IPV6_IN_IP, GRE, ICMPV6, SCTP = 1, 4, 6, 17, 41, 47, 58, 132
PROTO_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMPV6: "icmpv6", SCTP: "sctp", GRE: "gre"}
# ``tcp_flags``: the TCP header's flag bits, bit 0 upwards.
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# name: (dtype, sentinel, meaning / Wireshark field)
PACKET_COLUMNS: dict[str, tuple[str, object, str]] = {
    "frame": ("int64", None, "1-based packet number (frame.number)"),
    "ts": ("float64", None, "capture time, seconds since the epoch (frame.time_epoch)"),
    "iface": ("int32", 0, "pcapng interface index; 0 for pcap (frame.interface_id)"),
    "linktype": ("int32", None, "link type of the packet's interface (DLT/LINKTYPE number)"),
    "caplen": ("int32", None, "bytes captured (frame.cap_len)"),
    "length": ("int32", None, "bytes on the wire (frame.len)"),
    "ip_version": ("int8", 0, "4 or 6 for the inner IP header; 0 when there is none"),
    "src": ("str", "", "inner source address (ip.src / ipv6.src)"),
    "dst": ("str", "", "inner destination address (ip.dst / ipv6.dst)"),
    "ip_proto": ("int16", -1, "inner transport protocol number, 6 tcp, 17 udp, 1 icmp, 58 icmpv6"),
    "ip_id": ("int32", -1, "IPv4 identification; -1 for IPv6 (ip.id)"),
    "ttl": ("int16", -1, "IPv4 TTL or IPv6 hop limit (ip.ttl / ipv6.hlim)"),
    "sport": ("int32", -1, "TCP/UDP source port (tcp.srcport / udp.srcport)"),
    "dport": ("int32", -1, "TCP/UDP destination port (tcp.dstport / udp.dstport)"),
    "tcp_flags": ("int16", 0, "TCP flag bits, FIN=1 SYN=2 RST=4 PSH=8 ACK=16 ... (tcp.flags)"),
    "tcp_seq": ("int64", -1, "raw TCP sequence number (tcp.seq_raw)"),
    "tcp_ack": ("int64", -1, "raw TCP acknowledgement number (tcp.ack_raw)"),
    "tcp_win": ("int32", -1, "TCP window field, unscaled (tcp.window_size_value)"),
    "tcp_tsval": (
        "int64",
        -1,
        "TCP timestamp option TSval when present (tcp.options.timestamp.tsval)",
    ),
    "icmp_type": ("int16", -1, "ICMP / ICMPv6 type (icmp.type / icmpv6.type)"),
    "icmp_id": (
        "int32",
        -1,
        "ICMP / ICMPv6 echo identifier, -1 on other packets (icmp.ident / icmpv6.echo.identifier)",
    ),
    "payload_len": (
        "int32",
        0,
        "L4 payload bytes on the wire, from the IP length (tcp.len / udp.length-8)",
    ),
    "payload_off": ("int32", -1, "offset of the L4 payload inside the captured packet bytes"),
    "file_off": (
        "int64",
        -1,
        "offset of the packet's captured bytes in the file (gzip: in its decompressed bytes); "
        "with payload_off, where a payload can be read again (-1: tshark engine)",
    ),
    "encap": ("str", "", "overlay the packet came in: '', 'vxlan', 'geneve', 'ipip', 'gre'"),
    "outer_src": ("str", "", "outer (node) source address of an encapsulated packet"),
    "outer_dst": ("str", "", "outer (node) destination address of an encapsulated packet"),
    "http_method": (
        "str",
        "",
        "HTTP request method when the payload starts a request (http.request.method)",
    ),
    "http_uri": ("str", "", "HTTP request target (http.request.uri)"),
    "http_host": ("str", "", "HTTP Host header (http.host)"),
    "http_status": (
        "int16",
        -1,
        "HTTP response status code when the payload starts a response (http.response.code)",
    ),
    "http_length": (
        "int32",
        -1,
        "bytes of the HTTP message this payload starts (head + Content-Length) when the head "
        "says, and the decoder was asked (``http_lengths``); else -1 (http.content_length)",
    ),
}
