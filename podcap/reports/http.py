"""The ``http`` report: one row per HTTP request, on any port, with its response.

Requests and responses come from the message table (``podcap.flows.messages``): each
direction of a connection followed as Wireshark reassembles it, so a request pipelined behind
another, or sent after a POST's body in the same segment, is a row of its own. A
retransmitted request counts once, as in Wireshark, which does not hand retransmitted
segments to the HTTP dissector. Within a connection the n-th response answers the n-th
request (HTTP/1.1 keeps order, also when pipelining).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from podcap.decode.times import as_datetime

HTTP_COLUMNS = [
    "flow_id", "frame", "ts", "client_ip", "client_port", "server_ip", "server_port",
    "method", "host", "uri", "status", "latency_ms",
]  # fmt: skip


def http_requests(
    packets: pd.DataFrame, flows: pd.DataFrame, messages: pd.DataFrame
) -> pd.DataFrame:
    """Requests paired with responses; ``packets`` must carry the flow columns, ``messages``
    be their message table."""
    frame, ts = packets["frame"].to_numpy(), packets["ts"].to_numpy()
    messages = messages.assign(frame=frame[messages["row"]], ts=ts[messages["row"]])
    requests = messages[(messages["method"] != "") & messages["c2s"]]
    responses = messages[(messages["status"] >= 0) & ~messages["c2s"]]
    requests = requests.assign(nth=requests.groupby("flow_id").cumcount())
    responses = responses.assign(nth=responses.groupby("flow_id").cumcount())
    paired = requests.merge(
        responses[["flow_id", "nth", "ts", "status", "frame"]].rename(
            columns={"ts": "response_ts", "frame": "response_frame", "status": "response"}
        ),
        on=["flow_id", "nth"],
        how="left",
    )
    ends = flows.set_index("flow_id")[["client_ip", "client_port", "server_ip", "server_port"]]
    paired = paired.join(ends, on="flow_id")
    table = pd.DataFrame(
        {
            "file": paired["file"].to_numpy() if "file" in paired else "",
            "flow_id": paired["flow_id"].to_numpy(),
            "frame": paired["frame"].to_numpy(),
            "response_frame": paired["response_frame"].astype("Int64"),
            "ts": paired["ts"].to_numpy(),
            "client_ip": paired["client_ip"].to_numpy(),
            "client_port": paired["client_port"].to_numpy(),
            "server_ip": paired["server_ip"].to_numpy(),
            "server_port": paired["server_port"].to_numpy(),
            "method": paired["method"].to_numpy(),
            "host": paired["host"].to_numpy(),
            "uri": paired["uri"].to_numpy(),
            "status": paired["response"].astype("Int64"),
            "latency_ms": ((paired["response_ts"] - paired["ts"]) * 1000.0).round(3),
        }
    )
    # Text columns are strings also when there is no request (inferred, they would be objects).
    text = ["file", "client_ip", "server_ip", "method", "host", "uri"]
    return table.astype(dict.fromkeys(text, "str"))


def http_report(analysis) -> pd.DataFrame:
    table = analysis.http
    if analysis.filter_text is not None:
        # A request is in when its packet or its response's packet matched the filter, or
        # the segment completing either (where a filter on HTTP fields matches, as Wireshark).
        packets, messages = analysis.all_packets, analysis.http_messages
        starting = np.zeros(len(packets), bool)
        completed = messages[messages["end_row"] >= 0]
        starting[completed["row"]] = analysis.matched[completed["end_row"]]
        frames = packets.loc[analysis.matched | starting, ["file", "frame"]]
        chosen = frames.set_index(["file", "frame"]).index
        keys_request = pd.MultiIndex.from_arrays([table["file"], table["frame"]])
        keys_response = pd.MultiIndex.from_arrays([table["file"], table["response_frame"]])
        table = table[keys_request.isin(chosen) | keys_response.isin(chosen)]
    columns = ["file", *HTTP_COLUMNS]
    return analysis.without_file_column(as_datetime(table[columns], "ts")).reset_index(drop=True)
