"""ip-masq-agent's rules, generated from a config shaped like its ConfigMap.

Same rule shape as kubernetes-sigs/ip-masq-agent (v2.10+): a chain ``IP-MASQ-AGENT`` holding one
``-d CIDR -j RETURN`` per NonMasqueradeCIDR (plus 169.254.0.0/16 unless masqLinkLocal), then
``-j MASQUERADE --random-fully``; and in POSTROUTING ``-m addrtype ! --dst-type LOCAL -j
IP-MASQ-AGENT``. Config semantics follow the agent: keys present replace defaults, a present
``nonMasqueradeCIDRs`` replaces the default RFC 1918 list, keys match case-insensitively.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

DEFAULT_NON_MASQUERADE_CIDRS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
CHAIN = "IP-MASQ-AGENT"
RETURN_COMMENT = "ip-masq-agent: local traffic is not subject to MASQUERADE"
MASQ_COMMENT = "ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)"
POSTROUTING_COMMENT = (
    "ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our "
    "custom IP-MASQ-AGENT chain"
)


def normalize_config(config: Mapping | None) -> dict:
    """Defaults overlaid with the keys present in ``config`` (matched case-insensitively)."""
    result = {
        "nonMasqueradeCIDRs": list(DEFAULT_NON_MASQUERADE_CIDRS),
        "masqLinkLocal": False,
        "resyncInterval": "60s",
    }
    keys = {k.lower(): k for k in result}
    for key, value in (config or {}).items():
        canonical = keys.get(str(key).lower())
        if canonical is None:
            continue
        result[canonical] = list(value) if canonical == "nonMasqueradeCIDRs" else value
    for cidr in result["nonMasqueradeCIDRs"]:
        net = ipaddress.ip_network(cidr, strict=False)
        if str(net) != cidr:
            raise ValueError(f"CIDR {cidr} is not aligned to a CIDR block")
    return result


def restore_text(config: Mapping | None, random_fully: bool = True) -> str:
    """The ``iptables-restore --noflush`` input that (re)writes the IP-MASQ-AGENT chain."""
    cfg = normalize_config(config)
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    cidrs = list(cfg["nonMasqueradeCIDRs"])
    if not cfg["masqLinkLocal"]:
        cidrs.insert(0, "169.254.0.0/16")
    for cidr in cidrs:
        lines.append(f'-A {CHAIN} -m comment --comment "{RETURN_COMMENT}" -d {cidr} -j RETURN')
    masq = f'-A {CHAIN} -m comment --comment "{MASQ_COMMENT}" -j MASQUERADE'
    lines.append(masq + (" --random-fully" if random_fully else ""))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def postrouting_rule() -> list[str]:
    """The rule the agent appends to nat POSTROUTING, as iptables arguments."""
    return [
        "-t", "nat", "-A", "POSTROUTING",
        "-m", "comment", "--comment", POSTROUTING_COMMENT,
        "-m", "addrtype", "!", "--dst-type", "LOCAL",
        "-j", CHAIN,
    ]  # fmt: skip


def masquerades(config: Mapping | None, dst: str) -> bool:
    """Whether the agent's chain masquerades a packet to ``dst`` (a non-LOCAL destination)."""
    cfg = normalize_config(config)
    cidrs = list(cfg["nonMasqueradeCIDRs"])
    if not cfg["masqLinkLocal"]:
        cidrs.append("169.254.0.0/16")
    addr = ipaddress.ip_address(dst)
    return not any(addr in ipaddress.ip_network(c) for c in cidrs)
