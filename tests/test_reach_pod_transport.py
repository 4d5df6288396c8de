"""podcap.reach.pod.transport: exec over v4/v5 WebSockets, stopping, a lost stream tail."""

from __future__ import annotations

import os
import time

import pytest

from podcap.errors import ReachError
from podcap.reach import pod as helper
from testbed import kube_api as K


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_exec_stream_is_binary_safe_with_exit_code_and_stderr(shop_server, protocol, tmp_path):
    cluster, kube, _ = shop_server
    cluster.exec_protocols = (protocol,)
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3_000_000) + bytes(range(256)) * 8)
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": [K.USER]}) as transports:
        transport = transports["node-a"]
        script = 'cat "$1"; echo to-stderr >&2; exit 7'
        done = transport.run(["sh", "-c", script, "sh", str(payload)])
        assert done.stdout == payload.read_bytes()
        assert done.returncode == 7
        assert done.stderr == b"to-stderr\n"
        assert transport.run(["true"]).returncode == 0
    assert {e.protocol for e in cluster.execs} == {protocol}
    assert cluster.helper_pods() == []


@pytest.mark.parametrize("protocol", [K.V5, K.V4])
def test_stop_ends_a_command_that_waits_on_stdin(shop_server, protocol):
    cluster, kube, _ = shop_server
    cluster.exec_protocols = (protocol,)
    # Ends on stdin EOF (v5) or on SIGINT (v4: the "stop" line is ignored here on purpose, so
    # the fallback, kill -INT through a second exec, has to work).
    script = "trap 'echo sigint >&2; exit 0' INT; while read -r l; do :; done; echo eof >&2"
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}) as transports:
        process = transports["node-a"].start(["sh", "-c", script])
        time.sleep(0.5)
        # Still running: it waits for us. The transport contract's timeout is a ReachError
        # (a PodcapError the capture session and the CLI report), never the builtin one.
        with pytest.raises(ReachError, match=r"exec in .* still running after 0.1 s"):
            process.wait(0.1)
        process.stop()
        assert process.wait(20) == 0
        assert ("eof" if protocol == K.V5 else "sigint") in process.stderr_text()
        assert "podcap-exec pid=" not in process.stderr_text()
    (session,) = [e for e in cluster.execs if e.command[-1] == script]
    assert session.stdin_closed == (protocol == K.V5)


def test_lost_stream_tail_is_detected(shop_server):
    cluster, kube, _ = shop_server
    cluster.stdout_limit = 1000
    script = (
        "head -c 5000 /dev/zero; echo 'podcap-node: stats captured=1 written=5000 status=0' >&2"
    )
    with helper.helper_transports(kube, helper.HelperSpec(), {"node-a": []}) as transports:
        process = transports["node-a"].start(["sh", "-c", script])
        received = process.stdout.read()
        while chunk := process.stdout.read():
            received += chunk
        assert process.wait(10) == 0
        assert len(received) == process.bytes_received == 1000
        assert process.bytes_written() == 5000
        with pytest.raises(ReachError, match="lost 4000 of 5000 bytes"):
            process.check_complete()
