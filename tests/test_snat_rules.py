"""Parsing and deciding with the node's rules: ip-masq-agent ConfigMaps and iptables-save dumps.

The dumps are written here from each agent's documented rule shapes (see
/work/shared/notes/snat-and-nat-rules.md): ip-masq-agent (upstream and AKS), GKE's IP-MASQ,
kube-proxy, flannel, Calico, Cilium and the AWS VPC CNI.
"""

import pytest

from podcap.errors import UsageError
from podcap.snat.explain import explain
from podcap.snat.facts import ClusterFacts, facts_from_flags, facts_from_mapping, load_facts
from podcap.snat.iptables import (
    Packet,
    chain_owner,
    load_iptables,
    parse_iptables_save,
    walk_postrouting,
)
from podcap.snat.masq_config import load_masq_config, parse_masq_config

POD = "10.244.1.10"
IDC = "198.51.100.10"

# ---------------------------------------------------------------- ConfigMaps

UPSTREAM_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ip-masq-agent
  namespace: kube-system
data:
  config: |
    nonMasqueradeCIDRs:
      - 10.0.0.0/8
      - 192.168.10.0/24
    masqLinkLocal: false
    resyncInterval: 60s
"""

TKE_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: ip-masq-agent-config
  namespace: kube-system
data:
  config: '{"NonMasqueradeCIDRs":["172.16.0.0/16","10.67.0.0/16"],"NonMasqueradeSrcCIDRs":["172.16.0.2/32"],"MasqLinkLocal":true,"ResyncInterval":"1m0s","MasqLinkLocalIPv6":false}'
"""


def test_upstream_configmap_replaces_the_default_list():
    config = parse_masq_config(UPSTREAM_CONFIGMAP, "cm.yaml")
    assert [str(c) for c in config.non_masquerade_cidrs] == ["10.0.0.0/8", "192.168.10.0/24"]
    assert config.configmap_name == "ip-masq-agent"
    assert not config.cidrs_from_defaults
    # 172.16/12 is a default, but the file's list replaced the defaults.
    assert config.decide(POD, "172.16.5.5").masquerade
    assert not config.decide(POD, "192.168.10.7").masquerade
    assert not config.decide(POD, "169.254.169.254").masquerade  # masqLinkLocal false


def test_tke_json_keys_in_pascal_case_and_source_exceptions():
    config = parse_masq_config(TKE_CONFIGMAP, "tke.yaml")
    assert [str(c) for c in config.non_masquerade_cidrs] == ["172.16.0.0/16", "10.67.0.0/16"]
    assert config.masq_link_local and config.resync_interval == "1m0s"
    assert config.configmap_name == "ip-masq-agent-config"
    assert config.decide("172.16.0.9", "169.254.169.254").masquerade  # MasqLinkLocal true
    exempt = config.decide("172.16.0.2", IDC)
    assert not exempt.masquerade and "NonMasqueradeSrcCIDRs" in exempt.reason


def test_bare_config_absent_keys_keep_the_agent_defaults():
    config = parse_masq_config("masqLinkLocal: true\n", "bare")
    assert [str(c) for c in config.non_masquerade_cidrs] == [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
    ]
    assert config.cidrs_from_defaults and config.resync_interval == "60s"
    assert parse_masq_config("", "empty").decide(POD, "10.1.2.3").masquerade is False


