"""containerd for the tests (Debian's containerd 1.6 with runc), started by hand and driven
with ``ctr``, as ``testbed/runtimes.py`` does docker and podman: its CRI plugin off (the
kubelet's side is not what is tested; on these machines it would also need
``restrict_oom_score_adj``), the image an OCI archive written here, each container in a
network namespace made here with a veth to this machine, as a CNI plugin makes one for the
kubelet. A container's processes are in ``/<ctr namespace>/<id>`` (cgroupfs).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from testbed.runtimes import (
    IMAGE,
    START_SECONDS,
    Container,
    RuntimeMissing,
    busybox_rootfs,
    end_daemon,
    unmount_under,
)

CONTAINERD_NAMESPACE = "podcap"
CTR_HOST_ADDRESS, CTR_ADDRESS = "10.215.0.1/30", "10.215.0.2"


def oci_archive(rootfs: Path, into: Path) -> Path:
    """An OCI image archive of one layer (``rootfs``), named IMAGE: what ``ctr image import``
    (and ``docker load``, ``podman load``) take."""
    import hashlib

    layer = rootfs.read_bytes()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()  # fmt: skip
    blobs = {"config": config, "layer": layer}
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in blobs.items()}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{digests['config']}", "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{digests['layer']}", "size": len(layer)}],
    }).encode()  # fmt: skip
    blobs["manifest"] = manifest
    digests["manifest"] = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{digests['manifest']}", "size": len(manifest),
        "annotations": {"io.containerd.image.name": f"docker.io/library/{IMAGE}",
                        "org.opencontainers.image.ref.name": IMAGE.split(":")[1]}}]}).encode()  # fmt: skip
    archive = into / "busybox-oci.tar"
    with tarfile.open(archive, "w") as tar:
        files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": index}
        files |= {f"blobs/sha256/{digests[name]}": data for name, data in blobs.items()}
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


class Containerd:
    """A containerd of the test's own (root, state, socket; no CRI plugin), driven with
    ``ctr``; each container in a network namespace made here, as a CNI plugin makes one for
    the kubelet, with a veth to this machine."""

    def __init__(self, state: Path):
        self.state = state
        self.socket = state / "containerd.sock"
        self.process: subprocess.Popen | None = None
        self.netns: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        """What points a node's ``ctr`` at this containerd (``--pid-lookup ctr``)."""
        return {"CONTAINERD_ADDRESS": str(self.socket)}

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        argv = ["ctr", "-a", str(self.socket), "-n", CONTAINERD_NAMESPACE, *args]
        done = subprocess.run(argv, text=True, capture_output=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> None:
        if shutil.which("containerd") is None or shutil.which("ctr") is None:
            raise RuntimeMissing("containerd missing: apt-get install containerd")
        config = self.state / "config.toml"
        config.write_text(f'version = 2\nroot = "{self.state / "root"}"\n'
                          f'state = "{self.state / "run"}"\n'
                          'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                          f'[grpc]\n  address = "{self.socket}"\n')  # fmt: skip
        log = open(self.state / "containerd.log", "wb")
        self.process = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + START_SECONDS
        while self.ctr("version", check=False, timeout=10) == "":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"containerd did not start: {_tail(self.state / 'containerd.log')}"
                )
            time.sleep(0.2)

    def run(self, *command: str, options: tuple[str, ...] = ()) -> Container:
        """A container running ``command``; ``options`` as docker's: ``--network host`` only."""
        cid = os.urandom(32).hex()
        host_network = options == ("--network", "host")
        if host_network:
            network = ["--net-host"]
        else:
            network = ["--with-ns", f"network:/run/netns/{self._netns(cid[:10])}"]
        self.ctr("run", "-d", "--snapshotter", "native", *network, f"docker.io/library/{IMAGE}",
                 cid, *command)  # fmt: skip
        pid = next(int(line.split()[1]) for line in self.ctr("task", "ls").splitlines()[1:]
                   if line.split()[0] == cid)  # fmt: skip
        return Container(cid, f"containerd://{cid}", "" if host_network else CTR_ADDRESS, pid)

    def _netns(self, tag: str) -> str:
        """A network namespace with a veth to this machine: CTR_ADDRESS in it."""
        name, host_end = f"pcctr-{tag}", f"pcct{tag[:6]}"
        commands = [["ip", "netns", "add", name],
                    ["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                     "netns", name],
                    ["ip", "addr", "add", CTR_HOST_ADDRESS, "dev", host_end],
                    ["ip", "link", "set", host_end, "up"],
                    ["ip", "-n", name, "addr", "add", f"{CTR_ADDRESS}/30", "dev", "eth0"],
                    ["ip", "-n", name, "link", "set", "eth0", "up"],
                    ["ip", "-n", name, "link", "set", "lo", "up"]]  # fmt: skip
        self.netns.append(name)
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        return name

    def remove(self, *ids: str) -> None:
        for cid in ids:
            self.ctr("task", "kill", "-s", "SIGKILL", cid, check=False)
            wait_until = time.monotonic() + 10
            while self._running(cid) and time.monotonic() < wait_until:
                time.sleep(0.05)
            self.ctr("task", "rm", "-f", cid, check=False)
            self.ctr("container", "rm", cid, check=False)
        for name in self.netns if ids else []:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)

    def _running(self, cid: str) -> bool:
        """Whether ``cid``'s task is listed and not yet STOPPED (``task ls``: TASK PID STATUS)."""
        rows = [line.split() for line in self.ctr("task", "ls", check=False).splitlines()]
        return any(row[0] == cid and row[-1] != "STOPPED" for row in rows if row)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.remove(*self.ctr("container", "ls", "-q", check=False).split())
            end_daemon(self.process)
        for name in self.netns:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        unmount_under(self.state)


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-3:])


@contextmanager
def running_containerd():
    """A containerd with the busybox image, everything it made removed at the end."""
    state = Path(tempfile.mkdtemp(prefix="podcap-containerd-"))
    runtime = Containerd(state)
    try:
        runtime.start()
        runtime.ctr("image", "import", str(oci_archive(busybox_rootfs(state), state)), timeout=120)
        yield runtime
    finally:
        runtime.stop()
        shutil.rmtree(state, ignore_errors=True)
