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
        tar.addfile(info, _bytes_io(page))
    return tar_path


def _bytes_io(data: bytes):
    import io

    return io.BytesIO(data)


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

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            ids = self.docker("ps", "-aq", check=False, timeout=30).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False, timeout=60)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _unmount_under(self.state)


def _bridge_up() -> None:
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    for command in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                    ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
                    ["ip", "link", "set", BRIDGE, "up"]):  # fmt: skip
        subprocess.run(command, check=True, capture_output=True)


def _unmount_under(root: Path) -> None:
    """Whatever the runtime left mounted under its state directory (netns files, shm)."""
    with open("/proc/self/mounts", encoding="utf-8") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(str(root))), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


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
