"""The dns report on real lookups in the namespace lab: glibc's resolver (getaddrinfo) in a
Pod whose resolv.conf is a kubelet's (search list, ndots:5), a responder of ours in another Pod
(testbed/lab/dns_server.py) answering, failing, truncating, staying silent or losing one answer
as its zone says, tcpdump in the client Pod. The report's rows are checked against what the
responder logged, and the exchanges against tshark's DNS fields."""

from __future__ import annotations

import pytest

from podcap.analysis.run import analyze
from tests.analyze_fixtures import dns_answers_both_ways

ZONE = {
    "addresses": {"api.shop": "93.184.216.34", "db.prod.svc.cluster.local": "10.96.3.3"},
    "servfail": ["broken.example.com"],
    "truncate": ["big.example.com"],
    "silent": ["dead.svc.cluster.local"],
    "lose_once": {"db.prod.svc.cluster.local": 28},  # the AAAA of the parallel pair
}
ASKED = ["api.shop", "db.prod", "nothere", "broken.example.com", "big.example.com",
         "dead.svc.cluster.local"]  # fmt: skip
VERDICTS = {"api.shop": "ndots_expansion", "db.prod": "conntrack_race", "nothere": "nxdomain",
            "broken.example.com": "servfail", "big.example.com": "truncated",
            "dead.svc.cluster.local": "timeout"}  # fmt: skip


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    from testbed.lab import Lab  # noqa: PLC0415
    from testbed.lab.dns_server import logged, resolv_conf, resolve, serving  # noqa: PLC0415
    from testbed.lab.fixtures import lab_unavailable  # noqa: PLC0415

    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("dns-lab")
    log, pcap = out / "dns.log", out / "client.pcap"
    with Lab(nodes=2, pods_per_node=1, overlay="routed") as lab:
        client, coredns = lab.pods
        with serving(lab, coredns, ZONE, log), resolv_conf(client, coredns.ip):
            with lab.capture(client, str(pcap), "udp port 53"):
                answers = {name: resolve(lab, client, name) for name in ASKED}
    return {"pcap": pcap, "logged": logged(log), "answers": answers, "client": client.ip}


@pytest.fixture(scope="module")
def lookups(resolved):
    table = analyze([resolved["pcap"]], reports=["dns"])["dns"]
    return table.set_index("name")


def _logged_for(resolved, base: str) -> list[dict]:
    return [e for e in resolved["logged"] if e["name"] == base or e["name"].startswith(base + ".")]


def test_the_resolver_got_what_the_zone_says(resolved):
    assert resolved["answers"]["api.shop"].returncode == 0
    assert "93.184.216.34" in resolved["answers"]["api.shop"].stdout
    assert resolved["answers"]["nothere"].returncode != 0


def test_each_lookup_is_one_row_with_the_verdict_the_zone_caused(lookups):
    assert set(lookups.index) == set(ASKED) - {"db.prod"} | {"db.prod"}  # each name, once
    assert lookups["verdict"].to_dict() == VERDICTS


@pytest.mark.parametrize("name", ASKED)
def test_the_counts_are_what_the_responder_logged(resolved, lookups, name):
    row, logged = lookups.loc[name], _logged_for(resolved, name)
    final = row["final_name"]
    assert row["queries"] == len(logged)
    assert row["unanswered"] == sum(e["done"] == "lost" for e in logged)
    assert row["wasted_queries"] == sum(
        e["done"] == "NXDOMAIN" and e["name"] != final for e in logged
    )
    assert row["client_ip"] == resolved["client"]


def test_the_search_list_walk_ends_on_the_name_as_asked(lookups):
    row = lookups.loc["api.shop"]
    assert (row["final_name"], row["answer"], row["rcode"]) == (
        "api.shop",
        "93.184.216.34",
        "NOERROR",
    )
    assert row["wasted_queries"] == 6  # three search domains, A and AAAA each


def test_the_exchanges_agree_with_tshark(resolved):
    found, expected = dns_answers_both_ways(resolved["pcap"])
    assert found == expected
    assert len(found) >= 20
