"""How long ``podcap netns -- true`` and ``podcap inspect`` take, per transport, next to doing
the same by hand (``nsenter -n -t PID true``, locally and over ssh).

Run as root from the repository root: ``python3 -m bench.netns_latency [--repeat 5]``. It builds
a lab (testbed/lab), a real sshd on 127.0.0.1 (testbed/sshd.py) and the in-test API server
(testbed/kube_api.py) for the helper-Pod transport; everything is removed at the end. Each figure
is the median wall time of ``--repeat`` runs of the whole ``podcap`` process (Python start-up
included).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed import kube_api, sshd
from testbed.lab.core import Lab


def median_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, timeout=120)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv[:6]}... failed: {done.stderr.decode()[-500:]}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    repeat = parser.parse_args().repeat
    podcap = [sys.executable, "-m", "podcap"]
    with Lab(nodes=1, pods_per_node=1) as lab, tempfile.TemporaryDirectory() as workdir:
        pod = lab.pods[0]
        server = sshd._start_sshd(workdir)
        try:
            ssh_flags = ["--via", "ssh", "--node", server.host, "--ssh-port", str(server.port)]
            ssh_flags += ["--ssh-key", server.key, "--ssh-user", "root"]
            for option in server.options:
                ssh_flags += ["--ssh-option", option]
            cluster = kube_api.cluster_from_lab(lab)
            with kube_api.APIServer(cluster, Path(workdir)) as api:
                kubeconfig = api.kubeconfig(Path(workdir) / "kubeconfig")
                pod_flags = [pod.name, "-n", pod.namespace, "--kubeconfig", str(kubeconfig)]
                by_id = ["--container-id", pod.container_id]
                rows = [
                    ("by hand: nsenter -n -t PID true", ["nsenter", "-n", "-t", str(pod.pid), "true"]),
                    ("by hand: ssh node nsenter ... true", server.ssh_argv("nsenter", "-n", "-t", str(pod.pid), "true")),
                    ("podcap netns --via local -- true", [*podcap, "netns", *by_id, "--", "true"]),
                    ("podcap netns --via ssh -- true", [*podcap, "netns", *ssh_flags, *by_id, "--", "true"]),
                    ("podcap netns POD (helper Pod) -- true", [*podcap, "netns", *pod_flags, "--", "true"]),
                    ("podcap inspect --via local", [*podcap, "inspect", *by_id, "-F", "json"]),
                    ("podcap inspect --via ssh", [*podcap, "inspect", *ssh_flags, *by_id, "-F", "json"]),
                    ("podcap inspect POD (helper Pod)", [*podcap, "inspect", *pod_flags, "-F", "json"]),
                ]  # fmt: skip
                print(f"median of {repeat} runs, wall seconds")
                for name, argv in rows:
                    print(f"{name:42s} {median_seconds(argv, repeat):6.2f}")
        finally:
            sshd._stop_sshd(server)


if __name__ == "__main__":
    main()
