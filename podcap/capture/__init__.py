"""Capture on a node: container -> PID, ``nsenter -n -t PID tcpdump``, the pcap home whole.

    from podcap.capture import CaptureSpec, CaptureSession
    from podcap.reach import open_transport

    spec = CaptureSpec(container_id="containerd://0123...", interface="eth0", bpf_filter="tcp port 80",
                       duration=30)
    result = CaptureSession(open_transport("ssh", "node1"), spec, "out.pcap").run()

Modules: ``node.sh`` (the node-side POSIX sh script), ``command`` (pure: spec, input checks,
node argv, parsing the script's status lines), ``stream`` (whole records to the file),
``session`` (one capture on one node: start/stop/result), ``fleet`` (captures run together,
one Ctrl-C/SIGTERM path; a capture --via local/ssh is a fleet of one), ``plan`` (Kubernetes
targets -> one helper Pod per node, dry run, pre-flight), ``pods`` (the Pods' captures as a
fleet), ``overlay_filter`` (the node NIC's BPF filter for one Pod), ``node_rules``
(iptables-save/ipvsadm from the node), ``merge`` (per-Pod pcaps -> one pcapng).
"""

from podcap.capture.command import (
    CaptureSpec,
    NodeReport,
    NodeStats,
    check_filter_safety,
    node_argv,
    normalize_container_id,
    parse_node_stderr,
    parse_size,
)
from podcap.capture.session import CaptureResult, CaptureSession, capture, resolve_pid
from podcap.capture.stream import StreamProgress
from podcap.sidecar import read_sidecar, sidecar_path

__all__ = [
    "CaptureResult",
    "CaptureSession",
    "CaptureSpec",
    "NodeReport",
    "NodeStats",
    "StreamProgress",
    "capture",
    "check_filter_safety",
    "node_argv",
    "normalize_container_id",
    "parse_node_stderr",
    "parse_size",
    "read_sidecar",
    "resolve_pid",
    "sidecar_path",
]
