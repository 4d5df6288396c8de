"""``--engine tshark``: the packet table built by Wireshark's own dissectors, through pyshark.

pyshark reads the file with tshark in PDML mode (its default) and hands over one packet
object per frame with its protocol layers in order, repeated layers included: a VXLAN packet
is eth, ip, udp, vxlan, eth, ip, tcp, so the outer (node) and inner (Pod) IP headers are
both there. The result has the columns of ``podcap.decode.schema`` and comes back as a
``podcap.decode.Capture``, so the reports cannot tell which engine ran. It gives Wireshark's
reassembly: HTTP fields sit on the segment that completes a request, and retransmissions are
never HTTP. It is much slower than the native decoder: tshark writes ~17 kB of XML per packet
and pyshark parses all of it (the README gives the measured packets/s).

Why PDML and not pyshark's JSON/EK modes: JSON drops repeated layers (the inner IP of a
VXLAN packet disappears, pyshark #695) and mangles HTTP field names; EK fails on field access.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from podcap import pcapfile
from podcap.decode.preview import heads_of
from podcap.decode.pyshark_reader import read_packets
from podcap.decode.reader import Capture
from podcap.decode.schema import ICMP, ICMPV6, PACKET_COLUMNS, TCP, UDP
from podcap.decode.source import open_capture
from podcap.decode.strings import categorical
from podcap.errors import DecodeError
from podcap.tshark import tshark_path, tshark_problems

# tshark's name of the link header (the first of frame.protocols) -> (LINKTYPE, its name).
LINKTYPES = {
    name: (linktype, pcapfile.linktype_name(linktype))
    for name, linktype in (
        ("eth", pcapfile.EN10MB), ("sll", pcapfile.LINUX_SLL), ("sll2", pcapfile.LINUX_SLL2),
        ("raw", pcapfile.RAW), ("null", pcapfile.NULL), ("loop", pcapfile.LOOP),
    )
}  # fmt: skip
ENCAPS = ("vxlan", "geneve", "gre")
IP_LAYERS = ("ip", "ipv6")
TRANSPORTS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmpv6": ICMPV6}
ECHO_ID = {"icmp": "icmp.ident", "icmpv6": "icmpv6.echo.identifier"}
PROGRESS_EVERY = 1000  # packets
# The protocols whose fields ``packet_row`` reads (tshark -j): the rest of the PDML (tcp.analysis,
# flag bits, checksums...) is left out, a third of it, which pyshark need not parse. A nested
# field is there only when every node above it is named: "text" is the node holding the HTTP
# request and status lines.
PDML_PROTOCOLS = ("frame eth sll ip ipv6 tcp tcp.options tcp.options.timestamp udp icmp icmpv6 "
                  "vxlan geneve gre http text")  # fmt: skip


def read_capture_tshark(
    path: str | Path,
    needles: tuple[bytes, ...] = (),
    on_progress: Callable[[str], None] | None = None,
    preview: bool = False,
):
    """Decode ``path`` with tshark (through pyshark) into a ``podcap.decode.Capture``.

    ``on_progress`` hears how many packets are read, every ``PROGRESS_EVERY``: this engine
    reads about a thousand a second. ``preview``: as ``podcap.decode.read_capture``'s."""
    path = Path(path)
    file_format = _file_format(path)
    rows, warnings = _read(path, on_progress or (lambda message: None))
    table = _table(rows)
    linktypes = sorted({LINKTYPES.get(r["_link"], (0, r["_link"].upper()))[1] for r in rows})
    payloads = [r["_payload"] for r in rows]
    contains = {n: np.array([n in p for p in payloads], bool) for n in needles}
    if_index = np.array([r["_if_index"] for r in rows], np.int32)
    pkt_type = np.array([r["_pkt_type"] for r in rows], np.int16)
    heads = heads_of(payloads) if preview else None
    return Capture(
        path, table, linktypes, warnings, contains, file_format, if_index, pkt_type, heads
    )


def _file_format(path: Path) -> str:
    """pcap or pcapng, from the magic under any gzip layer, as the native decoder sees it.

    Also gives the native decoder's one-line errors for a missing, directory or empty path.
    """
    try:
        with open_capture(path) as stream:
            magic = stream.read(4)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DecodeError(f"{path}: broken gzip stream ({exc})") from exc
    return "pcapng" if magic == pcapfile.PCAPNG_MAGIC else "pcap"


