"""Cluster facts for SNAT analysis: the ip-masq-agent configuration and the Service CIDR."""

from __future__ import annotations

import yaml
from kubernetes.client.rest import ApiException

from podcap.locate.kube import Kube, api_error

IP_MASQ_CONFIGMAPS = ("ip-masq-agent-config", "ip-masq-agent")


def cluster_facts(kube: Kube) -> dict:
    """ip-masq-agent configuration and service CIDR, when readable (else None: a missing
    ConfigMap or a denied read is normal and not an error)."""
    core = kube.core()
    return {"ip_masq_agent": ip_masq_agent(core), "service_cidr": service_cidr(core)}


def _read_configmap(core, name: str, namespace: str = "kube-system"):
    try:
        return core.read_namespaced_config_map(name=name, namespace=namespace)
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise api_error(exc, "get", "configmaps", namespace, name) from exc


def ip_masq_agent(core) -> dict | None:
    """The ip-masq-agent ConfigMap (``kube-system/ip-masq-agent-config`` or ``ip-masq-agent``):
    which destinations are NOT masqueraded (``nonMasqueradeCIDRs``)."""
    for name in IP_MASQ_CONFIGMAPS:
        cm = _read_configmap(core, name)
        if cm is None or not cm.data:
            continue
        text = cm.data.get("config") or next(iter(cm.data.values()))
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        return {"configmap": f"kube-system/{name}", "config": parsed, "raw": text}
    return None


def service_cidr(core) -> str | None:
    """The Service CIDR from kubeadm's ClusterConfiguration, where the cluster has one."""
    cm = _read_configmap(core, "kubeadm-config")
    if cm is None or not cm.data or "ClusterConfiguration" not in cm.data:
        return None
    try:
        cluster = yaml.safe_load(cm.data["ClusterConfiguration"]) or {}
    except yaml.YAMLError:
        return None
    return (cluster.get("networking") or {}).get("serviceSubnet")
