"""The ip-masq-agent ConfigMap: parse it the way the agent does, and decide with it.

The agent starts from its defaults and overwrites only the keys the file has; a present
``nonMasqueradeCIDRs`` replaces the default list instead of extending it. Keys match without
regard to case (Go's ``encoding/json`` does the same), which is why upstream's
``nonMasqueradeCIDRs`` and TKE's ``NonMasqueradeCIDRs`` both work. TKE adds
``NonMasqueradeSrcCIDRs``: Pods whose source is in it are never masqueraded.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from podcap.errors import UsageError
from podcap.snat.inputfiles import load_mapping, read_text_file

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The agent's built-in defaults (kubernetes-sigs/ip-masq-agent NewMasqConfig).
DEFAULT_NON_MASQUERADE_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
DEFAULT_RESYNC_INTERVAL = "60s"
DEFAULT_CIDR_LIMIT = 64
# The guide's name for the ConfigMap (TKE); upstream's example DaemonSet mounts "ip-masq-agent".
DEFAULT_CONFIGMAP_NAME = "ip-masq-agent-config"

_KNOWN_KEYS = {
    "nonmasqueradecidrs",
    "nonmasqueradesrccidrs",
    "masqlinklocal",
    "masqlinklocalipv6",
    "resyncinterval",
    "cidrlimit",
}


@dataclass(frozen=True)
class MasqDecision:
    """Whether the agent's chain masquerades one (source, destination) pair, and why."""

    masquerade: bool
    reason: str
    matched_cidr: str | None = None


@dataclass(frozen=True)
class MasqConfig:
    """One ip-masq-agent configuration, with the agent's defaults filled in."""

    non_masquerade_cidrs: tuple[Network, ...] = field(
        default_factory=lambda: tuple(ipaddress.ip_network(c) for c in DEFAULT_NON_MASQUERADE_CIDRS)
    )
    non_masquerade_src_cidrs: tuple[Network, ...] = ()
    masq_link_local: bool = False
    masq_link_local_ipv6: bool = False
    resync_interval: str = DEFAULT_RESYNC_INTERVAL
    cidr_limit: int = DEFAULT_CIDR_LIMIT
    cidrs_from_defaults: bool = True
    configmap_name: str = DEFAULT_CONFIGMAP_NAME
    source: str = "the agent's defaults"

    def cidr_list_text(self) -> str:
        """The destination list as the explanation names it."""
        cidrs = ", ".join(str(c) for c in self.non_masquerade_cidrs) or "an empty list"
        return cidrs + (" (the agent's defaults)" if self.cidrs_from_defaults else "")

    def decide(self, src: str | None, dst: str) -> MasqDecision:
        """Walk the agent's chain for a packet from ``src`` (a Pod; None: any Pod) to ``dst``."""
        src_ip = ipaddress.ip_address(src) if src else None
        dst_ip = ipaddress.ip_address(dst)
        for cidr in self.non_masquerade_src_cidrs if src_ip else ():
            if src_ip.version == cidr.version and src_ip in cidr:
                return MasqDecision(False, f"source {src} is in NonMasqueradeSrcCIDRs", str(cidr))
        link_local = LINK_LOCAL_V4 if dst_ip.version == 4 else LINK_LOCAL_V6
        masq_it = self.masq_link_local if dst_ip.version == 4 else self.masq_link_local_ipv6
        if dst_ip in link_local and not masq_it:
            return MasqDecision(
                False, f"{dst} is link-local and masqLinkLocal is false", str(link_local)
            )
        for cidr in self.non_masquerade_cidrs:
            if dst_ip.version == cidr.version and dst_ip in cidr:
                return MasqDecision(False, f"{dst} is in NonMasqueradeCIDRs ({cidr})", str(cidr))
        return MasqDecision(True, f"{dst} is not in NonMasqueradeCIDRs ({self.cidr_list_text()})")

    def iptables_rules(
        self, chain: str = "IP-MASQ-AGENT", random_fully: bool = True, jump: bool = True
    ) -> str:
        """The ``iptables-restore`` text the agent writes for this config (IPv4 part).

        Same rule order and comments as upstream ``syncMasqRules``, plus (``jump``) the POSTROUTING
        rule the agent appends once, separately. TKE's source exceptions come first as ``-s CIDR -j RETURN``.
        """
        local = '"ip-masq-agent: local traffic is not subject to MASQUERADE"'
        lines = ["*nat", f":{chain} - [0:0]"]
        for cidr in self._v4(self.non_masquerade_src_cidrs):
            lines.append(f"-A {chain} -s {cidr} -m comment --comment {local} -j RETURN")
        if not self.masq_link_local:
            lines.append(f"-A {chain} -d {LINK_LOCAL_V4} -m comment --comment {local} -j RETURN")
        for cidr in self._v4(self.non_masquerade_cidrs):
            lines.append(f"-A {chain} -d {cidr} -m comment --comment {local} -j RETURN")
        last = '"ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)"'
        masq = "-j MASQUERADE --random-fully" if random_fully else "-j MASQUERADE"
        lines.append(f"-A {chain} -m comment --comment {last} {masq}")
        jump_comment = (
            '"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic '
            f'to our custom {chain} chain"'
        )
        if jump:
            lines.append(
                f"-A POSTROUTING -m comment --comment {jump_comment} "
                f"-m addrtype ! --dst-type LOCAL -j {chain}"
            )
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _v4(cidrs: tuple[Network, ...]) -> list[Network]:
        return [c for c in cidrs if c.version == 4]


