"""podcap.locate.kube against the in-test API server: loading the configuration, API failures
as one line.
"""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
import yaml

from podcap import locate
from podcap.errors import LocateError
from testbed import kube_api as K
from testbed.helpers import podcap
from tests.kube_fixtures import names, shop_cluster


def test_default_namespace_comes_from_the_kubeconfig_context(make_kube_api, tmp_path, monkeypatch):
    server = make_kube_api(shop_cluster())
    config = yaml.safe_load(server.kubeconfig_path.read_text())
    config["contexts"].append(
        {"name": "shop", "context": {"cluster": "lab", "user": K.USER, "namespace": "shop"}}
    )
    path = tmp_path / "merged"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    kube = locate.connect(context="shop")
    assert kube.default_namespace == "shop"
    assert names(locate.resolve(kube, locate.TargetQuery(["web-0"]))) == ["shop/web-0"]
    assert locate.connect().default_namespace == "default"


def test_rbac_denied_names_verb_and_resource(shop):
    cluster, kube = shop
    cluster.denied.add(("get", "pods", "shop"))
    with pytest.raises(LocateError, match=r"RBAC denied: cannot get pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(["web-0"], namespace="shop"))
    cluster.denied = {("list", "pods", "*")}
    with pytest.raises(LocateError, match=r"cannot list pods in namespace shop"):
        locate.resolve(kube, locate.TargetQuery(selector="app=web", namespace="shop"))


def test_no_configuration_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(LocateError, match="no Kubernetes configuration"):
        locate.connect()
    with pytest.raises(LocateError, match="no kubeconfig file at .*missing"):
        locate.connect(str(tmp_path / "missing"))
    (tmp_path / "broken").write_text("clusters: [\n")
    with pytest.raises(LocateError, match="cannot load kubeconfig .*broken"):
        locate.connect(str(tmp_path / "broken"))


def _kubeconfig(tmp_path, server: str):
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )  # fmt: skip
    return path


@pytest.fixture
def closed_port():
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def login_page_server():
    """A server on loopback that answers every request with an HTML login page, as an SSO
    proxy in front of an API server does."""

    class LoginPage(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = b"<!doctype html><html><body>Sign in to continue</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LoginPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


COMMANDS = [
    ["cleanup"],
    ["capture", "web-0", "-n", "shop", "-d", "1"],
    ["capture", "-l", "app=web", "--dry-run"],
    ["inspect", "web-0"],
    ["netns", "web-0", "--", "true"],
    ["diagnose", "web-0", "web-1", "-q"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_an_unreachable_api_server_is_one_line(tmp_path, closed_port, command):
    kubeconfig = _kubeconfig(tmp_path, f"http://127.0.0.1:{closed_port}")
    done = podcap(*command[:1], "--kubeconfig", kubeconfig, *command[1:], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"podcap: error: cannot reach the Kubernetes API server at "
        f"http://127.0.0.1:{closed_port}: Connection refused\n"
    )


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_login_page_instead_of_the_api_is_one_line(tmp_path, login_page_server, command):
    kubeconfig = _kubeconfig(tmp_path, login_page_server)
    done = podcap(*command[:1], "--kubeconfig", kubeconfig, *command[1:], cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(
        f"podcap: error: {login_page_server} does not answer as a Kubernetes API server "
        "(it sent text/html: '<!doctype html><html><body>Sign in to continue"
    )


def test_a_missing_kubeconfig_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    with pytest.raises(LocateError, match=r"no kubeconfig file at .*nope"):
        locate.connect()
