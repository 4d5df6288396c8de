"""The ``packets`` report: one row per matching packet, Wireshark's packet list in columns
(``info``: its Info column with the payload's first bytes, ``podcap.reports.packet_info``)."""

from __future__ import annotations

import pandas as pd

from podcap.decode.schema import TCP
from podcap.decode.times import as_datetime
from podcap.flows import proto_names
from podcap.reports.missing import with_na
from podcap.reports.packet_info import info_column

PACKET_REPORT_COLUMNS = [
    "frame", "ts", "src", "dst", "sport", "dport", "proto", "length", "payload_len",
    "tcp_flags", "info", "flow_id", "encap", "outer_src", "outer_dst", "if_index",
    "dup_of_frame",
]  # fmt: skip
FLAG_LETTERS = "FSRPAUEC"  # FIN SYN RST PSH ACK URG ECE CWR, bit 0 upwards


def packets_report(analysis) -> pd.DataFrame:
    p = analysis.packets
    table = pd.DataFrame(
        {
            "file": p["file"].to_numpy(),
            "frame": p["frame"].to_numpy(),
            "ts": p["ts"].to_numpy(),
            "src": p["src"].to_numpy(),
            "dst": p["dst"].to_numpy(),
            "sport": p["sport"].to_numpy(),
            "dport": p["dport"].to_numpy(),
            "proto": proto_names(p["ip_proto"]).to_numpy(),
            "length": p["length"].to_numpy(),
            "payload_len": p["payload_len"].to_numpy(),
            "tcp_flags": flag_letters(p["tcp_flags"], p["ip_proto"] == TCP),
            "info": info_column(p),
            "flow_id": p["flow_id"].to_numpy(),
            "encap": p["encap"].to_numpy(),
            "outer_src": p["outer_src"].to_numpy(),
            "outer_dst": p["outer_dst"].to_numpy(),
            # tcpdump -i any: the interface index (SLL2) and, for another interface's copy
            # of an earlier packet, that packet's frame (-1 for an original).
            "if_index": _column_or(p, "if_index", -1),
            "dup_of_frame": _column_or(p, "dup_of_frame", -1),
        }
    )
    table = with_na(
        table,
        numbers=("sport", "dport", "if_index", "dup_of_frame"),
        texts=("tcp_flags", "encap", "outer_src", "outer_dst"),
    )
    return analysis.without_file_column(as_datetime(table, "ts")).reset_index(drop=True)


def _column_or(p: pd.DataFrame, name: str, missing: int):
    return p[name].to_numpy() if name in p else missing


def flag_letters(flags: pd.Series, is_tcp: pd.Series) -> pd.Series:
    """TCP flags as letters, e.g. "SA" for SYN+ACK, computed once per distinct value."""
    names = {
        value: "".join(letter for bit, letter in enumerate(FLAG_LETTERS) if value >> bit & 1)
        for value in flags.unique()
    }
    return flags.map(names).where(is_tcp, "").to_numpy()
