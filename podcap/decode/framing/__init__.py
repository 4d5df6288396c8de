"""Splitting a chunk of a pcap or pcapng file into packet records.

Record boundaries depend on each previous record's length, so the walk over record headers
is the one sequential Python loop of the decoder; it only appends offsets (about 0.3 s per
million records). Everything else about a record (timestamps, lengths, interface) is then
gathered for all records at once with numpy.
"""

from podcap.decode.framing.detect import detect
from podcap.decode.framing.frames import Frames, Walk
from podcap.decode.framing.lockstep import first_plausible_record, lockstep_offsets
from podcap.decode.framing.pcap import PcapFramer
from podcap.decode.framing.pcapng import Interface, PcapngFramer

__all__ = [
    "Frames",
    "Interface",
    "PcapFramer",
    "PcapngFramer",
    "Walk",
    "detect",
    "first_plausible_record",
    "lockstep_offsets",
]
