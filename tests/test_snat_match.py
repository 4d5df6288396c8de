"""Cross-capture matching on packet tables built here: NAT-invariant keys, never addresses."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podcap.snat.facts import facts_from_flags, facts_from_sidecar
from podcap.snat.inputs import SnatInputs, snat_inputs, with_sidecars
from podcap.snat.masq_config import parse_masq_config
from podcap.snat.match import clock_offsets, match_connections, tcp_observations
from podcap.snat.report import snat_table

SYN, ACK, PSH = 0x02, 0x10, 0x08


def connection(
    file, client, server, *, isn=1000, server_isn=5000, tsval=777, ip_id=4242, ttl=64, t0=100.0,
    data=(b"lbtest",), syn=True,
):  # fmt: skip
    """Packets of one TCP connection as one capture saw it (schema columns the matcher reads)."""
    rows = []

    def add(src, dst, flags, seq, ack, length, ts_off, ttl_=ttl, tsv=tsval, ipid=ip_id):
        s_ip, s_port = src
        d_ip, d_port = dst
        rows.append(
            dict(file=file, ts=t0 + ts_off, src=s_ip, dst=d_ip, sport=s_port, dport=d_port,
                 ip_proto=6, ip_id=ipid, ttl=ttl_, tcp_flags=flags, tcp_seq=seq, tcp_ack=ack,
                 tcp_tsval=tsv, payload_len=length, outer_src="", outer_dst="")
        )  # fmt: skip

    if syn:
        add(client, server, SYN, isn, 0, 0, 0.0)
        add(
            server, client, SYN | ACK, server_isn, isn + 1, 0, 0.001, ttl_=64, tsv=tsval + 1, ipid=0
        )
    seq, off = isn + 1, 0.002
    for chunk in data:
        add(client, server, PSH | ACK, seq, server_isn + 1, len(chunk), off, ipid=ip_id + 1)
        add(server, client, ACK, server_isn + 1, seq + len(chunk), 0, off + 0.001, ttl_=64, ipid=1)
        seq, off = seq + len(chunk), off + 0.002
    return rows


def table(*connections):
    return pd.DataFrame([row for rows in connections for row in rows])


POD, NODE, PEER = ("10.244.0.10", 41000), ("172.20.0.11", 61001), ("198.51.100.10", 443)


def test_masquerade_with_random_fully_is_matched_and_ordered_by_ttl():
    packets = table(
        connection("peer.pcap", NODE, PEER, ttl=62, t0=105.0),  # given first on purpose
        connection("pod.pcap", POD, PEER, ttl=64),
    )
    [row] = snat_table(packets).itertuples()
    assert (row.verdict, row.original_src, row.observed_src, row.observed_sport) == (
        "snat", POD[0], NODE[0], NODE[1],
    )  # fmt: skip
    assert row.captures == "pod.pcap -> peer.pcap"
    assert row.clock_offset_s == 5.0


def test_same_isn_but_other_timestamps_is_a_different_connection():
    packets = table(
        connection("pod.pcap", POD, PEER, ttl=64),
        connection("peer.pcap", NODE, PEER, ttl=62, tsval=999, server_isn=6000),
    )
    result = snat_table(packets)
    assert len(result) == 2 and set(result.verdict) == {"unknown"}


def test_one_shared_key_is_not_enough():
    # Only the client ISN agrees (no timestamps, no SYN-ACK seen, no IP ID, no data): no match.
    pod = [
        r
        for r in connection("pod.pcap", POD, PEER, tsval=-1, ip_id=0, data=())
        if r["tcp_flags"] == SYN
    ]
    peer = [
        r
        for r in connection("peer.pcap", NODE, PEER, tsval=-1, ip_id=0, data=())
        if r["tcp_flags"] == SYN
    ]
    assert len(match_connections(tcp_observations(table(pod, peer)))) == 2


def test_mid_stream_captures_match_by_data_segments():
    chunks = (b"a" * 10, b"b" * 20, b"c" * 30)
    packets = table(
        connection("pod.pcap", POD, PEER, data=chunks, syn=False),
        connection("peer.pcap", NODE, PEER, data=chunks, syn=False, ttl=62),
    )
    [conn] = match_connections(tcp_observations(packets))
    assert [o.file for o in conn.observations] == ["pod.pcap", "peer.pcap"]
    assert conn.evidence == ["3 data segments (seq, ack, length)"]


def test_dnat_is_reported_with_the_service_address():
    backend = ("10.244.1.10", 8080)
    packets = table(
        connection("pod.pcap", POD, ("10.96.0.10", 80)),
        connection("backend.pcap", POD, backend, ttl=62),
    )
    inputs = snat_inputs(service_cidrs=["10.96.0.0/16"])
    [row] = snat_table(packets, inputs).itertuples()
    assert row.verdict == "preserved" and row.dnat == "10.96.0.10:80 -> 10.244.1.10:8080"
    assert "Service ClusterIP 10.96.0.10:80 was DNATed" in row.explanation


def test_clock_offsets_per_pair_of_captures():
    packets = table(
        connection("a.pcap", POD, PEER, isn=1, t0=10.0),
        connection("b.pcap", NODE, PEER, isn=1, t0=12.5, ttl=62),
        connection("a.pcap", (POD[0], 41001), PEER, isn=2, t0=20.0),
        connection("b.pcap", (NODE[0], 61002), PEER, isn=2, t0=22.5, ttl=62),
    )
    offsets = clock_offsets(match_connections(tcp_observations(packets)))
    assert offsets.to_dict("records") == [
        {"file_a": "a.pcap", "file_b": "b.pcap", "offset_s": 2.5, "connections": 2}
    ]
    assert snat_table(packets).attrs["clock_offsets"] == offsets.to_dict("records")
    # Records, not a DataFrame: two snat tables can still be combined (pandas compares attrs).
    both = snat_table(packets).notna() & snat_table(packets).notna()
    assert both.attrs["clock_offsets"][0]["offset_s"] == 2.5


@settings(max_examples=40, deadline=None)
@given(
    isn=st.integers(0, 2**32 - 1),
    tsval=st.integers(0, 2**32 - 1),
    new_port=st.integers(1024, 65535),
    new_ip=st.ip_addresses(v=4).map(str),
)
def test_any_source_rewrite_is_found(isn, tsval, new_port, new_ip):
    packets = table(
        connection("pod.pcap", POD, PEER, isn=isn, tsval=tsval),
        connection("peer.pcap", (new_ip, new_port), PEER, isn=isn, tsval=tsval, ttl=63),
    )
    [row] = snat_table(packets).itertuples()
    assert row.observed_src == new_ip and row.observed_sport == new_port
    assert row.verdict == ("preserved" if new_ip == POD[0] else "snat")


def test_capture_sidecar_gives_facts_the_capture_pod_and_the_agent_config():
    sidecar = {
        "target": {"pod": "web-a0", "namespace": "default"},
        "cluster": {
            "source": "kubernetes",
            "pod": {
                "namespace": "default",
                "pod": "web-a0",
                "pod_ips": [POD[0]],
                "host_ip": NODE[0],
                "host_network": False,
                "node": {"name": "node-a", "internal_ip": NODE[0], "pod_cidrs": ["10.244.0.0/24"]},
            },
            "pod_ip": POD[0],
            "node_ip": NODE[0],
            "pod_cidrs": ["10.244.0.0/24"],
            "service_cidr": "10.96.0.0/16",
            "ip_masq_agent": {
                "configmap": "kube-system/ip-masq-agent-config",
                "config": {"nonMasqueradeCIDRs": ["10.244.0.0/16"]},
                "raw": "nonMasqueradeCIDRs: [10.244.0.0/16]\n",
            },
        },
    }
    found = facts_from_sidecar(sidecar, "pod.pcap.json")
    assert (
        found.capture_pod_ip == POD[0]
        and found.facts.describe_node(NODE[0]) == "node node-a (172.20.0.11)"
    )
    inputs = with_sidecars(snat_inputs(node_ips=[NODE[0]]), {"pod.pcap": sidecar})
    assert inputs.capture_pods == {"pod.pcap": POD[0]}
    assert inputs.masq.configmap_name == "ip-masq-agent-config"
    # The table says which facts it used, and where they came from.
    assert inputs.sources == (
        "--node-ip",
        "sidecar of pod.pcap (Pod IP, node IP, Pod CIDRs, Service CIDR, ip-masq-agent config)",
    )
    note = snat_table(table(connection("pod.pcap", POD, PEER)), inputs).attrs["note"]
    assert note == "facts: " + "; ".join(inputs.sources)
    # One capture in the client Pod plus its sidecar: the ConfigMap predicts the rewrite.
    [row] = snat_table(table(connection("pod.pcap", POD, PEER)), inputs).itertuples()
    assert (
        row.verdict == "snat"
        and "198.51.100.10 is not in NonMasqueradeCIDRs (10.244.0.0/16)" in row.explanation
    )
    assert row.fix.endswith("kubectl -n kube-system edit configmap ip-masq-agent-config")


def test_no_facts_no_second_capture_gives_unknown():
    [row] = snat_table(table(connection("peer.pcap", NODE, PEER))).itertuples()
    assert row.verdict == "unknown" and row.fix == ""
    assert SnatInputs().facts.empty


def test_a_pod_address_towards_a_masqueraded_destination_was_captured_before_the_nat():
    inputs = SnatInputs(
        facts=facts_from_flags(["10.244.0.0/16"]),
        masq=parse_masq_config("nonMasqueradeCIDRs: [10.244.0.0/16]\n", "cm"),
    )
    [out] = snat_table(table(connection("x.pcap", POD, PEER)), inputs).itertuples()
    assert out.verdict == "snat" and "before the node's NAT" in out.evidence
    assert out.explanation.startswith("Predicted from the node's rules: 198.51.100.10 is not in")
    [kept] = snat_table(table(connection("x.pcap", POD, ("10.244.1.10", 80))), inputs).itertuples()
    assert (
        kept.verdict == "preserved"
        and "is in NonMasqueradeCIDRs (10.244.0.0/16)" in kept.explanation
    )


def test_packet_table_categoricals_are_read_as_text():
    """The decoder's text columns are categoricals, src and dst each over its own strings.
    A connection seen without its SYN whose first sender has the lower port makes the
    matcher swap src and dst: that must work on them as on text."""
    client, server = ("10.244.0.10", 1000), ("198.51.100.10", 8443)
    packets = table(connection("pod.pcap", client, server, syn=False))
    packets = packets.astype({"src": "category", "dst": "category", "file": "category"})
    packets["src"] = packets["src"].cat.add_categories(["192.0.2.1"])  # seen elsewhere only
    assert list(packets["src"].cat.categories) != list(packets["dst"].cat.categories)
    [observation] = tcp_observations(packets)
    # Without a SYN the higher port is taken for the client.
    assert (observation.client_ip, observation.client_port) == ("198.51.100.10", 8443)
    assert (observation.server_ip, observation.server_port) == ("10.244.0.10", 1000)


def test_a_facts_file_with_an_unknown_key_names_it_and_the_known_ones(tmp_path):
    from podcap.errors import UsageError
    from podcap.snat.facts import load_facts

    facts = tmp_path / "facts.yaml"
    facts.write_text("pod_cidr: [10.244.0.0/16]\n")  # pod_cidrs meant: ignored silently once
    with pytest.raises(UsageError, match=r"unknown key 'pod_cidr'") as raised:
        load_facts(facts)
    assert "pod_cidrs, service_cidrs, node_ips, nodes, pods, ipsets" in raised.value.hint
    facts.write_text("pod_cidrs: [10.244.0.0/16]\nnode_ip: 172.20.0.11\npod_ip: 10.244.0.5\n")
    assert load_facts(facts).pod_cidrs == ("10.244.0.0/16",)  # a sidecar's cluster keys too
