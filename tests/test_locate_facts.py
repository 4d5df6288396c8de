"""podcap.locate.facts against the in-test API server: ip-masq-agent and the Service CIDR."""

from __future__ import annotations

from podcap import locate


def test_ip_masq_agent_and_service_cidr_facts(shop):
    cluster, kube = shop
    assert locate.cluster_facts(kube) == {"ip_masq_agent": None, "service_cidr": None}
    cluster.add_configmap(
        "kube-system",
        "ip-masq-agent-config",
        {"config": "nonMasqueradeCIDRs:\n  - 10.0.0.0/8\nmasqLinkLocal: false\n"},
    )
    cluster.add_configmap(
        "kube-system",
        "kubeadm-config",
        {"ClusterConfiguration": "networking:\n  serviceSubnet: 10.96.0.0/12\n"},
    )
    facts = locate.cluster_facts(kube)
    assert facts["ip_masq_agent"]["configmap"] == "kube-system/ip-masq-agent-config"
    assert facts["ip_masq_agent"]["config"]["nonMasqueradeCIDRs"] == ["10.0.0.0/8"]
    assert facts["service_cidr"] == "10.96.0.0/12"
    cluster.denied.add(("get", "configmaps", "kube-system"))  # unreadable is not an error
    assert locate.cluster_facts(kube)["ip_masq_agent"] is None
