"""Real container runtimes for the tests: dockerd (Debian's docker.io) started by hand, on a
state directory, socket and bridge of its own, running containers of an image built here.

No registry is reached: the image is a root file system holding Debian's static busybox
(``busybox-static``: ``sh``, ``httpd``, ``sleep``...), imported with ``docker import``.
These machines have no systemd, so dockerd uses the cgroupfs driver: a container's processes
are in ``/docker/<id>``, which is what podcap's ``/proc/*/cgroup`` scan meets on such a node.

Facts of these machines (found by trying): ``docker run --privileged`` fails (root lacks
CAP_SYS_RESOURCE), and dockerd's iptables rules are not wanted in a test: the daemon runs
with ``--iptables=false --ip-masq=false`` on a bridge this module makes and deletes, so
nothing but its own state directory and that bridge is left to clean, and both go at the end
(also when a test fails). The host reaches a container on the bridge directly.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")  # busybox-static
APPLETS = ("sh", "httpd", "sleep", "ip", "ifconfig", "cat", "ls", "wget")
IMAGE = "podcap-busybox:test"
BRIDGE = "pcdock0"
BRIDGE_ADDRESS = "10.213.0.1/24"
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # docker.io's client, whatever another docker on PATH is
START_SECONDS = 60


class RuntimeMissing(RuntimeError):
    """A runtime these tests drive is not installed (scripts/install-system-deps.sh)."""


def busybox_rootfs(into: Path) -> Path:
    """A tar of a root file system with busybox, its applets as links, a page for httpd."""
    if not BUSYBOX.exists():
        raise RuntimeMissing(f"{BUSYBOX} missing: apt-get install busybox-static")
    tar_path = into / "busybox-rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for folder in ("www", "tmp", "proc", "sys", "dev", "etc"):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        page = b"podcap runtime test\n"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    return tar_path


@dataclass
class Container:
    """A running container: its runtime's ID, the ID as Kubernetes writes it, its address."""

    id: str
    container_id: str  # docker://ID
    address: str
    pid: int


