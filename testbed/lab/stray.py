"""Send one TCP segment far outside a live connection's window, from the server's side: the
packet conntrack marks INVALID (run inside the server Pod's namespace, as root).

``python3 stray.py PORT MARKER TIMEOUT`` waits on eth0 for the client's segment carrying
MARKER to local PORT, then sends, from PORT to the client, a segment whose sequence number
is 2^30 past what the client expects (its acknowledgement number is right). Prints what it
sent as JSON, or ``{"error": ...}`` when the marker never came.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
OUT_OF_WINDOW = 1 << 30
PSH_ACK = 0x18


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _segment(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, data: bytes) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, PSH_ACK, 502, 0, 0)
    pseudo = (
        socket.inet_aton(src)
        + socket.inet_aton(dst)
        + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header) + len(data))
    )
    check = _checksum(pseudo + header + data)
    return header[:16] + struct.pack("!H", check) + header[18:] + data


def wait_for_marker(port: int, marker: bytes, timeout: float):
    """(client ip, client port, local ip, client's seq after the marker, its ack) of the
    first segment to ``port`` carrying ``marker``; None after ``timeout`` seconds."""
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sniffer.bind(("eth0", ETH_P_IP))
    deadline = time.monotonic() + timeout
    print("ready", flush=True)
    while time.monotonic() < deadline:
        sniffer.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            packet = sniffer.recv(65536)
        except TimeoutError:
            break
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != socket.IPPROTO_TCP:
            continue
        sport, dport, seq, ack, offset = struct.unpack("!HHIIB", packet[ihl : ihl + 13])
        payload = packet[ihl + (offset >> 4) * 4 :]
        if dport == port and marker in payload:
            client, local = socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20])
            return client, sport, local, (seq + len(payload)) % (1 << 32), ack
    return None


def main(argv: list[str]) -> int:
    port, marker, timeout = int(argv[0]), argv[1].encode(), float(argv[2])
    seen = wait_for_marker(port, marker, timeout)
    if seen is None:
        print(json.dumps({"error": "the marker never came"}), flush=True)
        return 1
    client, client_port, local, client_next, our_next = seen
    seq = (our_next + OUT_OF_WINDOW) % (1 << 32)
    segment = _segment(local, client, port, client_port, seq, client_next, b"stray")
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    raw.sendto(segment, (client, 0))
    sent = {"from": f"{local}:{port}", "to": f"{client}:{client_port}", "seq": seq,
            "ack": client_next, "ts": time.time()}  # fmt: skip
    print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