def load_masq_config(path: str | Path) -> MasqConfig:
    """Read a ConfigMap manifest, or the bare ``config`` file the agent mounts, YAML or JSON."""
    return parse_masq_config(read_text_file(path, "ip-masq-agent config"), source=str(path))


def parse_masq_config(text: str, source: str = "<config>") -> MasqConfig:
    """Parse ConfigMap or bare-config text; absent keys keep the agent's defaults."""
    document = load_mapping(text, source, "config keys")
    configmap_name = DEFAULT_CONFIGMAP_NAME
    if str(document.get("kind", "")).lower() == "configmap":
        configmap_name = (document.get("metadata") or {}).get("name") or configmap_name
        data = document.get("data") or {}
        if "config" not in data:
            raise UsageError(f"{source}: ConfigMap {configmap_name} has no data.config key")
        document = load_mapping(data["config"] or "", f"{source} data.config", "config keys")
    return _config_from_keys(document, source, configmap_name)


def _config_from_keys(document: dict, source: str, configmap_name: str) -> MasqConfig:
    keys = {str(k).lower(): v for k, v in document.items()}
    unknown = sorted(set(keys) - _KNOWN_KEYS)
    if unknown:
        raise UsageError(f"{source}: unknown ip-masq-agent key(s): {', '.join(unknown)}")
    values: dict = {"source": source, "configmap_name": configmap_name}
    if "nonmasqueradecidrs" in keys:
        values["non_masquerade_cidrs"] = _cidrs(
            keys["nonmasqueradecidrs"], "nonMasqueradeCIDRs", source
        )
        values["cidrs_from_defaults"] = False
    if "nonmasqueradesrccidrs" in keys:
        values["non_masquerade_src_cidrs"] = _cidrs(
            keys["nonmasqueradesrccidrs"], "NonMasqueradeSrcCIDRs", source
        )
    for key, attr in (
        ("masqlinklocal", "masq_link_local"),
        ("masqlinklocalipv6", "masq_link_local_ipv6"),
    ):
        if key in keys:
            values[attr] = _bool(keys[key], key, source)
    if "resyncinterval" in keys:
        values["resync_interval"] = str(keys["resyncinterval"])
    if "cidrlimit" in keys:
        values["cidr_limit"] = int(keys["cidrlimit"])
    config = MasqConfig(**values)
    if len(config.non_masquerade_cidrs) > config.cidr_limit:
        raise UsageError(
            f"{source}: {len(config.non_masquerade_cidrs)} nonMasqueradeCIDRs exceed cidrLimit {config.cidr_limit}"
        )
    return config


def _cidrs(value: object, key: str, source: str) -> tuple[Network, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UsageError(f"{source}: {key} must be a list of CIDRs")
    networks = []
    for item in value:
        try:
            # strict=True: the agent rejects CIDRs not aligned to their prefix (10.0.0.1/8).
            networks.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError as exc:
            raise UsageError(f"{source}: {key} entry {item!r} is not an aligned CIDR") from exc
    return tuple(networks)


def _bool(value: object, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UsageError(f"{source}: {key} must be true or false, got {value!r}")
