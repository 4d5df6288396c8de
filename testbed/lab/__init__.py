"""The network-namespace lab: a small cluster of nodes and Pods that tests capture from.

See core.py for the topology and README section "How the tests reach real components".
"""

from . import tshark
from .core import (
    CLUSTER_CIDR,
    IDC_IP,
    ROUTER_IP,
    VPC_CIDR,
    VXLAN_PORT,
    Host,
    Lab,
    LabError,
    Node,
    Pod,
    sweep_stale,
)

__all__ = [
    "CLUSTER_CIDR",
    "IDC_IP",
    "ROUTER_IP",
    "VPC_CIDR",
    "VXLAN_PORT",
    "Host",
    "Lab",
    "LabError",
    "Node",
    "Pod",
    "sweep_stale",
    "tshark",
]
