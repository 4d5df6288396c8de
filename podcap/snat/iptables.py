"""Read ``iptables-save`` (or ``iptables -S``) from a node and walk nat POSTROUTING for one packet.

POSTROUTING is where every masquerading agent hooks in: kube-proxy (KUBE-POSTROUTING, only for
packets it marked 0x4000), ip-masq-agent (IP-MASQ-AGENT; GKE calls it IP-MASQ), flannel
(FLANNEL-POSTRTG), Calico (cali-nat-outgoing), Cilium (CILIUM_POST_nat) and the AWS VPC CNI
(AWS-SNAT-CHAIN-0). Walking the chain in order for (Pod IP, destination) names the first rule
that masquerades the packet, or the rule that let it through untouched.

Some matches cannot be decided from the rules alone (ipsets, interfaces, marks). The walk then
assumes the ordinary case for Pod egress and says so in ``WalkResult.assumptions``.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from podcap.errors import UsageError
from podcap.snat.inputfiles import read_text_file

NAT_TARGETS = {"MASQUERADE", "SNAT"}
# Options that take no value (everything else takes one; --match-set takes two).
_FLAG_OPTIONS = {
    "--limit-iface-out",
    "--limit-iface-in",
    "--random",
    "--random-fully",
    "--persistent",
    "--rsource",
    "--rcheck",
    "--syn",
}
_TWO_VALUE_OPTIONS = {"--match-set", "--tcp-flags"}
_SHORT_NAMES = {
    "-s": "src",
    "--source": "src",
    "-d": "dst",
    "--destination": "dst",
    "-i": "in_iface",
    "--in-interface": "in_iface",
    "-o": "out_iface",
    "--out-interface": "out_iface",
    "-p": "proto",
    "--protocol": "proto",
}
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Condition:
    """One match of a rule: ``kind`` (src, dst, out_iface, --dst-type, --mark, ...), values."""

    kind: str
    values: tuple[str, ...]
    negated: bool = False
    module: str = ""


@dataclass(frozen=True)
class Rule:
    """One ``-A CHAIN ...`` line."""

    table: str
    chain: str
    line_no: int
    text: str
    conditions: tuple[Condition, ...]
    target: str
    target_args: tuple[str, ...] = ()
    goto: bool = False
    comment: str = ""

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.kind == kind), None)


@dataclass
class Ruleset:
    """All rules of an ``iptables-save`` dump, by (table, chain), in file order."""

    source: str
    chains: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)

    def rules(self, chain: str, table: str = "nat") -> list[Rule]:
        return self.chains.get((table, chain), [])

    def has_chain(self, chain: str, table: str = "nat") -> bool:
        return (table, chain) in self.chains


@dataclass(frozen=True)
class Packet:
    """What the walk needs to know about a packet leaving the node."""

    src: str
    dst: str
    proto: str = "tcp"
    sport: int | None = None
    dport: int | None = None
    out_iface: str | None = None
    mark: int = 0
    # Addresses of the node itself (addrtype LOCAL) and known ipset contents.
    local_addresses: frozenset[str] = frozenset()
    ipsets: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class WalkResult:
    """How nat POSTROUTING treats the packet.

    ``action`` is MASQUERADE or SNAT when a rule rewrites the source, ACCEPT when a rule ends
    the walk without NAT, ``none`` when the packet falls off the end. ``rule`` is the rule that
    decided (for ``none``, the last RETURN that exempted the packet, if any).
    """

    action: str
    rule: Rule | None
    path: tuple[Rule, ...]
    assumptions: tuple[str, ...]

    @property
    def masquerades(self) -> bool:
        return self.action in NAT_TARGETS


def load_iptables(path: str | Path) -> Ruleset:
    """Read an ``iptables-save`` or ``iptables -S`` dump from a file."""
    return parse_iptables_save(read_text_file(path, "iptables dump"), source=str(path))


def parse_iptables_save(text: str, source: str = "<iptables-save>") -> Ruleset:
    """Parse ``iptables-save`` text; ``iptables -S`` text (no ``*table`` lines) counts as nat."""
    ruleset = Ruleset(source=source)
    table = "nat"
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("Chain ") or line.startswith("target "):
            raise UsageError(
                f"{source}:{line_no}: this is 'iptables -L' output; give 'iptables-save' "
                "(or 'iptables -t nat -S') from the node instead"
            )
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            ruleset.chains.setdefault((table, line[1:].split()[0]), [])
        elif line.startswith("-N "):
            ruleset.chains.setdefault((table, line.split()[1]), [])
        elif line.startswith("-A ") and table == "nat":
            # Only nat rules are read (the walk is nat POSTROUTING's): the other tables' match
            # extensions (--tcp-flags MASK COMP, --syn, limits, ...) are not its business.
            rule = _parse_rule(table, line, line_no, source)
            ruleset.chains.setdefault((table, rule.chain), []).append(rule)
        elif line.startswith("-A "):
            continue
        elif not line.startswith("-P "):
            raise UsageError(f"{source}:{line_no}: not an iptables-save line: {line[:60]}")
    return ruleset


def _parse_rule(table: str, line: str, line_no: int, source: str) -> Rule:
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{source}:{line_no}: unbalanced quotes in rule") from exc
    chain = tokens[1]
    conditions: list[Condition] = []
    target, target_args, goto, comment = "", [], False, ""
    module, negate, i = "", False, 2
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate, i = True, i + 1
            continue
        if token in ("-j", "--jump", "-g", "--goto"):
            target, goto = tokens[i + 1], token in ("-g", "--goto")
            target_args = tokens[i + 2 :]
            break
        if token in ("-m", "--match"):
            module, i = tokens[i + 1], i + 2
            continue
        values, i = _option_values(tokens, i)
        if token not in _FLAG_OPTIONS and not values:
            raise UsageError(f"{source}:{line_no}: option {token} has no value: {line[:60]}")
        if token == "--comment":
            comment = values[0]
        else:
            kind = _SHORT_NAMES.get(token, token)
            conditions.append(
                Condition(kind, values, negate, "" if kind in _SHORT_NAMES.values() else module)
            )
        negate = False
    if not target:
        raise UsageError(f"{source}:{line_no}: rule has no -j target: {line[:60]}")
    return Rule(
        table, chain, line_no, line, tuple(conditions), target, tuple(target_args), goto, comment
    )


def _option_values(tokens: list[str], i: int) -> tuple[tuple[str, ...], int]:
    option = tokens[i]
    if option in _FLAG_OPTIONS:
        return (), i + 1
    count = 2 if option in _TWO_VALUE_OPTIONS else 1
    return tuple(tokens[i + 1 : i + 1 + count]), i + 1 + count


def walk_postrouting(ruleset: Ruleset, packet: Packet) -> WalkResult:
    """Follow nat POSTROUTING for ``packet`` until a rule NATs it, accepts it, or the chain ends."""
    walker = _Walker(ruleset, packet)
    action, rule = walker.run("POSTROUTING", depth=0)
    if action == "return":
        action, rule = "none", walker.last_exemption
    return WalkResult(action, rule, tuple(walker.path), tuple(dict.fromkeys(walker.assumptions)))


class _Walker:
    def __init__(self, ruleset: Ruleset, packet: Packet):
        self.ruleset = ruleset
        self.packet = packet
        self.path: list[Rule] = []
        self.assumptions: list[str] = []
        self.last_exemption: Rule | None = None

    def run(self, chain: str, depth: int) -> tuple[str, Rule | None]:
        if depth > _MAX_DEPTH:
            raise UsageError(f"{self.ruleset.source}: chain {chain} nests deeper than {_MAX_DEPTH}")
        for rule in self.ruleset.rules(chain):
            if not all(self._evaluate(c) != c.negated for c in rule.conditions):
                continue
            self.path.append(rule)
            outcome = self._apply(rule, depth)
            if outcome is not None:
                return outcome
        return "return", None

    def _apply(self, rule: Rule, depth: int) -> tuple[str, Rule | None] | None:
        """Run the rule's target; a result ends this chain, None goes on to the next rule."""
        target = rule.target
        if target in NAT_TARGETS or target in ("ACCEPT", "DROP"):
            return target, rule
        if target == "RETURN":
            if any(c.kind in ("src", "dst") for c in rule.conditions):
                self.last_exemption = rule
            return "return", rule
        if target == "MARK":
            self.packet = replace(self.packet, mark=_apply_mark(self.packet.mark, rule.target_args))
            return None
        if self.ruleset.has_chain(target):
            action, decided = self.run(target, depth + 1)
            if action != "return":
                return action, decided
            return ("return", None) if rule.goto else None
        return None  # LOG, CONNMARK and other non-terminating targets

    def _evaluate(self, cond: Condition) -> bool:
        p = self.packet
        kind = cond.kind
        if kind in ("src", "dst"):
            return _in_cidr(p.src if kind == "src" else p.dst, cond.values[0])
        if kind == "proto":
            return cond.values[0] in ("all", "0", p.proto)
        if kind == "out_iface":
            return self._out_iface(cond)
        if kind == "in_iface":
            return False  # POSTROUTING rules never see an input interface
        if kind in ("--dst-type", "--src-type"):
            address = p.dst if kind == "--dst-type" else p.src
            return "LOCAL" in cond.values[0].split(",") and address in p.local_addresses
        if kind == "--mark":
            value, _, mask = cond.values[0].partition("/")
            return p.mark & int(mask or "0xffffffff", 0) == int(value, 0)
        if kind == "--match-set":
            return self._ipset(cond)
        if kind in ("--dport", "--sport"):
            port = p.dport if kind == "--dport" else p.sport
            return port is None or _in_port_range(port, cond.values[0])
        if kind in ("--mode", "--probability", "--every", "--packet"):
            self.assumptions.append("statistic match (--to-ports spreading) assumed to match")
            return True
        if kind in ("--limit-iface-out", "--limit-iface-in"):
            return True
        self.assumptions.append(f"cannot evaluate {kind} {' '.join(cond.values)}; taken as false")
        return False

    def _out_iface(self, cond: Condition) -> bool:
        name = cond.values[0]
        if self.packet.out_iface is None:
            # Pod egress leaves by the node's uplink, not by tunnel, bridge or VLAN devices.
            self.assumptions.append(f"packet assumed not to leave by {name}")
            return False
        if name.endswith("+"):
            return self.packet.out_iface.startswith(name[:-1])
        return self.packet.out_iface == name

    def _ipset(self, cond: Condition) -> bool:
        name, direction = cond.values[0], cond.values[1].split(",")[0]
        members = self.packet.ipsets.get(name)
        if members is None:
            self.assumptions.append(f"ipset {name} unknown; assumed not to contain the packet")
            return False
        address = self.packet.src if direction == "src" else self.packet.dst
        return any(_in_cidr(address, m) for m in members)