def _read(path: Path, progress: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    """The rows of every packet tshark shows, and tshark's complaint as a warning."""
    if tshark_path() is None:
        raise DecodeError(f"{path}: --engine tshark needs tshark, which is not installed")
    rows: list[dict] = []

    def add(packet) -> None:
        rows.append(packet_row(packet))
        if len(rows) % PROGRESS_EVERY == 0:
            progress(f"reading {path} with tshark: {len(rows):,} packets")

    run = read_packets(path, add, ["-j", PDML_PROTOCOLS])
    problems = tshark_problems(run.stderr_lines)
    if run.exit_status and not rows:
        raise DecodeError(f"{path}: {problems[0] if problems else 'tshark cannot read it'}")
    # A file tshark cannot open as a capture (text, a cut pcapng header) it may still show, as
    # one frame holding the whole file, without a timestamp: capture records always have one.
    if any(np.isnan(r["ts"]) for r in rows):
        raise DecodeError(f"{path}: tshark cannot read it as a capture (no packet timestamps)")
    return rows, [f"{path}: {line}" for line in problems[:1]]


def packet_row(packet) -> dict:
    """One packet-table row from a pyshark packet (PDML), plus the underscored extras.

    ``_link``: the link header (eth, sll, sll2...); ``_payload``: the L4 payload bytes;
    ``_if_index``/``_pkt_type``: the Linux cooked header's interface and packet type, or -1.
    """
    frame, layers = packet.frame_info, packet.layers
    names = [layer.layer_name for layer in layers]
    ips = [i for i, name in enumerate(names) if name in IP_LAYERS]
    inner = layers[ips[-1]] if ips else None
    outer = layers[ips[0]] if len(ips) > 1 else None
    # The transport is the one right after the innermost IP header: for ICMP inside VXLAN,
    # the outer UDP header is not it.
    after_ip = layers[ips[-1] + 1 :] if ips else []
    transport = next((layer for layer in after_ip if layer.layer_name in TRANSPORTS), None)
    kind = transport.layer_name if transport else ""
    version = {"ip": 4, "ipv6": 6}[inner.layer_name] if inner else 0
    https = [layer for layer in layers if layer.layer_name == "http"]
    link = (_text(frame, "frame.protocols") or "").split(":")[0]
    cooked = layers[0] if link == "sll" and layers else None
    if _text(cooked, "sll.ifindex") is not None:
        link = "sll2"  # tshark names both Linux cooked headers sll; only v2 has ifindex
    return {
        "frame": int(packet.number),
        "ts": float(_text(frame, "frame.time_epoch") or "nan"),
        "iface": _int(frame, "frame.interface_id", 0),
        "linktype": LINKTYPES.get(link, (-1,))[0],
        "caplen": _int(frame, "frame.cap_len", 0),
        "length": _int(frame, "frame.len", 0),
        "ip_version": version,
        **_addresses(inner, outer),
        "ip_proto": TRANSPORTS.get(kind) or _ip_proto(inner),
        "ip_id": _int(inner, "ip.id", -1) if version == 4 else -1,
        "ttl": _int(inner, "ip.ttl" if version == 4 else "ipv6.hlim", -1),
        "sport": _int(transport, f"{kind}.srcport", -1),
        "dport": _int(transport, f"{kind}.dstport", -1),
        "tcp_flags": _int(transport, "tcp.flags", 0),
        "tcp_seq": _int(transport, "tcp.seq_raw", -1),
        "tcp_ack": _int(transport, "tcp.ack_raw", -1),
        "tcp_win": _int(transport, "tcp.window_size_value", -1),
        "tcp_tsval": _int(transport, "tcp.options.timestamp.tsval", -1),
        "icmp_type": _int(transport, f"{kind}.type", -1) if kind.startswith("icmp") else -1,
        "icmp_id": _int(transport, ECHO_ID[kind], -1) if kind in ECHO_ID else -1,
        "payload_len": _payload_len(inner, transport, kind),
        "payload_off": -1,  # tshark does not say where the payload sits in the frame
        "file_off": -1,
        "encap": next((e for e in ENCAPS if e in names), "ipip" if len(ips) > 1 else ""),
        "http_method": _first_text(https, "http.request.method"),
        "http_uri": _first_text(https, "http.request.uri"),
        "http_host": _first_text(https, "http.host"),
        "http_status": _int(https[-1], "http.response.code", -1) if https else -1,
        "http_length": -1,  # tshark already puts a message's fields on its completing segment
        "_link": link,
        "_payload": _payload(transport, kind),
        # Linux cooked captures (tcpdump -i any): tell apart the copies of one packet.
        "_if_index": _int(cooked, "sll.ifindex", -1),
        "_pkt_type": _int(cooked, "sll.pkttype", -1),
    }


def _addresses(inner, outer) -> dict:
    def pair(layer) -> tuple[str, str]:
        if layer is None:
            return "", ""
        name = layer.layer_name
        return _text(layer, f"{name}.src") or "", _text(layer, f"{name}.dst") or ""

    (src, dst), (outer_src, outer_dst) = pair(inner), pair(outer)
    return {"src": src, "dst": dst, "outer_src": outer_src, "outer_dst": outer_dst}


def _ip_proto(inner) -> int:
    if inner is None:
        return -1
    return _int(inner, "ip.proto" if inner.layer_name == "ip" else "ipv6.nxt", -1)


def _payload_len(inner, transport, kind: str) -> int:
    if kind == "tcp":
        return _int(transport, "tcp.len", 0)
    if kind == "udp":
        return max(_int(transport, "udp.length", 8) - 8, 0)
    if kind.startswith("icmp"):
        return _icmp_payload_len(inner, transport, kind)
    return 0


def _icmp_payload_len(inner, transport, kind: str) -> int:
    """ICMP has no length field: what the IP length leaves after the 8-byte ICMP header (as
    the native decoder counts it), from where tshark says each header starts (``pos``)."""
    ip_start = _field(inner, f"{inner.layer_name}.version")
    icmp_start = _field(transport, f"{kind}.type")
    if ip_start is None or icmp_start is None:
        return 0
    if inner.layer_name == "ip":
        ip_length = _int(inner, "ip.len", 0)
    else:
        ip_length = 40 + _int(inner, "ipv6.plen", 0)
    return max(int(ip_start.pos) + ip_length - int(icmp_start.pos) - 8, 0)


def _payload(transport, kind: str) -> bytes:
    """The L4 payload: PDML gives the bytes of ``tcp.payload``/``udp.payload`` as raw hex."""
    field = _field(transport, f"{kind}.payload") if kind in ("tcp", "udp") else None
    return bytes.fromhex(field.raw_value) if field is not None and field.raw_value else b""


def _table(rows: list[dict]) -> pd.DataFrame:
    columns = {}
    for name, (dtype, _, _) in PACKET_COLUMNS.items():
        values = [r[name] for r in rows]
        if dtype == "str":  # categorical, as the native decoder gives them
            codes, uniques = pd.factorize(np.array(values, dtype=object))
            columns[name] = categorical(codes.astype(np.int32), list(uniques))
        else:
            columns[name] = np.array(values, dtype)
    return pd.DataFrame(columns)


def _text(layer, name: str) -> str | None:
    """The displayed value of the layer's first ``name`` field, None when absent."""
    field = _field(layer, name)
    return None if field is None else field.show


def _field(layer, name: str):
    """The layer's field called exactly ``name`` (None when absent or without a layer).

    Not pyshark's ``get_field``: for a field the packet lacks (a payload, an HTTP header) it
    compares the name with every field's name rewritten as an attribute name, a third of the
    time spent in this module."""
    return layer._all_fields.get(name) if layer is not None else None


def _first_text(layers: list, name: str) -> str:
    return next((text for layer in layers if (text := _text(layer, name))), "")


def _int(layer, name: str, missing: int) -> int:
    """An integer field (decimal or 0x hex, as tshark shows it), ``missing`` when absent."""
    text = _text(layer, name)
    if not text:
        return missing
    return int(text, 16) if text.startswith("0x") else int(text)
