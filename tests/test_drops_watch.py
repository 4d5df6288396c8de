"""The drop watcher (``podcap.capture.drops``) for real: bpftrace on the kernel's
skb:kfree_skb tracepoint, run through the local transport while packets die in two network
namespaces this test makes (and deletes): a netfilter DROP, a closed port. The reason names
come from this kernel's own tracepoint format. A node that cannot watch says why, and nothing
(no bpftrace, no tracefs mount) is left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from podcap.capture.drops import DropWatch, reason_names
from podcap.dropsfile import read_drops
from podcap.reach.local import LocalTransport

A, B = "10.98.0.1", "10.98.0.2"


@pytest.fixture
def pair():
    """Two namespaces on a veth pair, A and B, and B's namespace id."""
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed (scripts/install-system-deps.sh installs it)")
    tag = uuid.uuid4().hex[:6]
    a, b = f"podcap-da-{tag}", f"podcap-db-{tag}"
    subprocess.run(["ip", "netns", "add", a], check=True)
    subprocess.run(["ip", "netns", "add", b], check=True)
    try:
        for args in (["link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}"],
                     ["link", "set", f"va{tag}", "netns", a],
                     ["link", "set", f"vb{tag}", "netns", b],
                     ["-n", a, "addr", "add", f"{A}/24", "dev", f"va{tag}"],
                     ["-n", b, "addr", "add", f"{B}/24", "dev", f"vb{tag}"],
                     ["-n", a, "link", "set", f"va{tag}", "up"],
                     ["-n", b, "link", "set", f"vb{tag}", "up"]):  # fmt: skip
            subprocess.run(["ip", *args], check=True)
        netns = subprocess.run(["ip", "netns", "exec", b, "readlink", "/proc/self/ns/net"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        yield a, b, netns
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


def _watching(path: Path, addresses=(B,)):
    watch = DropWatch(LocalTransport("here"), list(addresses), path, bound=60, node_pid=None)
    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", watch.run()))
    thread.start()
    assert watch.wait_ready(30)
    return watch, thread, done


def _tracefs_mounts() -> int:
    return Path("/proc/self/mounts").read_text().count(" tracefs ")


def test_a_netfilter_drop_and_a_closed_port_are_recorded_with_the_kernels_reasons(pair, tmp_path):
    a, b, netns = pair
    mounts = _tracefs_mounts()
    subprocess.run(["ip", "netns", "exec", b, "iptables", "-I", "INPUT", "-p", "tcp", "--dport",
                    "8080", "-j", "DROP"], check=True)  # fmt: skip
    watch, thread, done = _watching(tmp_path / "here.drops.jsonl")
    try:
        for port, wait in (("8080", "1"), ("81", "1")):
            subprocess.run(["ip", "netns", "exec", a, "curl", "-sS", "--max-time", wait,
                            f"http://{B}:{port}/"], capture_output=True)  # fmt: skip
    finally:
        watch.stop()
        thread.join(30)
    result = done["result"]
    assert (result.tier, result.message) == ("bpftrace", "")
    header, drops = read_drops(tmp_path / "here.drops.jsonl")
    assert header["tier"] == "bpftrace" and header["root_netns"].startswith("net:[")
    by_port = {d["dport"]: d for d in drops}
    filtered, closed = by_port[8080], by_port[81]
    assert (filtered["reason"], filtered["function"]) == ("NETFILTER_DROP", "nft_do_chain")
    assert (filtered["src"], filtered["dst"], filtered["proto"]) == (A, B, 6)
    assert filtered["tcp_flags"] == 0x02 and filtered["netns"] == netns  # the SYN, in B
    assert closed["reason"] == "NO_SOCKET" and closed["function"].startswith("tcp_v")
    assert result.drops == len(drops) and all(d["sport"] > 0 for d in drops)
    # Nothing left: no bpftrace, the tracefs mount (made if there was none) undone.
    assert _tracefs_mounts() == mounts
    assert watch._process.wait(timeout=1) == 0  # run() returned: the node script ended, cleanly


def test_the_reason_names_come_from_the_kernels_table():
    fmt = 'print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 12, "NETFILTER_DROP" })'
    assert reason_names(fmt) == {2: "NOT_SPECIFIED", 12: "NETFILTER_DROP"}


def _tools_without_bpftrace(tmp_path: Path) -> Path:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "grep", "readlink", "uname", "mount", "umount", "timeout", "date", "cut",
                 "cat", "mkdir", "rmdir"):  # fmt: skip
        os.symlink(shutil.which(tool), tools / tool)
    return tools


def test_without_bpftrace_the_tracepoint_itself_gives_reasons_without_addresses(
    pair, tmp_path, monkeypatch
):
    a, _, _ = pair
    mounts = _tracefs_mounts()
    monkeypatch.setenv("PATH", str(_tools_without_bpftrace(tmp_path)))
    watch, thread, done = _watching(tmp_path / "traced.drops.jsonl")
    try:
        subprocess.run(["/usr/bin/ip", "netns", "exec", a, "/usr/bin/curl", "-sS", "--max-time",
                        "1", f"http://{B}:81/"], capture_output=True)  # fmt: skip
        sent = time.time()
    finally:
        watch.stop()
        thread.join(30)
    result = done["result"]
    assert result.tier == "tracefs" and "no addresses" in result.describe()
    header, drops = read_drops(tmp_path / "traced.drops.jsonl")
    assert header["tier"] == "tracefs"
    closed = [d for d in drops if d["reason"] == "NO_SOCKET" and d["function"].startswith("tcp_v")]
    assert closed and all(d["src"] == "" and d["dport"] == 0 for d in closed)
    assert all(abs(d["ts"] - sent) < 5 for d in closed)  # on the wall clock, as a pcap is
    assert _tracefs_mounts() == mounts
    assert not list(Path("/sys/kernel/tracing/instances").glob("podcap-drops-*"))


def test_a_helper_without_bpftrace_uses_the_nodes(pair, tmp_path, monkeypatch):
    """The helper image lacks bpftrace (its PATH here), the node has it: the watcher enters
    the node's mount namespace (our own process stands for the node) and uses the node's."""
    a, _, _ = pair
    tools = _tools_without_bpftrace(tmp_path)
    for tool in ("nsenter", "env"):
        os.symlink(shutil.which(tool), tools / tool)
    monkeypatch.setenv("PATH", str(tools))
    out = tmp_path / "node.drops.jsonl"
    watch = DropWatch(LocalTransport("here"), [B], out, bound=60, node_pid=str(os.getpid()))
    done: dict = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", watch.run()))
    thread.start()
    assert watch.wait_ready(30)
    try:
        subprocess.run(["/usr/bin/ip", "netns", "exec", a, "/usr/bin/curl", "-sS", "--max-time",
                        "1", f"http://{B}:81/"], capture_output=True)  # fmt: skip
    finally:
        watch.stop()
        thread.join(30)
    assert done["result"].tier == "bpftrace", done["result"]
    _, drops = read_drops(out)
    assert any(d["reason"] == "NO_SOCKET" and d["dport"] == 81 and d["dst"] == B for d in drops)


class _NoTracefs:
    """The local transport, each command in a mount namespace of its own whose tracefs is an
    empty directory that cannot be mounted over (no mount tool on the PATH)."""

    def __init__(self, tools: Path):
        self.inner, self.tools = LocalTransport("here"), tools
        self.name, self.node = "local", "here"

    def start(self, argv):
        hide = 'mount -t tmpfs none /sys/kernel/tracing && PATH="$0" exec "$@"'
        return self.inner.start(["unshare", "-m", "/bin/sh", "-c", hide, str(self.tools), *argv])


def test_a_node_that_cannot_watch_says_why_and_nothing_fails(tmp_path):
    tools = _tools_without_bpftrace(tmp_path)
    (tools / "mount").unlink()
    watch = DropWatch(_NoTracefs(tools), [B], tmp_path / "none.drops.jsonl", 60, node_pid=None)
    result = watch.run()  # ends by itself: nothing to watch
    assert result.tier == "unavailable"
    assert result.message.startswith("no tracefs with skb:kfree_skb")
    header, drops = read_drops(tmp_path / "none.drops.jsonl")
    assert header["tier"] == "unavailable" and drops == []
    assert "not watched: no tracefs" in result.describe()


def _netns_of(name: str) -> str:
    return subprocess.run(["ip", "netns", "exec", name, "readlink", "/proc/self/ns/net"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def test_the_guides_other_causes_have_their_own_reasons(pair, tmp_path):
    """Strict reverse-path filtering, no route, a next hop that never answers ARP, a REJECT
    rule and a closed UDP port: each drop says its own reason, in the namespace it died in."""
    a, b, netns_b = pair
    run_a, run_b = ["ip", "netns", "exec", a], ["ip", "netns", "exec", b]
    dev_a = subprocess.run([*run_a, "ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                           text=True, check=True).stdout.split(":")[1].strip().split("@")[0]  # fmt: skip
    subprocess.run([*run_a, "ip", "addr", "add", "10.51.0.1/24", "dev", dev_a], check=True)
    subprocess.run([*run_a, "ip", "route", "add", "10.77.0.0/24", "via", B], check=True)
    subprocess.run([*run_b, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1",
                    "net.ipv4.conf.default.rp_filter=1", "net.ipv4.ip_forward=1"], check=True)  # fmt: skip
    for dev in subprocess.run([*run_b, "ls", "/proc/sys/net/ipv4/conf"], capture_output=True,
                              text=True, check=True).stdout.split():  # fmt: skip
        subprocess.run([*run_b, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=1"], check=False)
    subprocess.run([*run_b, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "8443", "-j",
                    "REJECT", "--reject-with", "tcp-reset"], check=True)  # fmt: skip
    watched = ("10.51.0.1", "10.77.0.5", "10.98.0.9", B)
    watch, thread, done = _watching(tmp_path / "causes.drops.jsonl", watched)
    try:
        curl = [*run_a, "curl", "-sS", "--max-time"]
        subprocess.run(
            [*curl, "1", "--interface", "10.51.0.1", f"http://{B}/"], capture_output=True
        )
        subprocess.run([*curl, "1", "http://10.77.0.5/"], capture_output=True)
        subprocess.run([*curl, "5", "http://10.98.0.9/"], capture_output=True)  # ARP: 3 x 1 s
        subprocess.run([*curl, "1", f"http://{B}:8443/"], capture_output=True)
        send = f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{B}', 5999))"
        subprocess.run([*run_a, sys.executable, "-c", send], check=True)
    finally:
        watch.stop()
        thread.join(30)
    _, drops = read_drops(tmp_path / "causes.drops.jsonl")
    seen = {(d["reason"], d["src"], d["dst"], d["dport"], d["netns"]) for d in drops}
    netns_a = _netns_of(a)
    assert ("IP_RPFILTER", "10.51.0.1", B, 80, netns_b) in seen
    assert ("IP_INNOROUTES", A, "10.77.0.5", 80, netns_b) in seen
    assert ("NEIGH_FAILED", A, "10.98.0.9", 80, netns_a) in seen
    assert ("NETFILTER_DROP", A, B, 8443, netns_b) in seen  # REJECT answers, then drops it
    assert ("NO_SOCKET", A, B, 5999, netns_b) in seen


def test_capture_via_local_with_drops_watches_the_containers_addresses(pair, tmp_path):
    """``podcap capture --via local --pid PID --drops``: the watcher learns the target's
    addresses from its namespace, and the sidecar names the drops file."""
    from testbed.helpers import start_podcap, wait_for  # noqa: PLC0415

    a, b, netns = pair
    subprocess.run(["ip", "netns", "exec", b, "iptables", "-I", "INPUT", "-p", "tcp", "--dport",
                    "8080", "-j", "DROP"], check=True)  # fmt: skip
    holder = subprocess.Popen(["ip", "netns", "exec", b, "sleep", "60"])
    try:
        pid = str(holder.pid)  # ip netns exec execs sleep: the same process, in b
        assert wait_for(lambda: _netns_of_pid(pid) == netns, 10)
        out = tmp_path / "b.pcap"
        run = start_podcap("capture", "--via", "local", "--pid", pid, "-i", "any", "--drops", "-d", "5",
                           "-o", str(out), text=True)  # fmt: skip
        time.sleep(2.5)  # tcpdump listens, then the watcher attaches
        subprocess.run(["ip", "netns", "exec", a, "curl", "-sS", "--max-time", "2",
                        f"http://{B}:8080/"], capture_output=True)  # fmt: skip
        _, stderr = run.communicate(timeout=40)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 0, stderr
    assert "drops on " in stderr and "(bpftrace)" in stderr, stderr
    sidecar = json.loads((tmp_path / "b.pcap.json").read_text())
    assert sidecar["cluster"]["drops"]["file"] == "b.drops.jsonl"
    _, drops = read_drops(tmp_path / "b.drops.jsonl")
    mine = [d for d in drops if d["dport"] == 8080]
    assert mine and {(d["reason"], d["dst"], d["netns"]) for d in mine} == {
        ("NETFILTER_DROP", B, netns)
    }


def _netns_of_pid(pid: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def test_an_rp_filter_drop_lands_on_the_connection_in_the_path_report(pair, tmp_path):
    """A captures (--via local --pid, --drops) while it connects to B from an address B would
    not route back through that link; B's strict reverse-path filter drops the SYNs. The
    path report of A's capture alone ties the kernel's reason to that connection and says
    what to change."""
    from testbed.helpers import podcap, start_podcap, wait_for  # noqa: PLC0415

    a, b, _ = pair
    run_a, run_b = ["ip", "netns", "exec", a], ["ip", "netns", "exec", b]
    dev_a = subprocess.run([*run_a, "ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                           text=True, check=True).stdout.split(":")[1].strip().split("@")[0]  # fmt: skip
    subprocess.run([*run_a, "ip", "addr", "add", "10.51.0.1/24", "dev", dev_a], check=True)
    for dev in subprocess.run([*run_b, "ls", "/proc/sys/net/ipv4/conf"], capture_output=True,
                              text=True, check=True).stdout.split():  # fmt: skip
        subprocess.run([*run_b, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=1"], check=True)
    # B would not answer ARP for that source either: A knows B's MAC already.
    mac_b = subprocess.run([*run_b, "cat", "/sys/class/net/" + _veth(run_b) + "/address"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    subprocess.run([*run_a, "ip", "neigh", "replace", B, "lladdr", mac_b, "dev", dev_a, "nud",
                    "permanent"], check=True)  # fmt: skip
    holder = subprocess.Popen([*run_a, "sleep", "60"])
    try:
        assert wait_for(lambda: _netns_of_pid(str(holder.pid)) == _netns_of(a), 10)
        out = tmp_path / "a.pcap"
        run = start_podcap("capture", "--via", "local", "--pid", str(holder.pid), "-i", "any",
                           "--drops", "-d", "5", "-o", str(out), text=True)  # fmt: skip
        time.sleep(2.5)  # tcpdump listens, then the watcher attaches
        subprocess.run([*run_a, "curl", "-sS", "--max-time", "2", "--interface", "10.51.0.1",
                        f"http://{B}/"], capture_output=True)  # fmt: skip
        _, stderr = run.communicate(timeout=40)
    finally:
        holder.kill()
        holder.wait()
    assert run.returncode == 0, stderr
    path = podcap("analyze", str(out), "-r", "path", "-F", "json")
    assert path.returncode == 0, path.stderr
    (row,) = [r for r in json.loads(path.stdout)["path"] if r["client_ip"] == "10.51.0.1"]
    assert row["outcome"] == "unanswered"
    assert row["dropped_by"].startswith("IP_RPFILTER in ")
    assert "reverse-path filtering dropped it" in row["explanation"]
    assert "rp_filter=2" in row["fix"]


def _veth(run: list[str]) -> str:
    listed = subprocess.run([*run, "ip", "-o", "link", "show", "type", "veth"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    return listed.split(":")[1].strip().split("@")[0]
