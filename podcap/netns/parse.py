"""The snapshot's raw text -> DataFrames: ``ip -j addr``, ``ip -j route`` and ``ss -tunlpH``."""

from __future__ import annotations

import json
import re

from podcap.errors import CaptureError


def parse_addresses(text: str):
    """``ip -j addr`` as one row per address (an interface without addresses: one row)."""
    import pandas as pd

    rows = []
    for link in _json_list(text, "ip -j addr"):
        base = {
            "interface": link.get("ifname", ""),
            "index": link.get("ifindex"),
            "state": link.get("operstate", ""),
            "mtu": link.get("mtu"),
            "mac": link.get("address", ""),
            "peer_index": link.get("link_index"),
        }
        addresses = link.get("addr_info") or [{}]
        for info in addresses:
            rows.append(
                base
                | {
                    "family": info.get("family", ""),
                    "address": info.get("local", ""),
                    "prefixlen": info.get("prefixlen"),
                    "scope": info.get("scope", ""),
                }
            )
    columns = ["interface", "index", "state", "mtu", "mac", "family", "address", "prefixlen"]
    columns += ["scope", "peer_index"]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("index", "mtu", "prefixlen", "peer_index"):
        table[column] = table[column].astype("Int64")
    return table


def parse_routes(ipv4: str, ipv6: str):
    """``ip -j route show table all`` (IPv4 then IPv6), without the kernel's ``local`` table
    (one entry per own address and broadcast: noise next to the routes the guide asks for)."""
    import pandas as pd

    rows = []
    for family, text in (("inet", ipv4), ("inet6", ipv6)):
        for route in _json_list(text, "ip -j route"):
            table = route.get("table", "main")
            if table == "local":
                continue
            rows.append(
                {
                    "family": family,
                    "table": table,
                    "type": route.get("type", "unicast"),
                    "dst": route.get("dst", ""),
                    "gateway": route.get("gateway", ""),
                    "dev": route.get("dev", ""),
                    "protocol": route.get("protocol", ""),
                    "scope": route.get("scope", ""),
                    "prefsrc": route.get("prefsrc", ""),
                    "metric": route.get("metric"),
                }
            )
    columns = ["family", "table", "type", "dst", "gateway", "dev", "protocol", "scope"]
    columns += ["prefsrc", "metric"]
    routes = pd.DataFrame(rows, columns=columns)
    routes["metric"] = routes["metric"].astype("Int64")
    return routes


def _json_list(text: str, what: str) -> list[dict]:
    if not text.strip():
        return []
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise CaptureError(f"{what} printed something that is not JSON: {text[:80]!r}") from exc
    return [item for item in parsed if isinstance(item, dict)]


USERS = re.compile(r'\("((?:[^"\\]|\\.)*)",pid=(\d+),fd=(\d+)\)')


def parse_sockets(text: str):
    """``ss -tunlpH``: one row per listening TCP or bound UDP socket, with its processes."""
    import pandas as pd

    rows = []
    for line in text.splitlines():
        fields = line.split(None, 6)
        if len(fields) < 6:
            continue
        netid, state, recv_q, send_q, local, peer = fields[:6]
        users = USERS.findall(fields[6]) if len(fields) > 6 else []
        local_address, local_port = _split_endpoint(local)
        peer_address, peer_port = _split_endpoint(peer)
        rows.append(
            {
                "proto": netid,
                "state": state,
                "local_address": local_address,
                "local_port": local_port,
                "peer_address": peer_address,
                "peer_port": peer_port,
                "process": ",".join(dict.fromkeys(name for name, _, _ in users)),
                "pids": ",".join(dict.fromkeys(pid for _, pid, _ in users)),
                "recv_q": int(recv_q) if recv_q.isdigit() else None,
                "send_q": int(send_q) if send_q.isdigit() else None,
            }
        )
    columns = ["proto", "state", "local_address", "local_port", "process", "pids"]
    columns += ["recv_q", "send_q", "peer_address", "peer_port"]
    sockets = pd.DataFrame(rows, columns=columns)
    for column in ("local_port", "recv_q", "send_q"):
        sockets[column] = sockets[column].astype("Int64")
    return sockets


def _split_endpoint(text: str) -> tuple[str, int | str | None]:
    """``0.0.0.0:80``, ``[::]:80``, ``*:53``, ``127.0.0.53%lo:53`` -> (address, port);
    the port stays ``*`` (any) where ss prints it so."""
    address, _, port = text.rpartition(":")
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if port.isdigit():
        return address, int(port)
    return address, None if port == "*" else port
