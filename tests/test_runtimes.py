"""podcap against real container runtimes: Debian's docker.io, its dockerd started here
(``testbed/runtimes.py``), running containers of a busybox image built here. The container's
PID is found as on a node: its cgroup (``/docker/<id>`` with the cgroupfs driver) in
``/proc/*/cgroup``. If a runtime cannot run here, its test fails with the runtime's words."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from testbed.helpers import podcap, start_podcap, tshark_fields, wait_for
from testbed.runtimes import running_docker


@pytest.fixture(scope="module")
def docker():
    with running_docker() as daemon:
        yield daemon


@pytest.fixture
def web(docker):
    """A container serving HTTP on port 8080 on the test's bridge."""
    container = docker.run("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www")
    try:
        assert wait_for(lambda: _fetch(container.address), timeout=15), "httpd never answered"
        yield container
    finally:
        docker.docker("rm", "-f", container.id, check=False)


def _fetch(address: str, path: str = "/") -> bool:
    done = subprocess.run(["curl", "-sf", "-m", "2", f"http://{address}:8080{path}"],
                          capture_output=True, check=False)  # fmt: skip
    return done.returncode == 0


def test_the_cgroup_of_a_docker_container_names_it(web):
    cgroup = open(f"/proc/{web.pid}/cgroup", encoding="utf-8").read()
    assert f"/docker/{web.id}" in cgroup


def test_capture_in_a_docker_container_by_its_id(web, tmp_path):
    out = tmp_path / "docker.pcap"
    run = start_podcap("capture", "--via", "local", "--container-id", web.container_id,
                       "-f", "tcp port 8080", "--count", "8", "-o", out)  # fmt: skip
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
    sidecar = json.loads((tmp_path / "docker.pcap.json").read_text())
    assert sidecar["point"]["container_id"] == web.id and sidecar["point"]["pid"] == web.pid


def test_netns_runs_a_command_in_the_docker_containers_namespace(web):
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


def test_a_container_on_the_hosts_network_is_refused(docker, tmp_path):
    host = docker.run("/bin/busybox", "sleep", "300", options=("--network", "host"))
    try:
        done = podcap("capture", "--via", "local", "--container-id", host.container_id,
                      "--count", "1", "-o", tmp_path / "x.pcap")  # fmt: skip
    finally:
        docker.docker("rm", "-f", host.id, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "shares the node's network namespace" in lines[0], done.stderr
    assert not (tmp_path / "x.pcap").exists()


def test_the_docker_lookup_asks_docker_inspect(docker, web):
    """--pid-lookup docker: the PID from `docker inspect` (the node's docker CLI, pointed at
    this dockerd by DOCKER_HOST as a node's is by its default socket), no /proc scan."""
    env = dict(os.environ, DOCKER_HOST=f"unix://{docker.socket}")
    done = podcap("netns", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", "docker", "--", "ip", "-o", "-4", "addr", "show", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"inet {web.address}/" in done.stdout


def test_a_lookup_that_finds_nothing_names_what_it_tried(web):
    """docker inspect against no daemon, and a runtime CLI the node does not have."""
    env = dict(
        os.environ,
        DOCKER_HOST="unix:///nonexistent/docker.sock",
        PATH="/usr/bin:/bin:/usr/sbin:/sbin",
    )
    done = podcap("netns", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", "docker,crictl", "--", "true", env=env)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"no process on this node belongs to container {web.id}" in lines[0]
    assert "(looked in docker, crictl (not installed))" in lines[0]


def test_an_unknown_lookup_is_refused_before_the_node_is_reached(web):
    done = podcap("capture", "--via", "local", "--container-id", web.container_id,
                  "--pid-lookup", "cgroup,runsc", "-o", "/tmp/never.pcap")  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "podcap: error: --pid-lookup cgroup,runsc: unknown way 'runsc' "
        "(choose from cgroup,crictl,docker,podman,ctr)"
    ]