class Docker:
    """A dockerd of the test's own (socket, state, bridge), and the containers it runs."""

    def __init__(self, state: Path):
        self.state = state
        self.socket = state / "docker.sock"
        self.process: subprocess.Popen | None = None

    def docker(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], text=True,
                              capture_output=True, timeout=timeout, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        if not Path(DOCKERD).exists():
            raise RuntimeMissing(f"{DOCKERD} missing: apt-get install docker.io")
        _bridge_up()
        log = open(self.state / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            [DOCKERD, "--data-root", str(self.state / "data"),
             "--exec-root", str(self.state / "exec"), "-H", f"unix://{self.socket}",
             "--pidfile", str(self.state / "dockerd.pid"), "--bridge", BRIDGE,
             "--iptables=false", "--ip-masq=false", "--ip-forward=false",
             "--storage-driver", "vfs", "--log-level", "error"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while self.docker("version", check=False, timeout=10) == "" or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {self._log_tail()}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        return subprocess.run([DOCKER, "-H", f"unix://{self.socket}", "info"],
                              capture_output=True, timeout=10).returncode == 0  # fmt: skip

    def _log_tail(self) -> str:
        text = (self.state / "dockerd.log").read_text(errors="replace").strip()
        return " | ".join(text.splitlines()[-3:])

    def import_image(self, rootfs: Path) -> None:
        self.docker("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), IMAGE)

    def run(self, *command: str, options: tuple[str, ...] = ()) -> Container:
        """A container of the image running ``command``, detached (``docker run -d OPTIONS
        IMAGE COMMAND``)."""
        cid = self.docker("run", "-d", *options, IMAGE, *command)
        fields = self.docker("inspect", "-f", "{{.State.Pid}} {{.NetworkSettings.IPAddress}}", cid)
        pid, _, address = fields.partition(" ")
        return Container(cid, f"docker://{cid}", address.strip(), int(pid))

    @property
    def env(self) -> dict[str, str]:
        """What points a node's ``docker`` CLI at this daemon (``--pid-lookup docker``)."""
        return {"DOCKER_HOST": f"unix://{self.socket}"}

    def remove(self, *ids: str) -> None:
        if ids:
            self.docker("rm", "-f", *ids, check=False)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            ids = self.docker("ps", "-aq", check=False, timeout=30).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
            end_daemon(self.process)
        unmount_under(self.state)


def _bridge_up() -> None:
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    for command in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                    ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
                    ["ip", "link", "set", BRIDGE, "up"]):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)


def end_daemon(process: subprocess.Popen) -> None:
    """A daemon started in a session of its own: SIGTERM to its group, SIGKILL after 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def unmount_under(root: Path) -> None:
    """Whatever the runtime left mounted under its state directory (netns files, shm)."""
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


PODMAN_BRIDGE = "pcpod0"
PODMAN_SUBNET = "10.214.0.0/24"
PODMAN_NETWORK = "podcap-test"
# Root lacks CAP_SYS_RESOURCE here: podman's default limits would be raised and fail.
PODMAN_LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


class Podman:
    """podman on a storage root, run root and CNI network of the test's own: a bridge with
    no masquerade, no firewall plugin (so no iptables rule), addresses from a subnet of its
    own. ``env`` points a node's ``podman`` at the same storage (``--pid-lookup podman``)."""

    def __init__(self, state: Path):
        self.state = state
        self.flags = ["--root", str(state / "root"), "--runroot", str(state / "run"),
                      "--cni-config-dir", str(state / "cni"), "--storage-driver", "vfs"]  # fmt: skip
        (state / "cni").mkdir(parents=True)
        (state / "cni" / "podcap.conflist").write_text(json.dumps(_cni_network(state)))
        storage = state / "storage.conf"
        storage.write_text(f'[storage]\ndriver = "vfs"\nrunroot = "{state / "run"}"\n'
                           f'graphroot = "{state / "root"}"\n')  # fmt: skip
        self.env = {"CONTAINERS_STORAGE_CONF": str(storage)}

    def podman(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(["podman", *self.flags, *args], text=True, capture_output=True,
                              timeout=timeout, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def run(self, *command: str, options: tuple[str, ...] = ()) -> Container:
        network = () if "--network" in options else ("--network", PODMAN_NETWORK)
        cid = self.podman("run", "-d", *network, *PODMAN_LIMITS, *options, IMAGE, *command)
        template = "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        pid, _, address = self.podman("inspect", "-f", template, cid).partition(" ")
        return Container(cid, cid, address.strip(), int(pid))

    def remove(self, *ids: str) -> None:
        if ids:
            self.podman("rm", "-f", "-t", "0", *ids, check=False)


def _cni_network(state: Path) -> dict:
    ipam = {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(state / "ipam"),
            "ranges": [[{"subnet": PODMAN_SUBNET}]]}  # fmt: skip
    bridge = {"type": "bridge", "bridge": PODMAN_BRIDGE, "isGateway": True, "ipMasq": False,
              "ipam": ipam}  # fmt: skip
    return {"cniVersion": "0.4.0", "name": PODMAN_NETWORK, "plugins": [bridge]}


@contextmanager
def running_podman():
    """podman with the busybox image, its containers, mounts and bridge removed at the end."""
    if shutil.which("podman") is None:
        raise RuntimeMissing("podman missing: apt-get install podman")
    state = Path(tempfile.mkdtemp(prefix="podcap-podman-"))
    runtime = Podman(state)
    try:
        runtime.podman("import", str(busybox_rootfs(state)), IMAGE, timeout=120)
        yield runtime
    finally:
        runtime.remove(*runtime.podman("ps", "-aq", check=False).split())
        unmount_under(state)
        subprocess.run(["ip", "link", "del", PODMAN_BRIDGE], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def running_docker():
    """A dockerd with the busybox image, everything it made removed at the end."""
    state = Path(tempfile.mkdtemp(prefix="podcap-docker-"))
    daemon = Docker(state)
    try:
        daemon.start()
        daemon.import_image(busybox_rootfs(state))
        yield daemon
    finally:
        daemon.stop()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)
