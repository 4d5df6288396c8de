"""sample_pcaps/: every capture's ground truth agrees with what tshark sees in it, and its
sidecar is the format podcap writes and reads.

The truth files ``NAME.truth.json`` are written by scripts/make_sample_pcaps.py from what the lab
did (requests sent, server logs, rules in force), so this checks the captures really show those
things; the sidecars ``NAME.json`` say where and how each was captured.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

from podcap.analysis.run import analyze
from podcap.sidecar import SIDECAR_FORMAT, read_sidecar
from testbed.lab import tshark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "sample_pcaps")
CAPTURES = sorted(
    glob.glob(os.path.join(SAMPLES, "*.pcap")) + glob.glob(os.path.join(SAMPLES, "*.pcapng"))
)

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("capinfos") is None,
    reason="needs tshark and capinfos (scripts/install-system-deps.sh installs them)",
)


def sidecar(path: str) -> dict:
    with open(path.rsplit(".", 1)[0] + ".json", encoding="utf-8") as f:
        return json.load(f)


def truth_file(path: str) -> dict:
    """The scenario, the lab's topology and the ground truth of the capture at ``path``."""
    with open(path.rsplit(".", 1)[0] + ".truth.json", encoding="utf-8") as f:
        return json.load(f)


def inner(value: str) -> str:
    """The innermost of a repeated field (VXLAN: outer IP first, then the Pod's)."""
    return value.split(",")[-1]


def test_the_set_is_complete_and_small():
    names = {os.path.basename(p) for p in CAPTURES}
    assert len(names) >= 8
    assert "01-http-mytest.pcap" in names  # the README Quick start analyzes it
    assert any(n.endswith(".pcapng") for n in names)
    for path in CAPTURES:
        assert os.path.exists(path.rsplit(".", 1)[0] + ".json"), f"no sidecar for {path}"
        assert os.path.exists(path.rsplit(".", 1)[0] + ".truth.json"), f"no truth for {path}"
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(SAMPLES, "*")))
    assert total < 5 * 1024 * 1024


@pytest.fixture(params=CAPTURES, ids=os.path.basename)
def sample(request):
    path = request.param
    doc = sidecar(path)
    assert doc["file"]["name"] == truth_file(path)["file"] == os.path.basename(path)
    truth = truth_file(path)["ground_truth"]
    decode = [truth["encapsulation"]["decode_as"]] if truth["encapsulation"] else []
    return path, doc, truth, decode


def test_format_and_link_type(sample):
    path, doc, _, _ = sample
    info = tshark.capinfos(path)
    assert info["File type"] == doc["file"]["format"]
    assert info["File encapsulation"] == {1: "ether", 276: "linux-sll2"}[doc["file"]["linktype"]]
    assert doc["point"]["kind"] in ("pod", "node", "peer")
    assert f"-i {doc['point']['interface']} " in doc["how"]["command"]


def test_the_sidecar_is_the_current_format_as_written(sample):
    """What make_sample_pcaps writes is what podcap.sidecar reads, field for field."""
    path, doc, _, _ = sample
    assert doc["podcap_sidecar"] == SIDECAR_FORMAT
    assert read_sidecar(path) == doc
    assert doc["counts"]["packets"] == tshark.count(path, "frame")
    assert doc["counts"]["bytes"] == os.path.getsize(path)


def test_http_requests(sample):
    path, _, truth, decode = sample
    rows = tshark.fields(
        path,
        ["http.request.method", "http.request.uri", "ip.dst", "tcp.dstport"],
        "http.request",
        decode,
    )
    # tshark dissects HTTP once per request even where `-i any` holds several copies of it
    # (it marks the others as retransmissions), so count the copies on the raw bytes.
    expected = [r["uri"] for r in truth["http_requests"]]
    assert [r["http.request.uri"] for r in rows] == expected
    for row, want in zip(rows, truth["http_requests"], strict=True):
        assert row["http.request.method"] == want["method"]
        assert inner(row["tcp.dstport"]) == str(want["server_port"])
        assert inner(row["ip.dst"]) == want["server_ip"]
        copies = truth.get("copies_per_packet", 1)
        request_line = f"{want['method']} {want['uri']} HTTP/1.1"
        assert tshark.count(path, f'tcp contains "{request_line}"', decode) == copies
    if truth["http_requests"]:
        codes = tshark.fields(path, ["http.response.code"], "http.response", decode)
        assert [c["http.response.code"] for c in codes] == ["200"] * len(expected)


