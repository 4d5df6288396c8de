"""Missing values are pandas' NA in the reports a user reads, null in json, empty in csv; the
decoder's sentinels (-1, "") never reach them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from podcap.analysis.run import analyze
from podcap.render import render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


def test_unknown_values_are_na_not_sentinels():
    result = analyze(
        [SAMPLES / "05-vxlan-node-nic.pcap", SAMPLES / "08-any-sll2.pcap"],
        reports=["summary", "packets", "flows"],
    )
    packets, flows = result["packets"], result["flows"]
    sll2 = packets["file"].str.endswith("08-any-sll2.pcap")
    assert packets.loc[~sll2, "if_index"].isna().all()  # only SLL2 names an interface
    assert packets.loc[sll2, "if_index"].notna().all()
    assert packets["dup_of_frame"].isna().sum() == len(packets) - 24  # 24 copies in sample 08
    assert flows.loc[flows["file"].str.endswith("08-any-sll2.pcap"), "encap"].isna().all()
    assert (
        flows.loc[flows["file"].str.endswith("05-vxlan-node-nic.pcap"), "encap"] == "vxlan"
    ).all()
    for column in ("if_index", "dup_of_frame", "sport", "dport"):
        assert not (packets[column] == -1).any(), column
    for column in ("encap", "outer_src", "outer_dst", "tcp_flags"):
        assert not (packets[column] == "").any(), column


def test_na_is_null_in_json_and_empty_in_csv():
    result = analyze([SAMPLES / "10-snat-pod.pcap"], reports=["snat"])
    snat = result["snat"]
    assert snat["observed_dport"].isna().all() and snat["rewritten_by"].isna().all()
    out = io.StringIO()
    render({"snat": snat}, "json", stdout=out)
    record = json.loads(out.getvalue())["snat"][0]
    assert record["observed_dport"] is None and record["rewritten_by"] is None
    out = io.StringIO()
    render({"snat": snat}, "csv", stdout=out)
    row = pd.read_csv(io.StringIO(out.getvalue()), keep_default_na=False).iloc[0]
    assert row["observed_dport"] == "" and row["rewritten_by"] == ""
