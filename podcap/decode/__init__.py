"""Decoding pcap/pcapng captures into the packet table (see ``schema.PACKET_COLUMNS``).

from podcap.decode import read_capture
cap = read_capture("capture.pcap.gz", needles=(b"lbtest",))
cap.packets            # one row per packet, columns as in schema.PACKET_COLUMNS
cap.contains[b"lbtest"]  # bool per packet: the L4 payload holds the needle
"""

from podcap.decode.reader import Capture, Reading, read_capture, start_reading

__all__ = ["Capture", "Reading", "read_capture", "start_reading"]
