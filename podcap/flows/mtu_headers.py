"""What the headers say about an MTU black hole: the MSS each side announced, whether the
lost segments forbade fragmenting (DF), their size on the wire, and the overlay around them.

Read for the few connections ``podcap.flows.mtu`` found, from the capture file again
(``podcap.decode.reread``): the SYN and SYN-ACK for their MSS options, one lost segment for
its IP header. The TCP header is found by its ports and sequence number just before the
payload, and the IP header before it by its version, length and addresses, so any link
layer or tunnel around them is no matter.
"""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pandas as pd

from podcap.decode.reread import reopen
from podcap.decode.schema import ACK, SYN, TCP

# Bytes an overlay adds to each packet (outer IP 20, UDP 8, header 8, inner Ethernet 14 for
# VXLAN; Geneve the same before its options; IP-in-IP one IP header; GRE one and its own).
OVERHEAD = {"vxlan": 50, "geneve": 50, "ipip": 20, "gre": 24}
MSS_OPTION, END_OPTION, NOP_OPTION = 2, 0, 1
DF = 0x4000
HEADER_COLUMNS = ["mss_client", "mss_server", "df", "lost_packet_size", "overlay"]


def with_headers(black_holes: pd.DataFrame, packets: pd.DataFrame, overlays=None) -> pd.DataFrame:
    """``black_holes`` with HEADER_COLUMNS: each side's MSS (-1 unknown), DF on the lost
    segment (None unknown), its IP packet's size (-1 unknown) and the overlay it travelled
    in (the flow's own ``encap``, else ``overlays[flow_id]``, the one another capture point
    saw the same connection in; "" none seen)."""
    ids = black_holes["flow_id"].to_numpy()
    theirs = packets[np.isin(packets["flow_id"].to_numpy(), ids) & (packets["ip_proto"] == TCP)]
    by_flow = dict(tuple(theirs.groupby("flow_id", sort=False)))  # one pass, not one per hole
    rows = [_facts(hole, by_flow[hole.flow_id], overlays or {})
            for hole in black_holes.itertuples()]  # fmt: skip
    facts = pd.DataFrame(rows, columns=HEADER_COLUMNS, index=black_holes.index)
    return pd.concat([black_holes, facts], axis=1)


def _facts(hole, flow: pd.DataFrame, overlays: dict) -> dict:
    """The facts of one black hole from its flow's TCP packets."""
    flags = flow["tcp_flags"].to_numpy()
    syn = (flags & SYN) != 0
    client_syn = flow[syn & ((flags & ACK) == 0)].head(1)
    server_syn = flow[syn & ((flags & ACK) != 0)].head(1)
    lost = flow[
        (flow["c2s"] == hole.sender_c2s) & (flow["payload_len"] == hole.smallest_lost)
    ].head(1)
    encap = [e for e in flow["encap"].astype(str).unique() if e] if "encap" in flow else []
    facts = {"mss_client": -1, "mss_server": -1, "df": None, "lost_packet_size": -1,
             "overlay": encap[0] if encap else overlays.get(hole.flow_id, "")}  # fmt: skip
    path = str(flow["file"].iloc[0]) if "file" in flow and len(flow) else None
    with reopen(path) as source:
        if source is None:
            return facts
        for column, packet in (("mss_client", client_syn), ("mss_server", server_syn)):
            if len(packet):
                facts[column] = _mss(_tcp_header(source, packet.iloc[0]))
        if len(lost):
            ip = _ip_header(source, lost.iloc[0])
            if ip is not None:
                facts["df"], facts["lost_packet_size"] = ip
    return facts


def _frame(source, packet) -> bytes:
    return source.read(int(packet["file_off"]), int(packet["caplen"]))


def _tcp_start(frame: bytes, packet) -> int:
    """Where the packet's TCP header starts in its frame: the last place before the payload
    holding its ports and sequence number; -1 when not found."""
    key = struct.pack("!HHI", int(packet["sport"]), int(packet["dport"]), int(packet["tcp_seq"]))
    end = int(packet["payload_off"]) if packet["payload_off"] > 0 else len(frame)
    return frame.rfind(key, 0, end)