def test_keys_match_case_insensitively():
    config = parse_masq_config("NONMASQUERADECIDRS: [100.64.0.0/10]\nmasqlinklocal: 'true'\n")
    assert [str(c) for c in config.non_masquerade_cidrs] == ["100.64.0.0/10"]
    assert config.masq_link_local


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonMasqueradeCIDRs: [10.0.0.1/8]\n", "not an aligned CIDR"),
        ("nonMasqueradeCIDR: [10.0.0.0/8]\n", "unknown ip-masq-agent key"),
        ("masqLinkLocal: maybe\n", "must be true or false"),
        ("kind: ConfigMap\nmetadata: {name: x}\ndata: {other: 1}\n", "no data.config"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_configs_fail_with_one_line_saying_where(text, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_masq_config(text, "cm.yaml")
    assert str(info.value).startswith("cm.yaml") and "\n" not in str(info.value)


@pytest.mark.parametrize("load", [load_facts, load_masq_config, load_iptables])
def test_every_input_file_rejects_binary_and_missing_files_in_one_line(load, tmp_path):
    binary = tmp_path / "capture.pcap"
    binary.write_bytes(bytes.fromhex("d4c3b2a102000400"))
    with pytest.raises(UsageError, match="is not text") as info:
        load(binary)
    assert str(binary) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UsageError, match="cannot read .*No such file"):
        load(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="cannot read .*Is a directory"):
        load(tmp_path)


def test_generated_rules_follow_the_agent_and_parse_back():
    config = parse_masq_config(TKE_CONFIGMAP)
    text = config.iptables_rules()
    assert "-A IP-MASQ-AGENT -s 172.16.0.2/32" in text
    assert "169.254.0.0/16" not in text  # MasqLinkLocal: true
    assert text.splitlines()[-3].endswith("-j MASQUERADE --random-fully")
    rules = parse_iptables_save(text)
    for dst in ("172.16.9.9", "10.67.1.1", IDC):
        walked = walk_postrouting(rules, Packet("10.1.1.1", dst))
        assert walked.masquerades == config.decide("10.1.1.1", dst).masquerade


# ---------------------------------------------------------------- iptables-save, per agent

IP_MASQ_AGENT_AKS = r"""# Generated by iptables-save v1.8.7 on Tue Jan  2 10:00:00 2024
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:IP-MASQ-AGENT - [0:0]
-A POSTROUTING -m comment --comment "\"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain\"" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT
-A IP-MASQ-AGENT -d 10.224.0.0/16 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ-AGENT -d 10.0.0.0/16 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ-AGENT -d 10.244.0.0/16 -m comment --comment "ip-masq-agent: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
COMMIT
"""

GKE_IP_MASQ = """*nat
:POSTROUTING ACCEPT [0:0]
:IP-MASQ - [0:0]
-A POSTROUTING -m comment --comment "ip-masq: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ chain" -m addrtype ! --dst-type LOCAL -j IP-MASQ
-A IP-MASQ -d 169.254.0.0/16 -m comment --comment "ip-masq: local traffic is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 10.0.0.0/8 -m comment --comment "ip-masq: RFC 1918 reserved range is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 172.16.0.0/12 -m comment --comment "ip-masq: RFC 1918 reserved range is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 192.168.0.0/16 -m comment --comment "ip-masq: RFC 1918 reserved range is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 198.51.100.0/24 -m comment --comment "ip-masq: RFC 5737 reserved range is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -d 100.64.0.0/10 -m comment --comment "ip-masq: RFC 6598 reserved range is not subject to MASQUERADE" -j RETURN
-A IP-MASQ -m comment --comment "ip-masq: outbound traffic is subject to MASQUERADE (must be last in chain)" -j MASQUERADE
COMMIT
"""

KUBE_PROXY = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
COMMIT
"""

FLANNEL = """*nat
:POSTROUTING ACCEPT [0:0]
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
"""

CALICO = """*nat
:POSTROUTING ACCEPT [0:0]
:cali-POSTROUTING - [0:0]
:cali-fip-snat - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-fip-snat
-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing
-A cali-POSTROUTING -o vxlan.calico -m comment --comment "cali:e9dnSgSVNmIcpVhP" -m addrtype ! --src-type LOCAL --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE --random-fully
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
"""

CILIUM = """*nat
:POSTROUTING ACCEPT [0:0]
:CILIUM_POST_nat - [0:0]
-A POSTROUTING -m comment --comment "cilium-feeder: CILIUM_POST_nat" -j CILIUM_POST_nat
-A CILIUM_POST_nat -s 10.244.1.0/24 -m set --match-set cilium_node_set_v4 dst -m comment --comment "exclude traffic to cluster nodes from masquerade" -j ACCEPT
-A CILIUM_POST_nat -s 10.244.1.0/24 ! -d 10.244.0.0/16 ! -o cilium_+ -m comment --comment "cilium masquerade non-cluster" -j MASQUERADE
-A CILIUM_POST_nat -m mark --mark 0xa00/0xe00 -m comment --comment "exclude proxy return traffic from masquerade" -j ACCEPT
COMMIT
"""

AWS_VPC_CNI = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:AWS-SNAT-CHAIN-0 - [0:0]
:AWS-CONNMARK-CHAIN-0 - [0:0]
-A PREROUTING -i eni+ -m comment --comment "AWS, outbound connections" -j AWS-CONNMARK-CHAIN-0
-A POSTROUTING -m comment --comment "AWS SNAT CHAIN" -j AWS-SNAT-CHAIN-0
-A AWS-CONNMARK-CHAIN-0 -d 10.244.0.0/16 -m comment --comment "AWS CONNMARK CHAIN, VPC CIDR" -j RETURN
-A AWS-SNAT-CHAIN-0 -d 10.244.0.0/16 -m comment --comment "AWS SNAT CHAIN" -j RETURN
-A AWS-SNAT-CHAIN-0 -d 10.12.0.0/16 -m comment --comment "AWS SNAT CHAIN EXCLUSION" -j RETURN
-A AWS-SNAT-CHAIN-0 ! -o vlan+ -m comment --comment "AWS, SNAT" -m addrtype ! --dst-type LOCAL -j SNAT --to-source 172.20.0.11 --random-fully
COMMIT
"""

FACTS = ClusterFacts(pod_cidrs=("10.244.0.0/16",), nodes={"172.20.0.11": "node-a"})


@pytest.mark.parametrize(
    ("dump", "owner", "masq_dst", "kept_dst", "fix_words"),
    [
        (
            IP_MASQ_AGENT_AKS,
            "ip-masq-agent",
            IDC,
            "10.224.3.4",
            "edit configmap ip-masq-agent-config",
        ),
        (GKE_IP_MASQ, "ip-masq-agent (GKE)", "8.8.8.8", IDC, "edit configmap ip-masq-agent"),
        (FLANNEL, "flannel", IDC, "10.244.0.7", "without --ip-masq"),
        (CALICO, "Calico", IDC, "10.244.0.7", "IPPool"),
        (CILIUM, "Cilium", IDC, "10.244.0.7", "cilium-config"),
        (AWS_VPC_CNI, "AWS VPC CNI", IDC, "10.12.4.4", "AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS"),
    ],
)
def test_each_agent_names_its_rule_and_fix(dump, owner, masq_dst, kept_dst, fix_words):
    rules = parse_iptables_save(dump, "node-a.iptables")
    masq = explain(POD, masq_dst, 443, FACTS, None, rules)
    assert masq.masquerades, masq
    assert masq.rewritten_by.startswith(owner + ":")
    assert masq_dst in masq.explanation and fix_words in masq.fix
    kept = explain(POD, kept_dst, 443, FACTS, None, rules)
    assert kept.masquerades is False and kept.fix == ""
    assert kept_dst in kept.explanation or "No rule" in kept.explanation


def test_aks_escaped_comment_and_reordered_matches_parse():
    rules = parse_iptables_save(IP_MASQ_AGENT_AKS)
    jump = rules.rules("POSTROUTING")[0]
    assert jump.comment.startswith('"ip-masq-agent: ensure nat POSTROUTING')
    assert jump.target == "IP-MASQ-AGENT"
    walked = walk_postrouting(rules, Packet(POD, IDC))
    assert walked.action == "MASQUERADE" and walked.rule.line_no == 10
    explained = explain(POD, IDC, 80, FACTS, None, rules)
    # Names the destination and the list it was checked against.
    assert (
        "198.51.100.10 is not in NonMasqueradeCIDRs (10.224.0.0/16, 10.0.0.0/16, 10.244.0.0/16)"
        in (explained.explanation)
    )


def test_kube_proxy_masquerades_only_marked_packets():
    rules = parse_iptables_save(KUBE_PROXY)
    assert walk_postrouting(rules, Packet(POD, IDC)).action == "none"
    marked = walk_postrouting(rules, Packet(POD, IDC, mark=0x4000))
    assert marked.action == "MASQUERADE" and chain_owner(marked.rule.chain) == "kube-proxy"
    assert "--random-fully" in marked.rule.target_args


def test_flannel_skips_kube_proxy_marked_and_in_cluster_traffic():
    rules = parse_iptables_save(FLANNEL)
    assert walk_postrouting(rules, Packet(POD, "10.244.0.9")).action == "none"
    assert walk_postrouting(rules, Packet(POD, IDC, mark=0x4000)).action == "none"
    assert walk_postrouting(rules, Packet(POD, "224.0.0.5")).action == "none"
    assert walk_postrouting(rules, Packet(POD, IDC)).rule.line_no == 9


def test_calico_needs_its_ipsets_and_says_when_it_assumed():
    rules = parse_iptables_save(CALICO)
    unknown = walk_postrouting(rules, Packet(POD, IDC))
    assert unknown.action == "none"
    assert any("cali40masq-ipam-pools unknown" in a for a in unknown.assumptions)
    ipsets = {
        "cali40masq-ipam-pools": ("10.244.0.0/16",),
        "cali40all-ipam-pools": ("10.244.0.0/16",),
    }
    known = walk_postrouting(rules, Packet(POD, IDC, ipsets=ipsets))
    assert known.action == "MASQUERADE" and "cali:flqWnvo8yq4ULQLa" == known.rule.comment
    # In-pool traffic passes on to the tunnel rule (host traffic into vxlan.calico), which is
    # not taken for Pod egress, and the walk says it assumed so.
    in_pool = walk_postrouting(rules, Packet(POD, "10.244.0.7", ipsets=ipsets))
    assert in_pool.action == "none"
    assert any("vxlan.calico" in a for a in in_pool.assumptions)


def test_cilium_accepts_traffic_to_cluster_nodes():
    rules = parse_iptables_save(CILIUM)
    to_node = walk_postrouting(
        rules, Packet(POD, "172.20.0.12", ipsets={"cilium_node_set_v4": ("172.20.0.12",)})
    )
    assert to_node.action == "ACCEPT"


def test_aws_snat_to_source_and_exclusions():
    rules = parse_iptables_save(AWS_VPC_CNI)
    walked = walk_postrouting(rules, Packet(POD, IDC))
    assert walked.action == "SNAT" and walked.rule.target_args[:2] == ("--to-source", "172.20.0.11")
    assert walk_postrouting(rules, Packet(POD, IDC, out_iface="vlan.eth.1")).action == "none"
    assert (
        walk_postrouting(rules, Packet(POD, IDC, local_addresses=frozenset({IDC}))).action == "none"
    )


def test_iptables_dash_s_output_reads_as_nat():
    text = "\n".join(
        ["-P POSTROUTING ACCEPT", "-N IP-MASQ-AGENT"]
        + [line for line in IP_MASQ_AGENT_AKS.splitlines() if line.startswith("-A ")]
    )
    assert walk_postrouting(parse_iptables_save(text), Packet(POD, IDC)).masquerades


def test_iptables_dash_l_listing_is_refused_with_what_to_give_instead():
    listing = "Chain IP-MASQ-AGENT (1 references)\ntarget     prot opt source destination\n"
    with pytest.raises(UsageError, match="give 'iptables-save'"):
        parse_iptables_save(listing, "dump.txt")


def test_rules_of_several_agents_are_walked_in_order():
    # Calico's chain comes first in POSTROUTING, so it decides before ip-masq-agent is reached.
    calico_first = CALICO.replace("COMMIT\n", "") + "\n".join(
        line for line in IP_MASQ_AGENT_AKS.splitlines() if line.startswith(("-A", ":IP"))
    )
    rules = parse_iptables_save(calico_first + "\nCOMMIT\n")
    explained = explain(POD, IDC, 80, FACTS, None, rules)
    assert explained.rewritten_by.startswith("Calico:")


def test_facts_from_flags_files_and_sidecars():
    flags = facts_from_flags(["10.244.0.0/16"], ["172.20.0.11"], ["10.96.0.0/16"])
    sidecar = facts_from_mapping(
        {
            "pod": "web-a0",
            "namespace": "default",
            "podIP": POD,
            "hostIP": "172.20.0.12",
            "node": "node-b",
        },
        "sidecar",
    )
    facts = flags.merged(sidecar)
    assert facts.is_pod(POD) and facts.is_node("172.20.0.12") and facts.is_service("10.96.0.10")
    assert facts.describe_node("172.20.0.12") == "node node-b (172.20.0.12)"
    assert facts.pods[POD].label == "Pod default/web-a0 (10.244.1.10)"
    assert not facts.in_cluster(IDC)
    with pytest.raises(UsageError, match="--node-ip"):
        facts_from_flags(node_ips=["node-a"])


def test_the_filter_tables_match_extensions_do_not_stop_the_nat_walk():
    # A node's whole iptables-save (podcap diagnose and --node-rules save it): the filter
    # table's rules use options of two values and flags that nat rules rarely carry. Found
    # when a diagnosis of a dropped SYN-ACK read it: "option DROP has no value".
    dump = """*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -s 10.244.1.10/32 -i eth0 -p tcp -m tcp --sport 80 --tcp-flags SYN,ACK SYN,ACK -j DROP
-A FORWARD -p tcp -m tcp --syn -m limit --limit 5/sec -j ACCEPT
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -p tcp -m tcp --tcp-flags SYN,RST SYN -d 203.0.113.0/24 -j MASQUERADE
-A POSTROUTING -d 198.51.100.0/24 -j MASQUERADE
COMMIT
"""
    rules = parse_iptables_save(dump, "node-a.iptables-save")
    assert ("filter", "FORWARD") not in {key for key, chain in rules.chains.items() if chain}
    walked = walk_postrouting(rules, Packet(POD, IDC))
    assert walked.masquerades
