"""Which framer reads a file: classic pcap or pcapng, told from its first bytes."""

from podcap.decode.framing.pcap import PcapFramer
from podcap.decode.framing.pcapng import PcapngFramer
from podcap.errors import DecodeError
from podcap.pcapfile import PCAP_MAGICS, PCAPNG_MAGIC


def detect(head: bytes, path: object) -> "PcapFramer | PcapngFramer":
    """Pick the framer for a file from its first bytes; DecodeError if it is no capture."""
    if head[:4] in PCAP_MAGICS:
        return PcapFramer(head, path)
    if head[:4] == PCAPNG_MAGIC:
        return PcapngFramer(path)
    raise DecodeError(f"{path}: not a pcap or pcapng file ({_describe(head)})")


def _describe(head: bytes) -> str:
    sample = head[:64]
    if sample and all(32 <= c < 127 or c in (9, 10, 13) for c in sample):
        first_line = sample.decode("ascii").splitlines()[0] if sample.strip() else ""
        return f"it starts with text {first_line[:30]!r}"
    if len(head) < 4:
        return f"only {len(head)} bytes long"
    return f"unknown magic 0x{head[:4].hex()}"
