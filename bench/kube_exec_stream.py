"""Throughput of the helper-Pod exec stream: bytes from a command in the helper to podcap,
through the real kubernetes client, TLS and the WebSocket channel protocol (v4 and v5), against
the in-test API server on 127.0.0.1, side by side with a plain local pipe of the same bytes.

    python3 bench/kube_exec_stream.py [MEGABYTES]

No real cluster: the API server is tests/kube_api.py, so this measures podcap's client side
(WSClient framing, TLS, the pipe to the writer), not a real apiserver/kubelet hop.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from podcap import locate  # noqa: E402
from podcap.reach import pod as helper  # noqa: E402
from tests import kube_api as K  # noqa: E402


def drain(stream) -> int:
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
    return total


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    command = ["head", "-c", str(megabytes << 20), "/dev/zero"]
    start = time.perf_counter()
    local = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert drain(local.stdout) == megabytes << 20
    local.wait()
    local_rate = megabytes / (time.perf_counter() - start)
    print(f"{'path':<32}{'MB/s':>10}")
    print(f"{'local pipe (head | python)':<32}{local_rate:>10.0f}")
    with tempfile.TemporaryDirectory() as workdir:
        for protocol in (K.V4, K.V5, K.V4, K.V5):
            cluster = K.Cluster(exec_protocols=(protocol,))
            cluster.add_namespace("podcap-system")
            cluster.add_node("node-a", "172.20.0.11", "10.244.0.0/24")
            with K.APIServer(cluster, Path(workdir)) as server:
                kube = locate.connect(str(server.kubeconfig(Path(workdir) / "kubeconfig")))
                spec = helper.HelperSpec()
                with helper.helper_transports(kube, spec, {"node-a": []}) as transports:
                    start = time.perf_counter()
                    process = transports["node-a"].start(command)
                    received = drain(process.stdout)
                    process.wait(60)
                    rate = megabytes / (time.perf_counter() - start)
            assert received == megabytes << 20, received
            print(f"{'helper exec ' + protocol + ' (TLS)':<32}{rate:>10.0f}")


if __name__ == "__main__":
    main()
