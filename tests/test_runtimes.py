"""podcap against real container runtimes (``testbed/runtimes.py``): Debian's docker.io, its
dockerd started here, and podman, running containers of a busybox image built here. A
container's PID is found as on a node: its cgroup in ``/proc/*/cgroup`` (cgroupfs here:
``/docker/<id>``, ``/libpod_parent/libpod-<id>``), or the runtime's own CLI
(``--pid-lookup``). If a runtime cannot run here, its test fails with the runtime's words."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from testbed.containerd import running_containerd
from testbed.helpers import podcap, start_podcap, tshark_fields, wait_for
from testbed.runtimes import running_docker, running_podman

# Where each runtime puts a container's processes (cgroupfs: these machines have no systemd),
# and the --pid-lookup that asks its own CLI.
CGROUPS = {
    "docker": "/docker/{id}",
    "podman": "/libpod_parent/libpod-{id}",
    "containerd": "/podcap/{id}",
}  # fmt: skip  (ctr's namespace, podcap, then the ID)
LOOKUPS = {"docker": "docker", "podman": "podman", "containerd": "ctr"}


@pytest.fixture(scope="module", params=["docker", "podman", "containerd"])
def runtime(request):
    starts = {"docker": running_docker, "podman": running_podman,
              "containerd": running_containerd}  # fmt: skip
    with starts[request.param]() as started:
        started.name, started.lookup = request.param, LOOKUPS[request.param]
        yield started


@pytest.fixture
def web(runtime):
    """A container serving HTTP on port 8080 on the test's bridge."""
    container = runtime.run("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
    try:
        assert wait_for(lambda: _fetch(container.address), timeout=15), "httpd never answered"
        yield container
    finally:
        runtime.remove(container.id)


def _fetch(address: str, path: str = "/") -> bool:
    done = subprocess.run(["curl", "-sf", "-m", "2", f"http://{address}:8080{path}"],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


def test_the_cgroup_of_a_container_names_it(runtime, web):
    cgroup = open(f"/proc/{web.pid}/cgroup", encoding="utf-8").read()
    assert CGROUPS[runtime.name].format(id=web.id) in cgroup


@pytest.fixture(params=["local", "ssh"])
def reach(request) -> list[str]:
    """How the node is reached: this machine, or ssh to the test's sshd on 127.0.0.1."""
    if request.param == "local":
        return ["--via", "local"]
    return request.getfixturevalue("sshd_server").cli_flags()


def test_capture_in_a_container_by_its_id(web, reach, tmp_path):
    out = tmp_path / "c.pcap"
    run = start_podcap("capture", *reach, "--container-id", web.container_id,
                       "-f", "tcp port 8080", "--count", "30", "-o", out)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while run.poll() is None and time.monotonic() < deadline:
            _fetch(web.address, "/index.html?podcap")
            time.sleep(0.2)
        _, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, stderr.decode()
    requests = tshark_fields(out, "http.request.uri", "ip.dst")
    assert ["/index.html?podcap", web.address] in requests, requests
    sidecar = json.loads((tmp_path / "c.pcap.json").read_text())
    assert sidecar["point"]["container_id"] == web.id and sidecar["point"]["pid"] == web.pid


def test_netns_runs_a_command_in_the_containers_namespace(web):
    done = podcap("netns", "--via", "local", "--container-id", web.container_id, "--",
                  "ip", "-o", "-4", "addr", "show")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"inet {web.address}/" in done.stdout


def test_inspect_lists_the_socket_the_container_listens_on(web):
    done = podcap("inspect", "--via", "local", "--container-id", web.container_id, "-F", "json")
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    listening = [
        (s["proto"], s["local_port"]) for s in snapshot["sockets"] if s["state"] == "LISTEN"
    ]
    assert ("tcp", 8080) in listening, snapshot["sockets"]
    assert web.address in snapshot["summary"][0]["addresses"]


def test_a_container_on_the_hosts_network_is_refused(runtime, tmp_path):
    host = runtime.run("/bin/busybox", "sleep", "300", options=("--network", "host"))
    try:
        done = podcap("capture", "--via", "local", "--container-id", host.container_id,
                      "--count", "1", "-o", tmp_path / "x.pcap")  # fmt: skip
    finally:
        runtime.remove(host.id)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "shares the node's network namespace" in lines[0], done.stderr
    assert not (tmp_path / "x.pcap").exists()


def test_the_runtimes_own_lookup_finds_the_pid(runtime, web):
    """--pid-lookup docker, podman, ctr: the PID from the runtime's own CLI (`inspect`, ctr's
    task list), pointed at this daemon or storage as a node's is by its defaults; no /proc
    scan."""
    env = dict(os.environ, **runtime.env)
    done = podcap("netns", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", runtime.lookup, "--", "ip", "-o", "-4", "addr", "show",
                  env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"inet {web.address}/" in done.stdout


def test_a_lookup_that_finds_nothing_names_what_it_tried(runtime, web):
    """The runtime's CLI against another daemon or storage, and a CLI the node lacks."""
    elsewhere = {"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                 "CONTAINERS_STORAGE_CONF": "/nonexistent/storage.conf",
                 "CONTAINERD_ADDRESS": "/nonexistent/containerd.sock"}  # fmt: skip
    env = dict(os.environ, PATH="/usr/bin:/bin:/usr/sbin:/sbin", **elsewhere)
    done = podcap("netns", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", f"{runtime.lookup},crictl", "--", "true", env=env)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"no process on this node belongs to container {web.id}" in lines[0]
    assert f"(looked in {runtime.lookup}, crictl (not installed))" in lines[0]


def test_an_unknown_lookup_is_refused_before_the_node_is_reached(web):
    done = podcap("capture", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", "cgroup,runsc", "-o", "/tmp/never.pcap")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "podcap: error: --pid-lookup cgroup,runsc: unknown way 'runsc' "
        "(choose from cgroup,crictl,docker,podman,ctr)"
    ]
