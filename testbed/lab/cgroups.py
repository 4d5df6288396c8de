"""Kubelet-style cgroups for lab Pods, on whatever cgroup hierarchies this machine mounts.

A real node puts a container's processes in a cgroup whose path names the Pod UID and the
container ID, in one of two styles depending on the kubelet's cgroup driver:

- cgroupfs: ``/kubepods/besteffort/pod<uid>/<64-hex-id>``
- systemd:  ``/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid with _>.slice/
  cri-containerd-<64-hex-id>.scope``

so ``/proc/PID/cgroup`` carries the container ID and a tool can go from ``containerd://<id>`` to a
PID by scanning ``/proc/*/cgroup``. The lab creates the same paths on every hierarchy it may
use: cgroup v2 (unified, whether at /sys/fs/cgroup or /sys/fs/cgroup/unified) and cgroup v1
hierarchies. It leaves the ``memory`` and ``cpuset`` v1 controllers alone: the first may hold
this very session's accounting, the second needs cpus/mems set before it takes a process.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass, field

SKIP_V1_CONTROLLERS = {"memory", "cpuset"}
_V1_CONTROLLERS = {
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
}


@dataclass(frozen=True)
class Hierarchy:
    mountpoint: str
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: the mount's controllers (name=systemd included)


def hierarchies() -> list[Hierarchy]:
    """The writable cgroup hierarchies mounted here that lab Pods are placed in."""
    found: list[Hierarchy] = []
    seen: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        parts = left.split()
        rparts = right.split()
        if len(parts) < 5 or len(rparts) < 3:
            continue
        fstype, mountpoint = rparts[0], parts[4]
        if mountpoint in seen or not os.access(mountpoint, os.W_OK):
            continue
        if fstype == "cgroup2":
            found.append(Hierarchy(mountpoint, 2, ()))
        elif fstype == "cgroup":
            opts = rparts[2].split(",")
            ctrls = tuple(o for o in opts if o in _V1_CONTROLLERS or o.startswith("name="))
            if not ctrls or any(c in SKIP_V1_CONTROLLERS for c in ctrls):
                continue
            found.append(Hierarchy(mountpoint, 1, ctrls))
        else:
            continue
        seen.add(mountpoint)
    return found


def kubelet_cgroup_path(
    style: str, pod_uid: str, container_id: str, qos: str = "besteffort"
) -> str:
    """The cgroup path (relative to a hierarchy's root) the kubelet gives a container."""
    if style == "cgroupfs":
        if qos == "guaranteed":
            return f"/kubepods/pod{pod_uid}/{container_id}"
        return f"/kubepods/{qos}/pod{pod_uid}/{container_id}"
    if style == "systemd":
        uid = pod_uid.replace("-", "_")
        if qos == "guaranteed":
            return f"/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{container_id}.scope"
        return (
            f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{uid}.slice/"
            f"cri-containerd-{container_id}.scope"
        )
    raise ValueError(f"unknown cgroup style {style!r} (cgroupfs or systemd)")


@dataclass
class Placement:
    """Where one Pod's cgroup directories were made, to take them down again."""

    relpath: str
    created: list[str] = field(default_factory=list)  # absolute dirs we made, parents first
    attached: list[str] = field(default_factory=list)  # hierarchies the process joined


def place(pid: int, relpath: str, tries: int = 5) -> Placement:
    """Create ``relpath`` on every usable hierarchy and move ``pid`` into it."""
    placement = Placement(relpath)
    for h in hierarchies():
        target = os.path.join(h.mountpoint, relpath.lstrip("/"))
        for attempt in range(tries):
            try:
                _makedirs(h.mountpoint, relpath, placement.created)
                with open(os.path.join(target, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
                placement.attached.append(h.mountpoint)
                break
            except FileNotFoundError:
                # A parallel lab removed a shared parent (kubepods) between our mkdir and write.
                time.sleep(0.05 * (attempt + 1))
            except OSError:
                break
    return placement


def _makedirs(root: str, relpath: str, created: list[str]) -> None:
    path = root
    for part in relpath.strip("/").split("/"):
        path = os.path.join(path, part)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        if path not in created:
            created.append(path)
        if not _is_leaf_of_ours(path):
            _update_shared(add=[path])


# Shared parents (kubepods, kubepods/besteffort, kubepods.slice, ...) outlive the lab that made
# them while another lab still has Pods below. Every parent a lab made is listed here, and the
# last lab to close (or the sweep) removes the listed ones that are empty. Parents the lab did
# not make (a real kubelet's) are never listed, so never removed.
SHARED_REGISTRY = "/run/podcap-lab/cgroup-parents.registry"


def _update_shared(add: list[str] = (), prune: bool = False) -> None:
    os.makedirs(os.path.dirname(SHARED_REGISTRY), exist_ok=True)
    with open(SHARED_REGISTRY + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(SHARED_REGISTRY, encoding="utf-8") as f:
                listed = set(json.load(f))
        except (OSError, ValueError):
            listed = set()
        listed.update(add)
        if prune:
            for path in sorted(listed, key=lambda p: p.count("/"), reverse=True):
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    continue  # still in use by another lab's Pods
                listed.discard(path)
        tmp = SHARED_REGISTRY + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(sorted(listed), f)
        os.replace(tmp, SHARED_REGISTRY)


def remove(dirs: list[str]) -> list[str]:
    """rmdir the given cgroup dirs, deepest first; returns those still there.

    Shared parents (kubepods, kubepods.slice, ...) are only removed when empty: another lab's
    Pods may still live under them, and then rmdir fails with EBUSY/ENOTEMPTY, which is fine.
    """
    left = []
    leaves = {d for d in dirs if _is_leaf_of_ours(d)}
    for path in sorted(leaves, key=lambda p: p.count("/"), reverse=True):
        for _attempt in range(20):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno in (errno.EBUSY, errno.ENOTEMPTY) and _is_leaf_of_ours(path):
                    time.sleep(0.05)  # a killed process may still be leaving the cgroup
                    continue
                left.append(path)
                break
        else:
            left.append(path)
    _update_shared(prune=True)
    return [p for p in left if os.path.exists(p)]


def _is_leaf_of_ours(path: str) -> bool:
    base = os.path.basename(path)
    return (
        base.startswith("pod")
        or base.startswith("cri-containerd-")
        or len(base) == 64
        or ("-pod" in base and base.endswith(".slice"))
    )