def _tcp_header(source, packet) -> bytes:
    frame = _frame(source, packet)
    start = _tcp_start(frame, packet)
    if start < 0 or start + 20 > len(frame):
        return b""
    return frame[start : start + (frame[start + 12] >> 4) * 4]


def _mss(header: bytes) -> int:
    """The MSS option of a TCP header; -1 without one."""
    pos = 20
    while pos < len(header):
        kind = header[pos]
        if kind == END_OPTION:
            break
        if kind == NOP_OPTION:
            pos += 1
            continue
        if pos + 1 >= len(header) or header[pos + 1] < 2:
            break
        if kind == MSS_OPTION and header[pos + 1] == 4 and pos + 4 <= len(header):
            return struct.unpack_from("!H", header, pos + 2)[0]
        pos += header[pos + 1]
    return -1


def _ip_header(source, packet) -> tuple[bool | None, int] | None:
    """(DF set, the IP packet's total length) of the innermost IP header before the TCP
    header; IPv6 has no DF (never fragmented on the way): None there."""
    frame = _frame(source, packet)
    tcp = _tcp_start(frame, packet)
    src, dst = ipaddress.ip_address(str(packet["src"])), ipaddress.ip_address(str(packet["dst"]))
    if src.version == 6:
        at = tcp - 40
        if at >= 0 and frame[at] >> 4 == 6 and frame[at + 8 : at + 40] == src.packed + dst.packed:
            return None, 40 + struct.unpack_from("!H", frame, at + 4)[0]
        return None
    for words in range(5, 16):
        at = tcp - words * 4
        if at < 0:
            break
        if frame[at] == 0x40 | words and frame[at + 12 : at + 20] == src.packed + dst.packed:
            fragment = struct.unpack_from("!H", frame, at + 6)[0]
            return bool(fragment & DF), struct.unpack_from("!H", frame, at + 2)[0]
    return None


def connection_overlays(connections, packets: pd.DataFrame, wanted) -> dict[int, str]:
    """For the flows ``wanted``, the overlay another capture point saw the same connection in
    (a Pod's capture sees its packets bare; its node's NIC, wrapped), from the matched
    connections (``podcap.snat.match``)."""
    if "encap" not in packets:
        return {}
    wanted = set(np.asarray(wanted).tolist())
    mine = [c for c in connections if any(o.flow_id in wanted for o in c.observations)]
    flows = {o.flow_id for c in mine for o in c.observations}
    encap = pd.Categorical(packets["encap"])
    names = np.asarray(encap.categories.astype(str))
    if not len(names):
        return {}
    wrapped = np.isin(packets["flow_id"].to_numpy(), list(flows)) & (encap.codes >= 0)
    wrapped &= names[np.maximum(encap.codes, 0)] != ""
    encap_of = dict(zip(packets["flow_id"].to_numpy()[wrapped], names[encap.codes[wrapped]],
                        strict=True))  # fmt: skip
    found = {}
    for connection in mine:
        seen = [encap_of[o.flow_id] for o in connection.observations if o.flow_id in encap_of]
        if seen:
            found.update(dict.fromkeys((o.flow_id for o in connection.observations), seen[0]))
    return found


def header_words(mss_client: int, mss_server: int, df, size: int, overlay: str) -> str:
    """What the headers add to a black hole's explanation, in words ("" when nothing)."""
    words = []
    lost = f"the lost segments are {size}-byte IP packets" if size > 0 else "the lost segments"
    if df is not None:
        words.append(f"{lost} with DF set: no router may fragment them, only drop them and say "
                     "so in ICMP" if df else f"{lost} without DF: a router could have "
                     "fragmented them, so something drops large packets or fragments silently")  # fmt: skip
    elif size > 0:
        words.append(lost)
    announced = [f"{side} {mss}" for side, mss in (("client", mss_client),
                                                   ("server", mss_server)) if mss > 0]  # fmt: skip
    if announced:
        words.append(f"MSS announced: {', '.join(announced)}")
    overhead = OVERHEAD.get(overlay)
    if overhead is not None:
        words.append(f"they travel in {overlay}, {overhead} bytes more per packet: the Pods' "
                     f"MTU must be the underlay's less {overhead} (at most "
                     f"{1500 - overhead} on a 1500-byte network)")  # fmt: skip
    return "; ".join(words)
