"""A small Kubernetes-like cluster built from network namespaces, for tests that capture real
packets from real "Pods".

Topology (every address exists only inside the lab's own namespaces, so two labs never collide
and nothing is routed or filtered in the root namespace)::

                       IDC host 198.51.100.10 (optional, outside the VPC)
                               |
        VPC router  <pfx>-vpc: bridge br-vpc 172.20.0.1/24, idc0 198.51.100.1/24
            |                    |
        node-a 172.20.0.11    node-b 172.20.0.12       (<pfx>-node-a ...: eth0 on the "VPC")
        cni0 10.244.0.1/24    cni0 10.244.1.1/24       (pod CIDR 10.244.<i>.0/24)
            |                    |
        Pod 10.244.0.10       Pod 10.244.1.10          (<pfx>-<pod name>: eth0, a veth to cni0)

- overlay="routed": nodes route each other's pod CIDRs via the node IPs and the VPC router knows
  them too (VPC-native CNIs, flannel host-gw).
- overlay="vxlan": flannel's vxlan backend: ``flannel.1`` (VNI 1, UDP 8472) on each node, routes
  ``10.244.<j>.0/24 via 10.244.<j>.0 dev flannel.1 onlink`` with static ARP and FDB entries, so
  a capture on a node's eth0 shows Pod traffic encapsulated between node IPs.
- ip-masq-agent's rules in each node's nat table (see masq.py), from a ConfigMap-like config.
- Each Pod runs servers.py as its main process, placed in a kubelet-named cgroup (cgroups.py).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import cgroups, kubeproxy, masq
from .capture import Capture

STATE_DIR = "/run/podcap-lab"
NS_PREFIX = "pcl"
VPC_CIDR = "172.20.0.0/24"
ROUTER_IP = "172.20.0.1"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
IDC_CIDR = "198.51.100.0/24"
IDC_GATEWAY = "198.51.100.1"
IDC_IP = "198.51.100.10"
HTTP_PORT = 80
MARKER_PORT = 9000
CLOSED_PORT = 81
VXLAN_PORT = 8472
VXLAN_VNI = 1
VXLAN_MTU = 1450
SERVERS_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "servers.py")
SG_COMMENT = "podcap-lab: security group"

_live_labs: weakref.WeakSet[Lab] = weakref.WeakSet()


class LabError(RuntimeError):
    pass


def _ns(target: Any) -> str:
    """A namespace name from a name or from anything with a ``.netns`` (node, Pod, host)."""
    return target if isinstance(target, str) else target.netns


def _sh(argv: Sequence[str], *, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, input=input, timeout=60)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class _Servers:
    """Lets Pods and hosts share how their server process's log is read."""

    log_path: str

    def received(self, kind: str | None = None) -> list[dict]:
        """What the servers got so far: dicts with kind (http/marker), peer_ip, path or data."""
        try:
            with open(self.log_path, encoding="utf-8") as f:
                entries = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [e for e in entries if kind is None or e["kind"] == kind]


