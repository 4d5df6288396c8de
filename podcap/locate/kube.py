"""Connecting to the Kubernetes API, and every API failure turned into one LocateError line."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from podcap.errors import LocateError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Kube:
    """A loaded client configuration. ``api()`` gives a fresh ApiClient per thread/stream,
    because the client is not safe to share between a running exec and REST calls
    (kubernetes-client/python#928)."""

    configuration: client.Configuration
    default_namespace: str
    source: str

    def api(self) -> client.ApiClient:
        return client.ApiClient(self.configuration)

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api())


def connect(kubeconfig: str | None = None, context: str | None = None) -> Kube:
    """Load credentials: ``--kubeconfig``, then ``$KUBECONFIG``, then ``~/.kube/config``,
    then the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    configuration = client.Configuration()
    first_file = path.split(os.pathsep)[0]
    if kubeconfig or os.environ.get("KUBECONFIG") or Path(first_file).exists():
        return _from_kubeconfig(path, context, configuration)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise LocateError(f"in-cluster configuration unusable: {exc}") from exc
        namespace = (
            IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else "default"
        )
        return Kube(configuration, namespace, "in-cluster service account")
    raise LocateError(
        "no Kubernetes configuration: no kubeconfig at ~/.kube/config and not inside a cluster",
        hint="pass --kubeconfig or set KUBECONFIG",
    )


def _from_kubeconfig(path: str, context: str | None, configuration) -> Kube:
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
        contexts, active = config.list_kube_config_contexts(config_file=path)
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise LocateError(f"cannot load kubeconfig {path}: {exc}") from exc
    if context:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return Kube(configuration, namespace, f"kubeconfig {path}")


# --- turning API failures into one line ---------------------------------------------------


def api_error(exc: Exception, verb: str, resource: str, namespace: str | None, name: str = ""):
    """The LocateError for a failed call ``verb resource/name`` in ``namespace``."""
    where = f" in namespace {namespace}" if namespace else ""
    what = f"{resource} {name}".strip()
    if isinstance(exc, ApiException):
        if exc.status == 403:
            return LocateError(
                f"RBAC denied: cannot {verb} {resource}{where} (need '{verb}' on '{resource}')"
            )
        if exc.status == 404:
            return LocateError(f"{what} not found{where}")
        if exc.status == 401:
            return LocateError("the API server rejected the credentials (401 Unauthorized)")
        return LocateError(f"{verb} {what}{where} failed: {exc.status} {exc.reason or ''}".rstrip())
    return LocateError(f"cannot reach the Kubernetes API server: {exc}")


def call(fn, verb: str, resource: str, namespace: str | None, name: str = "", /, **kwargs):
    """Call one API method, mapping its failures to LocateError."""
    try:
        return fn(**kwargs)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise api_error(exc, verb, resource, namespace, name) from exc
