"""Throughput of the helper-Pod exec stream: bytes from a command in the helper to podcap,
through the real kubernetes client, TLS and the WebSocket channel protocol (v4 and v5), against
the in-test API server on 127.0.0.1, side by side with a plain local pipe of the same bytes.

    python3 -m bench.kube_exec_stream [MEGABYTES]

No real cluster: the API server is testbed/kube_api.py, so this measures podcap's client side
(WSClient framing, TLS, the pipe to the writer), not a real apiserver/kubelet hop.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from podcap import locate
from podcap.reach import pod as helper
from testbed import kube_api as K


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
        for protocol in (K.V5, K.V4):
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
        print(f"{'WSClient.update() loop, 20 MB':<32}{wsclient_rate(Path(workdir)):>10.1f}")


def wsclient_rate(workdir: Path, megabytes: int = 20) -> float:
    """The kubernetes client's own reader (WSClient.update + read_channel), for comparison:
    why podcap reads frames itself. Its channel buffers grow by ``bytes +=`` over the backlog."""
    from kubernetes.stream import ws_client

    cluster = K.Cluster()
    cluster.add_namespace("podcap-system")
    cluster.add_node("node-a", "172.20.0.11", "10.244.0.0/24")
    with K.APIServer(cluster, workdir) as server:
        kube = locate.connect(str(server.kubeconfig(workdir / "kubeconfig-ws")))
        with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}) as transports:
            transport = transports["node-a"]
            configuration = kube.configuration
            url = (
                f"{configuration.host}/api/v1/namespaces/podcap-system/pods/"
                f"{transport.helper.name}/exec"
            )
            query = [("command", ["head", "-c", str(megabytes << 20), "/dev/zero"])]
            query += [("container", "capture"), ("stdout", "true"), ("stderr", "true")]
            token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
            start = time.perf_counter()
            client = ws_client.WSClient(
                configuration,
                ws_client.get_websocket_url(url, query),
                {"authorization": token},
                capture_all=False,
                binary=True,
            )
            received = 0
            while client.is_open():
                client.update(timeout=1)
                received += len(client.read_channel(ws_client.STDOUT_CHANNEL))
            assert received == megabytes << 20, received
            return megabytes / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
