"""podcap.netns.parse on the shapes ``ip -j`` and ``ss`` print (taken from real runs)."""

from __future__ import annotations

import pytest

from podcap import netns
from podcap.errors import CaptureError

IP_ADDR = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,'
    '"operstate":"UNKNOWN","address":"00:00:00:00:00:00","addr_info":[{"family":"inet",'
    '"local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo"}]},{"ifindex":2,'
    '"link_index":4,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],'
    '"mtu":1500,"operstate":"UP","address":"a2:51:f6:e3:11:6c","link_netnsid":0,'
    '"addr_info":[{"family":"inet","local":"10.244.0.10","prefixlen":24,"scope":"global"},'
    '{"family":"inet6","local":"fd00::a","prefixlen":64,"scope":"global"}]},'
    '{"ifindex":3,"ifname":"dummy0","mtu":1500,"operstate":"DOWN","address":"aa:bb:cc:dd:ee:ff",'
    '"addr_info":[]}]'
)


ROUTES4 = (
    '[{"dst":"default","gateway":"10.244.0.1","dev":"eth0","flags":[]},{"dst":"10.244.0.0/24",'
    '"dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.244.0.10","flags":[]},'
    '{"type":"local","dst":"10.244.0.10","dev":"eth0","table":"local","protocol":"kernel",'
    '"scope":"host","prefsrc":"10.244.0.10","flags":[]}]'
)


ROUTES6 = '[{"dst":"fd00::/64","dev":"eth0","protocol":"kernel","metric":256,"flags":[]}]'


SS = """\
tcp LISTEN 0      5      0.0.0.0:9000 0.0.0.0:* users:(("python3",pid=10360,fd=4))
tcp LISTEN 0      4096   [::]:8080    [::]:*    users:(("envoy",pid=7,fd=30),("envoy",pid=7,fd=31),("envoy",pid=8,fd=30))
udp UNCONN 0      0      127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=500,fd=13))
tcp LISTEN 0      128    0.0.0.0:2024  0.0.0.0:*
"""


def test_addresses_one_row_per_address_and_bare_interfaces_kept():
    table = netns.parse_addresses(IP_ADDR)
    assert list(table["interface"]) == ["lo", "eth0", "eth0", "dummy0"]
    eth0 = table[table["interface"] == "eth0"]
    assert list(eth0["address"]) == ["10.244.0.10", "fd00::a"]
    assert list(eth0["prefixlen"]) == [24, 64]
    assert set(eth0["peer_index"]) == {4}
    dummy = table[table["interface"] == "dummy0"].iloc[0]
    assert dummy["address"] == "" and dummy["state"] == "DOWN"


def test_routes_drop_the_local_table_and_keep_both_families():
    routes = netns.parse_routes(ROUTES4, ROUTES6)
    assert list(routes["dst"]) == ["default", "10.244.0.0/24", "fd00::/64"]
    assert list(routes["family"]) == ["inet", "inet", "inet6"]
    assert routes.iloc[0]["gateway"] == "10.244.0.1"
    assert routes.iloc[2]["metric"] == 256
    assert netns.parse_routes("[]", "").empty


def test_sockets_addresses_ports_and_processes():
    sockets = netns.parse_sockets(SS)
    assert list(sockets["local_port"]) == [9000, 8080, 53, 2024]
    assert list(sockets["local_address"]) == ["0.0.0.0", "::", "127.0.0.53%lo", "0.0.0.0"]
    envoy = sockets.iloc[1]
    assert envoy["process"] == "envoy" and envoy["pids"] == "7,8"
    assert sockets.iloc[2]["proto"] == "udp" and sockets.iloc[2]["state"] == "UNCONN"
    assert sockets.iloc[3]["process"] == ""  # a socket whose owner ss cannot see
    assert sockets.iloc[0]["peer_port"] is None  # "*": any port


def test_garbage_from_ip_is_a_clear_error():
    with pytest.raises(CaptureError, match="not JSON"):
        netns.parse_addresses('Object "addr" is unknown')