def _in_cidr(address: str, cidr: str) -> bool:
    ip = ipaddress.ip_address(address)
    network = ipaddress.ip_network(cidr, strict=False)
    return ip.version == network.version and ip in network


def _in_port_range(port: int, spec: str) -> bool:
    low, _, high = spec.partition(":")
    if not low.isdigit() or (high and not high.isdigit()):
        return True  # a service name from 'iptables -L' style; cannot tell, do not exclude
    return int(low) <= port <= int(high or low)


def _apply_mark(mark: int, args: tuple[str, ...]) -> int:
    """MARK target arithmetic as iptables-save prints it (--set-xmark) or as written."""
    if len(args) < 2:
        return mark
    option, spec = args[0], args[1]
    value, _, mask = spec.partition("/")
    v = int(value, 0)
    if option == "--set-xmark":
        m = int(mask or "0xffffffff", 0)
        return (mark & ~m) ^ v
    if option == "--or-mark":
        return mark | v
    if option == "--xor-mark":
        return mark ^ v
    if option == "--and-mark":
        return mark & v
    if option == "--set-mark":
        m = int(mask or "0xffffffff", 0)
        return (mark & ~m) | v
    return mark


def chain_owner(chain: str, comment: str = "") -> str:
    """Which agent writes a nat chain, from its name (and comment when the name is generic)."""
    if chain == "IP-MASQ-AGENT" or comment.startswith("ip-masq-agent"):
        return "ip-masq-agent"
    if chain == "IP-MASQ" or comment.startswith("ip-masq:"):
        return "ip-masq-agent (GKE)"
    if chain.startswith("KUBE-"):
        return "kube-proxy"
    if chain.startswith("FLANNEL") or "flanneld" in comment:
        return "flannel"
    if chain.startswith("cali-"):
        return "Calico"
    if chain.startswith("CILIUM"):
        return "Cilium"
    if chain.startswith("AWS-"):
        return "AWS VPC CNI"
    return "a custom rule"


def exempt_destinations(ruleset: Ruleset, chain: str) -> list[str]:
    """The destination CIDRs a chain lets through before it masquerades (RETURN -d CIDR)."""
    cidrs = []
    for rule in ruleset.rules(chain):
        dst = rule.condition("dst")
        if rule.target in ("RETURN", "ACCEPT") and dst is not None and not dst.negated:
            cidrs.append(dst.values[0])
    return cidrs
