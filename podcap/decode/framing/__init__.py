"""Splitting a chunk of a pcap or pcapng file into packet records.

Record boundaries depend on each previous record's length, so the walk over record headers
is the one sequential Python loop of the decoder; it only appends offsets (about 0.3 s per
million records). Everything else about a record (timestamps, lengths, interface) is then
gathered for all records at once with numpy.
"""

from podcap.decode.framing.detect import detect
from podcap.decode.framing.lockstep import (
    GUESS_CHAIN,
    GUESS_WINDOW,
    PIECE_BYTES,
    PLAUSIBLE_CLOCK_SPAN,
    PLAUSIBLE_LENGTH,
    WALKERS,
    first_plausible_record,
    lockstep_offsets,
)
from podcap.decode.framing.pcap import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SPB,
    MAX_RECORD,
    MAX_UNITS_PER_SECOND,
    OPT_TSOFFSET,
    OPT_TSRESOL,
    PCAP_MAGICS,
    Frames,
    PcapFramer,
    Walk,
)
from podcap.decode.framing.pcapng import BYTE_ORDER_MAGIC, PCAPNG_SHB, Interface, PcapngFramer

__all__ = [
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_OPB",
    "BLOCK_SPB",
    "BYTE_ORDER_MAGIC",
    "Frames",
    "GUESS_CHAIN",
    "GUESS_WINDOW",
    "Interface",
    "MAX_RECORD",
    "MAX_UNITS_PER_SECOND",
    "OPT_TSOFFSET",
    "OPT_TSRESOL",
    "PCAPNG_SHB",
    "PCAP_MAGICS",
    "PIECE_BYTES",
    "PLAUSIBLE_CLOCK_SPAN",
    "PLAUSIBLE_LENGTH",
    "PcapFramer",
    "PcapngFramer",
    "WALKERS",
    "Walk",
    "detect",
    "first_plausible_record",
    "lockstep_offsets",
]
