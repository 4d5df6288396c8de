"""The servers a lab Pod (or the IDC host) runs: an HTTP server and a marker server.

Run as a program inside a network namespace (``ip netns exec NS python3 servers.py ...``); it is
the Pod's main process, so its PID is the one whose /proc/PID/ns/net is the Pod's namespace and
whose /proc/PID/cgroup names the Pod's kubelet-style cgroup.

- HTTP on ``--http-port``: 200 for any path, body ``ok <name> <path>`` (repeated to N bytes
  with ``?size=N``).
- Marker on ``--marker-port``: a TCP server that reads what the client sends (such as the
  ``lbtest`` marker), answers ``ack <n>`` with the byte count and closes. The same port in UDP
  answers each datagram with ``ack <n> <the datagram>``.

Every request is appended as one JSON line to ``--log`` (kind, peer address and port, path or
data), so a test can see what arrived and from which source address (SNAT shows up there).
Prints ``ready`` on stdout once both sockets listen.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_log_lock = threading.Lock()


def _record(path: str, entry: dict) -> None:
    entry["time"] = time.time()
    with _log_lock, open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--marker-port", type=int, required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)

    class HTTPHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "podcap-lab"
        sys_version = ""

        def _answer(self, with_body: bool) -> None:
            body = f"ok {args.name} {self.path}\n".encode()
            size = parse_qs(urlsplit(self.path).query).get("size")
            if size and size[0].isdigit():  # ?size=N: a body of N bytes (large responses)
                body = (body * (int(size[0]) // len(body) + 1))[: int(size[0])]
            _record(
                args.log,
                {
                    "kind": "http",
                    "method": self.command,
                    "path": self.path,
                    "peer_ip": self.client_address[0],
                    "peer_port": self.client_address[1],
                },
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if with_body:
                self.wfile.write(body)
            self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._answer(True)

        def log_message(self, format: str, *a) -> None:  # noqa: A002
            pass

    class MarkerHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            sock.settimeout(5)
            data = b""
            try:
                while len(data) < 65536:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                    if b"\n" in chunk:
                        break
            except TimeoutError:
                pass
            _record(
                args.log,
                {
                    "kind": "marker",
                    "data": data.decode("utf-8", "replace"),
                    "peer_ip": self.client_address[0],
                    "peer_port": self.client_address[1],
                },
            )
            try:
                sock.sendall(f"ack {len(data)}\n".encode())
            except OSError:
                pass

    class MarkerServer(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    http_server = ThreadingHTTPServer(("0.0.0.0", args.http_port), HTTPHandler)
    marker_server = MarkerServer(("0.0.0.0", args.marker_port), MarkerHandler)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", args.marker_port))
    threading.Thread(target=_answer_datagrams, args=(udp, args.log), daemon=True).start()
    for server in (http_server, marker_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


def _answer_datagrams(udp: socket.socket, log: str) -> None:
    while True:
        data, peer = udp.recvfrom(65536)
        _record(log, {"kind": "udp", "data": data.decode("utf-8", "replace"),
                      "peer_ip": peer[0], "peer_port": peer[1]})  # fmt: skip
        udp.sendto(b"ack %d " % len(data) + data, peer)


if __name__ == "__main__":
    sys.exit(main())
