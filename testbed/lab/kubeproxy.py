"""kube-proxy's iptables rules for ClusterIP and NodePort Services, in its real shape.

What kube-proxy (iptables mode) writes to the nat table, reduced to what a lab Service needs:
``KUBE-SERVICES`` from PREROUTING and OUTPUT, one ``KUBE-SVC-<hash>`` per Service port picking
an endpoint with ``-m statistic --mode random --probability``, one ``KUBE-SEP-<hash>`` per
endpoint doing the DNAT, ``KUBE-NODEPORTS``/``KUBE-EXT-<hash>`` for NodePorts, and the 0x4000
mark that ``KUBE-POSTROUTING`` masquerades (traffic from outside the cluster CIDR, NodePort
traffic and hairpin traffic).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

MARK = "0x4000/0x4000"


@dataclass(eq=False)
class Service:
    name: str
    namespace: str
    cluster_ip: str
    port: int
    target_port: int
    protocol: str = "tcp"
    node_port: int | None = None
    port_name: str = "http"
    endpoints: list = field(default_factory=list)  # Pods

    @property
    def svc_port_name(self) -> str:
        return f"{self.namespace}/{self.name}:{self.port_name}"

    def chain(self, kind: str, extra: str = "") -> str:
        digest = hashlib.sha256((self.svc_port_name + self.protocol + extra).encode()).digest()
        return f"KUBE-{kind}-" + base64.b32encode(digest).decode()[:16]


def base_jumps() -> list[list[str]]:
    """The jumps kube-proxy puts first in the built-in chains (``iptables -I`` arguments)."""
    return [
        ["PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"],
        ["OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"],
        ["POSTROUTING", "-m", "comment", "--comment", "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING"],
    ]  # fmt: skip


def restore_text(services: Sequence[Service], cluster_cidr: str) -> str:
    """``iptables-restore --noflush`` input writing every KUBE-* chain for ``services``."""
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    rules = [
        f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MARK}",
        f"-A KUBE-POSTROUTING -m mark ! --mark {MARK} -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    for svc in services:
        svc_chain = svc.chain("SVC")
        chains.append(svc_chain)
        spn, proto = svc.svc_port_name, svc.protocol
        rules.append(
            f'-A KUBE-SERVICES -d {svc.cluster_ip}/32 -p {proto} -m comment --comment "{spn} cluster IP" '
            f"-m {proto} --dport {svc.port} -j {svc_chain}"
        )
        rules.append(
            f'-A {svc_chain} ! -s {cluster_cidr} -d {svc.cluster_ip}/32 -p {proto} -m comment --comment "{spn} cluster IP" '
            f"-m {proto} --dport {svc.port} -j KUBE-MARK-MASQ"
        )
        if svc.node_port:
            ext_chain = svc.chain("EXT")
            chains.append(ext_chain)
            rules.append(
                f'-A KUBE-NODEPORTS -p {proto} -m comment --comment "{spn}" -m {proto} --dport {svc.node_port} '
                f"-j {ext_chain}"
            )
            rules.append(
                f'-A {ext_chain} -m comment --comment "masquerade traffic for {spn} external destinations" '
                "-j KUBE-MARK-MASQ"
            )
            rules.append(f"-A {ext_chain} -j {svc_chain}")
        n = len(svc.endpoints)
        for i, pod in enumerate(svc.endpoints):
            endpoint = f"{pod.ip}:{svc.target_port}"
            sep_chain = svc.chain("SEP", endpoint)
            chains.append(sep_chain)
            pick = ""
            if i < n - 1:
                pick = f"-m statistic --mode random --probability {1 / (n - i):.11f} "
            rules.append(
                f'-A {svc_chain} -m comment --comment "{spn} -> {endpoint}" {pick}-j {sep_chain}'
            )
            rules.append(
                f'-A {sep_chain} -s {pod.ip}/32 -m comment --comment "{spn}" -j KUBE-MARK-MASQ'
            )
            rules.append(
                f'-A {sep_chain} -p {proto} -m comment --comment "{spn}" -m {proto} '
                f"-j DNAT --to-destination {endpoint}"
            )
    rules.append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
        'last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS'
    )
    lines = ["*nat", *(f":{c} - [0:0]" for c in chains), *rules, "COMMIT"]
    return "\n".join(lines) + "\n"