@dataclass(eq=False)
class Node:
    name: str
    netns: str
    ip: str
    pod_cidr: str
    index: int
    nic: str = "eth0"
    bridge: str = "cni0"
    vxlan_dev: str | None = None
    vxlan_mac: str | None = None
    pods: list[Pod] = field(default_factory=list, repr=False)

    @property
    def gateway(self) -> str:
        """The node's address on its Pod bridge: the Pods' default gateway."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))


@dataclass(eq=False)
class Pod(_Servers):
    name: str
    namespace: str
    uid: str
    netns: str
    ip: str
    node: Node
    container_id: str
    host_veth: str
    cgroup_style: str
    cgroup_path: str
    log_path: str
    http_port: int = HTTP_PORT
    marker_port: int = MARKER_PORT
    closed_port: int = CLOSED_PORT
    iface: str = "eth0"
    pid: int = 0
    qos: str = "besteffort"

    @property
    def container_hex(self) -> str:
        return self.container_id.split("://", 1)[1]


@dataclass(eq=False)
class Host(_Servers):
    """A plain host in the lab (the IDC host): servers, no Pod cgroup."""

    name: str
    netns: str
    ip: str
    log_path: str = ""
    nic: str = "eth0"
    http_port: int = HTTP_PORT
    marker_port: int = MARKER_PORT
    closed_port: int = CLOSED_PORT
    pid: int = 0


@dataclass(eq=False)
class Router:
    name: str
    netns: str
    ip: str
    bridge: str = "br-vpc"


@dataclass
class SecurityGroupRule:
    netns: str
    rules: list[list[str]]


class Lab:
    """A throwaway cluster of namespaces; use as a context manager (or call start/close).

    ``masq_non_masquerade``: None installs ip-masq-agent with its default config (RFC 1918
    ranges are not masqueraded; the IDC host, outside them, is); a list of CIDRs is the
    ConfigMap's ``nonMasqueradeCIDRs``; False installs no masquerading at all. ``masq_config``
    takes a whole ConfigMap-like dict instead (it wins over ``masq_non_masquerade``).
    ``cgroup_style``: "mixed" (cgroupfs and systemd names alternate across Pods), "cgroupfs"
    or "systemd".
    """

    def __init__(
        self,
        nodes: int = 2,
        pods_per_node: int = 1,
        overlay: str = "routed",
        masq_non_masquerade: Sequence[str] | bool | None = None,
        idc: bool = False,
        *,
        masq_config: Mapping | None = None,
        cgroup_style: str = "mixed",
        pod_namespace: str = "default",
    ) -> None:
        if not 1 <= nodes <= 8:
            raise ValueError("nodes must be between 1 and 8")
        if not 0 <= pods_per_node <= 20:
            raise ValueError("pods_per_node must be between 0 and 20")
        if overlay not in ("routed", "vxlan"):
            raise ValueError("overlay must be 'routed' or 'vxlan'")
        if cgroup_style not in ("mixed", "cgroupfs", "systemd"):
            raise ValueError("cgroup_style must be 'mixed', 'cgroupfs' or 'systemd'")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, iptables, cgroups)")
        self.n_nodes = nodes
        self.pods_per_node = pods_per_node
        self.overlay = overlay
        self.want_idc = idc
        self.cgroup_style = cgroup_style
        self.pod_namespace = pod_namespace
        if masq_config is not None:
            self.masq_config: dict | None = masq.normalize_config(masq_config)
        elif masq_non_masquerade is False:
            self.masq_config = None
        elif masq_non_masquerade is None or masq_non_masquerade is True:
            self.masq_config = masq.normalize_config({})
        else:
            self.masq_config = masq.normalize_config(
                {"nonMasqueradeCIDRs": list(masq_non_masquerade)}
            )
        self.id = secrets.token_hex(3)
        self.prefix = f"{NS_PREFIX}{self.id}"
        self.workdir = ""
        self.router: Router | None = None
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.idc: Host | None = None
        self.services: list[kubeproxy.Service] = []
        self._kube_proxy_nodes: dict[str, bool] = {}
        self._netns: list[str] = []
        self._cgroup_dirs: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Lab:
        if self._started:
            return self
        self._started = True
        sweep_stale()
        _install_exit_handlers()
        self.workdir = tempfile.mkdtemp(prefix=f"podcap-lab-{self.id}-")
        _live_labs.add(self)
        try:
            self._save_state()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove everything the lab made. Safe to call twice, and from a failed start."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _live_labs.discard(self)
        for proc in self._procs:
            _terminate(proc)
        _teardown(self._netns, self._cgroup_dirs)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._state_path())
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _state_path(self) -> str:
        return os.path.join(STATE_DIR, f"{self.prefix}.json")

    def _save_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        state = {
            "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()),
            "netns": self._netns,
            "cgroup_dirs": self._cgroup_dirs,
            "workdir": self.workdir,
        }
        tmp = self._state_path() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self._state_path())

    # ------------------------------------------------------------------ building
    def _add_netns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        _sh(["ip", "netns", "add", name])
        self._netns.append(name)
        self._save_state()
        _sh(["ip", "-n", name, "link", "set", "lo", "up"])
        # IPv4 only: no router solicitations or neighbour discovery in the captures.
        self._sysctl(
            name, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
        )
        return name

    def _ip(self, netns: str, *args: str) -> None:
        _sh(["ip", "-n", netns, *args])

    def _sysctl(self, netns: str, *settings: str) -> None:
        # /proc/sys/net is per namespace; written by a shell inside it (no procps needed).
        script = "; ".join(
            f"echo {value} > /proc/sys/{key.replace('.', '/')}"
            for key, _, value in (s.partition("=") for s in settings)
        )
        _sh(["ip", "netns", "exec", netns, "sh", "-ec", script])

    def _build(self) -> None:
        vpc = self._add_netns("vpc")
        self.router = Router("vpc-router", vpc, ROUTER_IP)
        self._sysctl(
            vpc,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.default.send_redirects=0",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        )
        self._ip(vpc, "link", "add", "br-vpc", "type", "bridge")
        self._ip(vpc, "addr", "add", f"{ROUTER_IP}/24", "dev", "br-vpc")
        self._ip(vpc, "link", "set", "br-vpc", "up")

        vpc_hosts = list(ipaddress.ip_network(VPC_CIDR).hosts())
        for i in range(self.n_nodes):
            letter = "abcdefgh"[i]
            node = Node(
                name=f"node-{letter}",
                netns=self._add_netns(f"node-{letter}"),
                ip=str(vpc_hosts[10 + i]),
                pod_cidr=f"10.244.{i}.0/24",
                index=i,
            )
            self._build_node(node)
            self.nodes.append(node)

        if self.overlay == "routed":
            self._routed_routes()
        else:
            self._vxlan_overlay()
        if self.masq_config is not None:
            for node in self.nodes:
                self._install_masq(node)
        if self.want_idc:
            self._build_idc()

        index = 0
        for node in self.nodes:
            for j in range(self.pods_per_node):
                self._build_pod(node, j, index)
                index += 1

    def _build_node(self, node: Node) -> None:
        vpc = self.router.netns
        port = f"vpc-{node.name}"
        self._ip(
            vpc, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.netns
        )
        self._ip(vpc, "link", "set", port, "master", "br-vpc", "up")
        self._sysctl(
            node.netns,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        )
        self._ip(node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        self._ip(node.netns, "link", "set", "eth0", "up")
        self._ip(node.netns, "route", "add", "default", "via", ROUTER_IP)
        self._ip(node.netns, "link", "add", "cni0", "type", "bridge")
        prefix = ipaddress.ip_network(node.pod_cidr).prefixlen
        self._ip(node.netns, "addr", "add", f"{node.gateway}/{prefix}", "dev", "cni0")
        if self.overlay == "vxlan":
            self._ip(node.netns, "link", "set", "cni0", "mtu", str(VXLAN_MTU))
        self._ip(node.netns, "link", "set", "cni0", "up")

    def _routed_routes(self) -> None:
        for node in self.nodes:
            self._ip(self.router.netns, "route", "add", node.pod_cidr, "via", node.ip)
            for other in self.nodes:
                if other is not node:
                    self._ip(
                        node.netns, "route", "add", other.pod_cidr, "via", other.ip, "dev", "eth0"
                    )

    def _vxlan_overlay(self) -> None:
        for node in self.nodes:
            node.vxlan_dev = "flannel.1"
            node.vxlan_mac = f"0e:6c:ab:00:00:{node.index + 1:02x}"
            self._ip(
                node.netns, "link", "add", "flannel.1", "address", node.vxlan_mac, "type", "vxlan",
                "id", str(VXLAN_VNI), "local", node.ip, "dev", "eth0",
                "dstport", str(VXLAN_PORT), "nolearning",
            )  # fmt: skip
            self._ip(node.netns, "link", "set", "flannel.1", "mtu", str(VXLAN_MTU))
            network = ipaddress.ip_network(node.pod_cidr).network_address
            self._ip(node.netns, "addr", "add", f"{network}/32", "dev", "flannel.1")
            self._ip(node.netns, "link", "set", "flannel.1", "up")
        for node in self.nodes:
            for other in self.nodes:
                if other is node:
                    continue
                gw = str(ipaddress.ip_network(other.pod_cidr).network_address)
                self._ip(
                    node.netns, "neigh", "replace", gw, "lladdr", other.vxlan_mac,
                    "dev", "flannel.1", "nud", "permanent",
                )  # fmt: skip
                _sh(
                    ["bridge", "-n", node.netns, "fdb", "append", other.vxlan_mac,
                     "dev", "flannel.1", "dst", other.ip, "self", "permanent"]
                )  # fmt: skip
                self._ip(
                    node.netns, "route", "add", other.pod_cidr, "via", gw,
                    "dev", "flannel.1", "onlink",
                )  # fmt: skip

    def _install_masq(self, node: Node) -> None:
        _sh(
            ["ip", "netns", "exec", node.netns, "iptables-restore", "--noflush"],
            input=masq.restore_text(self.masq_config),
        )
        _sh(["ip", "netns", "exec", node.netns, "iptables", *masq.postrouting_rule()])

    def _build_idc(self) -> None:
        vpc = self.router.netns
        ns = self._add_netns("idc")
        self._ip(vpc, "link", "add", "idc0", "type", "veth", "peer", "name", "eth0", "netns", ns)
        self._ip(vpc, "addr", "add", f"{IDC_GATEWAY}/24", "dev", "idc0")
        self._ip(vpc, "link", "set", "idc0", "up")
        self._ip(ns, "addr", "add", f"{IDC_IP}/24", "dev", "eth0")
        self._ip(ns, "link", "set", "eth0", "up")
        # A dedicated line to the VPC: the IDC knows the VPC and the cluster CIDR (the VPC
        # router forwards Pod CIDRs only when they are VPC-routable, i.e. overlay="routed").
        self._ip(ns, "route", "add", VPC_CIDR, "via", IDC_GATEWAY)
        self._ip(ns, "route", "add", CLUSTER_CIDR, "via", IDC_GATEWAY)
        host = Host("idc", ns, IDC_IP, log_path=os.path.join(self.workdir, "idc.log"))
        proc = self._start_servers(host.name, ns, host.log_path)
        host.pid = proc.pid
        self.idc = host

    def _build_pod(self, node: Node, j: int, index: int) -> None:
        name = f"web-{node.name[-1]}{j}"
        uid = str(uuid.uuid4())
        ns = self._add_netns(name)
        veth = f"veth{uid[:8]}"
        ip = str(ipaddress.ip_network(node.pod_cidr).network_address + 10 + j)
        prefix = ipaddress.ip_network(node.pod_cidr).prefixlen
        self._ip(
            node.netns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns
        )
        self._ip(node.netns, "link", "set", veth, "master", "cni0", "up")
        # The bridge CNI's hairpinMode: a Pod reaching itself through a Service IP.
        _sh(["bridge", "-n", node.netns, "link", "set", "dev", veth, "hairpin", "on"])
        if self.overlay == "vxlan":
            self._ip(node.netns, "link", "set", veth, "mtu", str(VXLAN_MTU))
            self._ip(ns, "link", "set", "eth0", "mtu", str(VXLAN_MTU))
        self._ip(ns, "addr", "add", f"{ip}/{prefix}", "dev", "eth0")
        self._ip(ns, "link", "set", "eth0", "up")
        self._ip(ns, "route", "add", "default", "via", node.gateway)

        style = self.cgroup_style
        if style == "mixed":
            style = ("cgroupfs", "systemd")[index % 2]
        container_hex = secrets.token_hex(32)
        pod = Pod(
            name=name,
            namespace=self.pod_namespace,
            uid=uid,
            netns=ns,
            ip=ip,
            node=node,
            container_id=f"containerd://{container_hex}",
            host_veth=veth,
            cgroup_style=style,
            cgroup_path=cgroups.kubelet_cgroup_path(style, uid, container_hex),
            log_path=os.path.join(self.workdir, f"{name}.log"),
        )
        proc = self._start_servers(name, ns, pod.log_path, cgroup_path=pod.cgroup_path)
        pod.pid = proc.pid
        node.pods.append(pod)
        self.pods.append(pod)

    def _start_servers(
        self, name: str, netns: str, log_path: str, cgroup_path: str | None = None
    ) -> subprocess.Popen:
        open(log_path, "w").close()
        err = open(os.path.join(self.workdir, f"{name}.stderr"), "w")
        argv = [
            "ip", "netns", "exec", netns, sys.executable, SERVERS_PY, "--name", name,
            "--http-port", str(HTTP_PORT), "--marker-port", str(MARKER_PORT), "--log", log_path,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        err.close()
        self._procs.append(proc)
        if cgroup_path:
            placement = cgroups.place(proc.pid, cgroup_path)
            self._cgroup_dirs.extend(placement.created)
            self._save_state()
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            with open(os.path.join(self.workdir, f"{name}.stderr")) as f:
                raise LabError(f"servers in {netns} did not start: {f.read()[-2000:]}")
        return proc

    # ------------------------------------------------------------------ using the lab
    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def pod(self, name: str) -> Pod:
        return next(p for p in self.pods if p.name == name)

    def run(self, netns: Any, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``argv`` inside a lab namespace (a name, or a node/Pod/host object)."""
        if "stdout" not in kwargs and "stderr" not in kwargs:
            kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", _ns(netns), *argv], **kwargs)

    def popen(self, netns: Any, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` inside a namespace; the lab stops it at close if it still runs."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", _ns(netns), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def curl(
        self, from_netns: Any, url: str, *args: str, timeout: float = 5
    ) -> subprocess.CompletedProcess:
        """``curl -sS`` from a namespace; returncode 0 and stdout = the body when it worked."""
        return self.run(
            from_netns,
            ["curl", "-sS", "--max-time", str(timeout), *args, url],
            timeout=timeout + 10,
        )

    def send_marker(
        self, from_netns: Any, ip: str, port: int, text: bytes = b"lbtest", timeout: float = 5
    ) -> subprocess.CompletedProcess:
        """Open a TCP connection, send ``text`` (the guide's telnet ``lbtest``), read the reply.

        stdout holds the server's reply (``ack <n>``); a refused or unanswered connection gives
        a non-zero returncode with the error on stderr.
        """
        code = (
            "import socket,sys\n"
            "data=sys.stdin.buffer.read()\n"
            "try:\n"
            "    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))\n"
            "    s.sendall(data); s.shutdown(socket.SHUT_WR)\n"
            "    out=b''\n"
            "    while True:\n"
            "        c=s.recv(4096)\n"
            "        if not c: break\n"
            "        out+=c\n"
            "except OSError as e:\n"
            "    sys.stderr.write(type(e).__name__+': '+str(e)+'\\n'); sys.exit(1)\n"
            "sys.stdout.buffer.write(out)\n"
        )
        return self._python_client(from_netns, code, ip, port, text, timeout)

    def send_udp(
        self, from_netns: Any, ip: str, port: int, text: bytes = b"lbtest", timeout: float = 2
    ) -> subprocess.CompletedProcess:
        """One datagram from a namespace, and the answer: stdout holds it (``ack <n> ...``
        from a lab Pod's marker port); no answer, or an ICMP error, gives a non-zero
        returncode with the error on stderr."""
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))\n"
            "s.connect((sys.argv[1],int(sys.argv[2])))\n"
            "try:\n"
            "    s.send(sys.stdin.buffer.read()); out=s.recv(65536)\n"
            "except OSError as e:\n"
            "    sys.stderr.write(type(e).__name__+': '+str(e)+'\\n'); sys.exit(1)\n"
            "sys.stdout.buffer.write(out)\n"
        )
        return self._python_client(from_netns, code, ip, port, text, timeout)

    def _python_client(
        self, from_netns: Any, code: str, ip: str, port: int, text: bytes, timeout: float
    ) -> subprocess.CompletedProcess:
        """Run a client ``code`` (argv: ip, port, timeout; ``text`` on stdin) in a namespace."""
        return self.run(
            from_netns,
            [sys.executable, "-c", code, ip, str(port), str(timeout)],
            input=text,
            text=False,
            timeout=timeout + 10,
        )

    def ping(
        self, from_netns: Any, ip: str, count: int = 2, timeout: float = 2
    ) -> subprocess.CompletedProcess:
        """``ping`` (ICMP echo) from a namespace; returncode 0 when an echo was answered."""
        argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", str(timeout), ip]
        return self.run(from_netns, argv, timeout=count * (timeout + 1) + 10)

    def capture(
        self,
        target: Any,
        path: str,
        bpf: str | None = None,
        *,
        iface: str | None = None,
        **kwargs: Any,
    ) -> Capture:
        """A tcpdump (``tool="dumpcap"``: pcapng) in ``target``'s namespace; a context manager.

        ``iface`` defaults to a Pod's eth0 or a node's/host's NIC; pass ``"any"`` for a Linux
        cooked (SLL2) capture of every interface.
        """
        if iface is None:
            iface = getattr(target, "iface", None) or getattr(target, "nic", None) or "eth0"
        cap = Capture(_ns(target), iface, path, bpf, **kwargs)
        return cap

    def iptables_save(self, netns: Any, table: str | None = None) -> str:
        argv = ["iptables-save"] + (["-t", table] if table else [])
        return self.run(netns, argv, check=True).stdout

    def add_security_group_drop(
        self,
        target: Any,
        *,
        dport: int | None = None,
        proto: str = "tcp",
        src: str | None = None,
    ) -> SecurityGroupRule:
        """A "security group" on a node (or host): drop matching traffic arriving on its NIC.

        Dropped both for the node itself (INPUT) and for its Pods (FORWARD), so SYNs get no
        answer at all. Returns a handle for ``remove_security_group_drop``.
        """
        ns = _ns(target)
        nic = getattr(target, "nic", "eth0")
        match = ["-i", nic, "-p", proto]
        if src:
            match += ["-s", src]
        if dport is not None:
            match += ["--dport", str(dport)]
        match += ["-m", "comment", "--comment", SG_COMMENT, "-j", "DROP"]
        rules = [["INPUT", *match], ["FORWARD", *match]]
        for rule in rules:
            self.run(ns, ["iptables", "-I", *rule], check=True)
        return SecurityGroupRule(ns, rules)

    def add_service(
        self,
        name: str,
        pods: Sequence[Pod] | None = None,
        *,
        port: int = 80,
        target_port: int | None = None,
        node_port: int | None = None,
        protocol: str = "tcp",
        namespace: str | None = None,
    ) -> kubeproxy.Service:
        """A ClusterIP (and NodePort) Service: kube-proxy's iptables DNAT on every node.

        ``pods`` are the endpoints (default: all Pods); ``target_port`` defaults to the Pods'
        HTTP port when ``port`` is 80, else to ``port``. The ClusterIP comes from 10.96.0.0/16.
        """
        endpoints = list(self.pods if pods is None else pods)
        if target_port is None:
            target_port = HTTP_PORT if port == 80 else port
        cluster_ip = str(
            ipaddress.ip_network(SERVICE_CIDR).network_address + 10 + len(self.services)
        )
        svc = kubeproxy.Service(
            name=name,
            namespace=namespace or self.pod_namespace,
            cluster_ip=cluster_ip,
            port=port,
            target_port=target_port,
            protocol=protocol,
            node_port=node_port,
            endpoints=endpoints,
        )
        self.services.append(svc)
        text = kubeproxy.restore_text(self.services, CLUSTER_CIDR)
        for node in self.nodes:
            if not self._kube_proxy_nodes.get(node.name):
                restore = ["*nat"]
                restore += [
                    f":{c} - [0:0]"
                    for c in (
                        "KUBE-SERVICES",
                        "KUBE-NODEPORTS",
                        "KUBE-POSTROUTING",
                        "KUBE-MARK-MASQ",
                    )
                ]
                restore.append("COMMIT")
                _sh(
                    ["ip", "netns", "exec", node.netns, "iptables-restore", "--noflush"],
                    input="\n".join(restore) + "\n",
                )
                for jump in kubeproxy.base_jumps():
                    _sh(["ip", "netns", "exec", node.netns, "iptables", "-t", "nat", "-I", *jump])
                self._kube_proxy_nodes[node.name] = True
            _sh(["ip", "netns", "exec", node.netns, "iptables-restore", "--noflush"], input=text)
        return svc

    def remove_security_group_drop(self, handle: SecurityGroupRule) -> None:
        for rule in handle.rules:
            self.run(handle.netns, ["iptables", "-D", *rule], check=True)

    @contextlib.contextmanager
    def vpc_drop(self, node: Node, *, dst: str, dport: int | None = None, proto: str = "tcp"):
        """A cloud security group in front of ``node``: the VPC drops ``proto`` (tcp, udp,
        icmp) to ``dst`` (port ``dport``)
        before it reaches the node, so a capture on the node never sees it (the iptables
        "security group" of ``add_security_group_drop`` sits on the node, behind its tcpdump).
        Meanwhile the other nodes send ``node``'s Pod CIDR through the VPC router (as a
        VPC-native route table does), whose FORWARD chain drops it; all undone on leaving."""
        others = [n for n in self.nodes if n is not node]
        port = ["--dport", str(dport)] if dport is not None else []
        rule = ["FORWARD", "-d", dst, "-p", proto, *port, "-m", "comment",
                "--comment", SG_COMMENT, "-j", "DROP"]  # fmt: skip
        self.run(self.router, ["iptables", "-I", *rule], check=True)
        try:
            for other in others:
                self._ip(other.netns, "route", "replace", node.pod_cidr, "via", ROUTER_IP)
            yield
        finally:
            for other in others:
                self.run(other, ["ip", "route", "replace", node.pod_cidr, "via", node.ip, "dev", "eth0"],
                         check=False)  # fmt: skip
            self.run(self.router, ["iptables", "-D", *rule], check=False)


# ---------------------------------------------------------------------- cleanup machinery
def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)


def _netns_pids(netns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _teardown(netns_names: Sequence[str], cgroup_dirs: Sequence[str]) -> None:
    # Whatever still runs inside the lab's own namespaces was started by the lab or its tests
    # (servers, tcpdump, curl): it keeps the namespace alive, so it goes first.
    for ns in netns_names:
        for pid in _netns_pids(ns):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(_netns_pids(ns) for ns in netns_names):
        time.sleep(0.05)
    cgroups.remove(list(cgroup_dirs))
    for ns in reversed(list(netns_names)):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def sweep_stale() -> list[str]:
    """Remove what labs left behind when their process died without cleaning up (SIGKILL).

    Only labs whose owning process is gone are touched; returns their names.
    """
    swept = []
    try:
        names = os.listdir(STATE_DIR)
    except FileNotFoundError:
        return swept
    for fname in names:
        if not fname.endswith(".json"):
            continue
        path = os.path.join(STATE_DIR, fname)
        try:
            with open(path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict):
            continue
        pid = state.get("owner_pid")
        if isinstance(pid, int) and _start_time(pid) is not None:
            if _start_time(pid) == state.get("owner_start"):
                continue  # its owner still runs
        _teardown(state.get("netns", []), state.get("cgroup_dirs", []))
        workdir = state.get("workdir") or ""
        if os.path.basename(workdir).startswith("podcap-lab-"):
            shutil.rmtree(workdir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        swept.append(fname[: -len(".json")])
    return swept


_handlers_installed = False


def _close_all() -> None:
    for lab in list(_live_labs):
        lab.close()


def _install_exit_handlers() -> None:
    """Close live labs at interpreter exit and turn SIGTERM/SIGHUP into a normal exit."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_all)
    if threading.current_thread() is not threading.main_thread():
        return

    def on_signal(signum: int, frame: object) -> None:
        # As Ctrl-C: pytest stops the session and runs teardowns; scripts unwind their
        # with-blocks; atexit closes whatever is still open.
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, on_signal)