def test_source_address_seen(sample):
    path, _, truth, decode = sample
    client_side = "http.request || (tcp.flags.syn == 1 && tcp.flags.ack == 0)"
    client_side += " || dns.flags.response == 0"
    rows = tshark.fields(path, ["ip.src"], client_side, decode)
    assert rows
    assert {inner(r["ip.src"]) for r in rows} == {truth["src_ip_seen"]}
    if truth["snat_applied"]:
        assert truth["src_ip_seen"] in (truth["client_ip"], truth["snat"]["wire_ip"])
    else:
        assert truth["src_ip_seen"] == truth["client_ip"]


def test_markers(sample):
    path, _, truth, decode = sample
    copies = truth.get("copies_per_packet", 1)
    for marker in truth["markers"]:
        assert tshark.count(path, f'tcp contains "{marker}"', decode) == copies
    if not truth["markers"]:
        assert tshark.count(path, 'tcp contains "lbtest"', decode) == 0
    if truth.get("payloads"):
        rows = tshark.fields(
            path, ["tcp.payload"], f"tcp.dstport == {truth['server_port']} && tcp.len > 0"
        )
        sent = [bytes.fromhex(r["tcp.payload"].replace(":", "")).decode() for r in rows]
        assert sent == truth["payloads"]


def test_drops_and_refusals(sample):
    path, _, truth, decode = sample
    syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0"
    synack = "tcp.flags.syn == 1 && tcp.flags.ack == 1"
    rst = "tcp.flags.reset == 1"
    if truth["dropped"]:
        assert tshark.count(path, syn, decode) >= 2  # the SYN and at least one retransmission
        assert tshark.count(path, synack, decode) == 0
        assert tshark.count(path, rst, decode) == 0
        assert tshark.count(path, "tcp.analysis.retransmission", decode) >= 1
    elif truth["refused"]:
        assert tshark.count(path, synack, decode) == 0
        rows = tshark.fields(path, ["ip.src", "tcp.srcport"], rst, decode)
        assert rows == [
            {"ip.src": truth["refused"]["server_ip"], "tcp.srcport": str(truth["refused"]["port"])}
        ]
    elif not truth.get("dns_lookups"):  # the DNS sample has no TCP
        assert tshark.count(path, synack, decode) >= 1
        assert tshark.count(path, rst, decode) == 0


def test_dns_lookups(sample):
    """The queries tshark sees are those the DNS server logged, and the dns report folds them
    into the lookups the client made, with the verdicts the server's zone caused."""
    path, doc, truth, _ = sample
    lookups = truth.get("dns_lookups") or []
    queries = tshark.fields(path, ["dns.qry.name"], "dns.flags.response == 0")
    assert len(queries) == sum(lookup["queries"] for lookup in lookups)
    tried = [name for lookup in lookups for name in lookup["names_tried"]]
    assert list(dict.fromkeys(q["dns.qry.name"] for q in queries)) == tried
    nxdomain = tshark.count(path, "dns.flags.rcode == 3")
    assert nxdomain == sum(lookup["nxdomain"] for lookup in lookups)
    if lookups:
        report = analyze([path], reports=["dns"])["dns"].set_index("name")
        for lookup in lookups:
            row = report.loc[lookup["name"]]
            assert row["verdict"] == lookup["verdict"]
            assert (row["queries"], row["unanswered"]) == (lookup["queries"], lookup["lost"])
            assert row["client_pod"] == f"{doc['point']['namespace']}/{doc['point']['pod']}"


def test_mtu_blackhole(sample):
    """The black hole the lab made (a narrow NIC, its ICMP dropped) is what the tcp report
    names, with the size tshark sees sent again and the DF bit it reads."""
    path, _, truth, _ = sample
    hole = truth.get("mtu_blackhole")
    if not hole:
        return
    problems = analyze([path], reports=["tcp"])["tcp"]
    found = problems[problems["problem"] == "mtu_blackhole"]
    assert len(found) == 1
    hint = found.iloc[0]["hint"]
    assert f"{hole['lost_size']} bytes from the server {hole['sender']}" in hint
    assert "no ICMP 'fragmentation needed'" in hint
    again = tshark.fields(path, ["tcp.len", "ip.flags.df"], "tcp.analysis.retransmission")
    assert str(hole["lost_size"]) in {r["tcp.len"] for r in again}
    assert ("with DF set" in hint) == (again[0]["ip.flags.df"] in ("1", "True"))


