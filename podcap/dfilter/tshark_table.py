"""``--engine tshark``: the packet table built by Wireshark's own dissectors.

tshark prints the header fields of every packet (``-T fields``), with every occurrence of a
field, so an encapsulated packet gives its outer and inner IP headers in order. The result
has the columns of ``podcap.decode.schema`` and comes back as a ``podcap.decode.Capture``,
so the reports cannot tell which engine ran. It is slower than the native decoder (tshark
dissects everything) and gives Wireshark's reassembly: HTTP fields sit on the segment that
completes a request, and retransmissions are never HTTP.

Why tshark's field output and not pyshark's packet objects: pyshark's JSON mode drops
repeated layers (the inner Ethernet/IP of a VXLAN packet disappears, pyshark #695) and
mangles HTTP field names; ``-T fields`` keeps every occurrence.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from podcap.decode.schema import PACKET_COLUMNS
from podcap.dfilter.tshark import DECODE_AS, tshark_path, tshark_problems
from podcap.errors import DecodeError

FIELDS = [
    "frame.number", "frame.time_epoch", "frame.interface_id", "frame.cap_len", "frame.len",
    "frame.protocols", "ip.src", "ip.dst", "ip.proto", "ip.id", "ip.ttl", "ipv6.src",
    "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "tcp.srcport", "tcp.dstport", "udp.srcport",
    "udp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.window_size_value",
    "tcp.options.timestamp.tsval", "tcp.len", "udp.length", "icmp.type", "icmpv6.type",
    "http.request.method", "http.request.uri", "http.host", "http.response.code",
    "tcp.payload", "udp.payload",
]  # fmt: skip
LINKTYPES = {"eth": (1, "EN10MB"), "sll": (113, "LINUX_SLL"), "raw": (101, "RAW"),
             "null": (0, "NULL"), "loop": (108, "LOOP")}  # fmt: skip
ENCAPS = ("vxlan", "geneve", "gre")
# Joins the occurrences of one field; a control character, since URIs may hold commas.
SEPARATOR = "\x1f"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def read_capture_tshark(path: str | Path, needles: tuple[bytes, ...] = ()):
    """Decode ``path`` with tshark into a ``podcap.decode.Capture``."""
    from podcap.decode import Capture

    path = Path(path)
    file_format = _file_format(path)
    raw, warnings = _run(path)
    rows = [_packet(row) for row in raw.itertuples(index=False)]
    table = _table(rows)
    linktypes = sorted({LINKTYPES.get(r["_link"], (0, r["_link"].upper()))[1] for r in rows})
    payloads = [r["_payload"] for r in rows]
    contains = {n: np.array([n in p for p in payloads], bool) for n in needles}
    return Capture(path, table, linktypes, warnings, contains, file_format)


def _file_format(path: Path) -> str:
    """pcap or pcapng, from the magic under any gzip layer, as the native decoder sees it.

    Also gives the native decoder's one-line errors for a missing, directory or empty path.
    """
    from podcap.decode.source import open_capture

    try:
        with open_capture(path) as stream:
            magic = stream.read(4)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DecodeError(f"{path}: broken gzip stream ({exc})") from exc
    return "pcapng" if magic == PCAPNG_MAGIC else "pcap"


def _run(path: Path) -> tuple[pd.DataFrame, list[str]]:
    if tshark_path() is None:
        raise DecodeError(f"{path}: --engine tshark needs tshark, which is not installed")
    argv = [tshark_path(), "-n", "-r", str(path), *DECODE_AS, "-T", "fields"]
    argv += [
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        f"aggregator={SEPARATOR}",
        "-E",
        "quote=n",
    ]
    for name in FIELDS:
        argv += ["-e", name]
    result = subprocess.run(argv, capture_output=True, text=True)
    problems = tshark_problems(result.stderr)
    if result.returncode != 0 and not result.stdout:
        raise DecodeError(f"{path}: {problems[0] if problems else 'tshark cannot read it'}")
    table = pd.read_csv(
        io.StringIO(result.stdout), sep="\t", names=FIELDS, dtype=str, keep_default_na=False,
        quoting=3,
    )  # fmt: skip
    # A file tshark cannot open as a capture (text, a cut pcapng header) it still shows, as
    # one frame holding the whole file, without a timestamp: capture records always have one.
    if (table["frame.time_epoch"] == "").any():
        raise DecodeError(f"{path}: tshark cannot read it as a capture (no packet timestamps)")
    return table, [f"{path}: {line}" for line in problems[:1]]


def _packet(row) -> dict:
    """One schema row from tshark's fields (attribute names: '.' became '_' positions)."""
    f = dict(zip(FIELDS, row, strict=True))
    protocols = f["frame.protocols"].split(":")
    ip_layers = [p for p in protocols if p in ("ip", "ipv6")]
    v4, v6 = _split(f["ip.src"]), _split(f["ipv6.src"])
    d4, d6 = _split(f["ip.dst"]), _split(f["ipv6.dst"])
    addresses = []  # (src, dst) per IP layer, outermost first
    for layer in ip_layers:
        src, dst = (v4, d4) if layer == "ip" else (v6, d6)
        addresses.append((src.pop(0) if src else "", dst.pop(0) if dst else ""))
    inner = addresses[-1] if addresses else ("", "")
    outer = addresses[0] if len(addresses) > 1 else ("", "")
    version = {"ip": 4, "ipv6": 6}.get(ip_layers[-1], 0) if ip_layers else 0
    is_tcp, is_udp = "tcp" in protocols, "udp" in protocols
    proto = _last_int(f["ip.proto"] if version == 4 else f["ipv6.nxt"], -1)
    sport = _last_int(f["tcp.srcport"] if is_tcp else f["udp.srcport"], -1)
    dport = _last_int(f["tcp.dstport"] if is_tcp else f["udp.dstport"], -1)
    payload_len = _last_int(f["tcp.len"], 0) if proto == 6 else 0
    if proto == 17:
        payload_len = max(_last_int(f["udp.length"], 8) - 8, 0)
    payload_hex = _split(f["tcp.payload"] if proto == 6 else f["udp.payload"])
    encap = next((e for e in ENCAPS if e in protocols), "ipip" if len(ip_layers) > 1 else "")
    return {
        "frame": int(f["frame.number"]),
        "ts": float(f["frame.time_epoch"]),
        "iface": _last_int(f["frame.interface_id"], 0),
        "linktype": LINKTYPES.get(protocols[0], (-1,))[0],
        "caplen": int(f["frame.cap_len"]),
        "length": int(f["frame.len"]),
        "ip_version": version,
        "src": inner[0],
        "dst": inner[1],
        "ip_proto": proto,
        "ip_id": _last_int(f["ip.id"], -1) if version == 4 else -1,
        "ttl": _last_int(f["ip.ttl"] if version == 4 else f["ipv6.hlim"], -1),
        "sport": sport if is_tcp or is_udp else -1,
        "dport": dport if is_tcp or is_udp else -1,
        "tcp_flags": _last_int(f["tcp.flags"], 0) if proto == 6 else 0,
        "tcp_seq": _last_int(f["tcp.seq_raw"], -1),
        "tcp_ack": _last_int(f["tcp.ack_raw"], -1),
        "tcp_win": _last_int(f["tcp.window_size_value"], -1),
        "tcp_tsval": _last_int(f["tcp.options.timestamp.tsval"], -1),
        "icmp_type": _last_int(f["icmp.type"] or f["icmpv6.type"], -1),
        "payload_len": payload_len,
        "payload_off": -1,  # tshark does not say where the payload sits in the frame
        "encap": encap,
        "outer_src": outer[0],
        "outer_dst": outer[1],
        "http_method": _first(f["http.request.method"]),
        "http_uri": _first(f["http.request.uri"]),
        "http_host": _first(f["http.host"]),
        "http_status": _last_int(f["http.response.code"], -1),
        "_link": protocols[0],
        "_payload": bytes.fromhex(payload_hex[-1].replace(":", "")) if payload_hex else b"",
    }


def _table(rows: list[dict]) -> pd.DataFrame:
    columns = {}
    for name, (dtype, _, _) in PACKET_COLUMNS.items():
        values = [r[name] for r in rows]
        columns[name] = pd.array(values, dtype="str") if dtype == "str" else np.array(values, dtype)
    return pd.DataFrame(columns)


def _split(text: str) -> list[str]:
    return [part for part in text.split(SEPARATOR) if part] if text else []


def _first(text: str) -> str:
    parts = _split(text)
    return parts[0] if parts else ""


def _last_int(text: str, missing: int) -> int:
    parts = _split(text)
    return int(parts[-1], 0) if parts else missing