def test_conntrack(sample):
    """The SNAT collision the lab made: the conntrack report of the set's files names the
    Pod that lost and the one that held the port, and counts the SYNs the kernel dropped."""
    path, _, truth, _ = sample
    expected = truth.get("conntrack")
    if not expected:
        return
    files = [os.path.join(SAMPLES, name) for name in expected["files"]]
    table = analyze(files, reports=["conntrack"])["conntrack"]
    assert table["verdict"].tolist() == [expected["verdict"]]
    row = table.iloc[0]
    assert f"{row['client_ip']}:{row['client_port']}" == expected["client"]
    assert row["other"].split(" ")[0] == expected["other"]
    assert row["shared_end"] == expected["shared_end"]
    assert row["lost"] == expected["syns_lost"] == tshark.count(
        path, "tcp.flags.syn == 1 && tcp.flags.ack == 0")  # fmt: skip


def test_encapsulation(sample):
    path, _, truth, decode = sample
    encap = truth["encapsulation"]
    if not encap:
        assert tshark.count(path, "udp.port == 8472 || udp.port == 4789") == 0
        return
    total = tshark.count(path, "frame")
    rows = tshark.fields(path, ["ip.src", "udp.dstport", "vxlan.vni"], "vxlan", decode)
    assert len(rows) == total  # every frame is encapsulated
    for row in rows:
        assert row["udp.dstport"] == str(encap["udp_port"])
        assert row["vxlan.vni"] == str(encap["vni"])
        assert row["ip.src"].split(",")[0] in (encap["outer_src"], encap["outer_dst"])
    assert tshark.count(path, "vxlan", []) == 0  # Wireshark needs "Decode As" for 8472


def test_snat_ports(sample):
    """Where SNAT applied, each connection shows the Pod's port in the Pod and the rewritten
    (node IP, port) on the node's NIC and at the peer: the same request, matched by URI."""
    path, doc, truth, decode = sample
    snat = truth["snat"]
    if not snat:
        return
    conns = snat.get("connections") or [
        {
            "uri": truth["http_requests"][0]["uri"],
            "pod_ip": snat["pod_ip"],
            "pod_port": snat["pod_port"],
            "wire_ip": snat["wire_ip"],
            "wire_port": snat["wire_port"],
        }
    ]
    at_pod = doc["point"]["kind"] == "pod"
    for conn in conns:
        rows = tshark.fields(
            path, ["ip.src", "tcp.srcport"], f'http.request.uri == "{conn["uri"]}"'
        )
        want = (
            (conn["pod_ip"], conn["pod_port"]) if at_pod else (conn["wire_ip"], conn["wire_port"])
        )
        assert rows == [{"ip.src": want[0], "tcp.srcport": str(want[1])}]
        assert conn["wire_ip"] != conn["pod_ip"]


def test_multipoint_sets_share_one_scenario():
    sets: dict[str, list[dict]] = {}
    for path in CAPTURES:
        doc = truth_file(path)
        if "multipoint_set" in doc:
            sets.setdefault(doc["multipoint_set"]["set"], []).append(doc)
    assert "10-snat" in sets
    for docs in sets.values():
        files = docs[0]["multipoint_set"]["files"]
        assert sorted(d["file"] for d in docs) == files
        assert {d["multipoint_set"]["point"] for d in docs} == {"pod", "node", "peer"}
        assert len({d["scenario"] for d in docs}) == 1
        conns = {json.dumps(d["ground_truth"]["snat"], sort_keys=True) for d in docs}
        assert len(conns) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_the_script_remakes_captures(tmp_path):
    """scripts/make_sample_pcaps.py runs again and writes captures its truth files describe."""
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.make_sample_pcaps",
            "--out",
            str(tmp_path),
            "--only",
            "01",
            "07",
            "10",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(
        f"{stem}.{ext}"
        for stem in (
            "01-http-mytest",
            "07-conn-refused",
            "10-snat-pod",
            "10-snat-node",
            "10-snat-peer",
        )
        for ext in ("pcap", "json", "truth.json")
    )
    first = str(tmp_path / "01-http-mytest.pcap")
    uris = [
        r["http.request.uri"] for r in tshark.fields(first, ["http.request.uri"], "http.request")
    ]
    assert uris == [r["uri"] for r in truth_file(first)["ground_truth"]["http_requests"]]
    assert read_sidecar(first) == sidecar(first)  # the current format, as written
    peer = truth_file(str(tmp_path / "10-snat-peer.pcap"))["ground_truth"]["snat"]["connections"]
    assert all(c["wire_ip"] == "172.20.0.11" and c["pod_ip"] == "10.244.0.10" for c in peer)
