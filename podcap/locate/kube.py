"""Connecting to the Kubernetes API, and every API failure turned into one LocateError line."""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from podcap.errors import LocateError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CheckedApiClient(client.ApiClient):
    """The kubernetes client's ApiClient, with the two failures it has no words for said in
    one line: a server that cannot be reached (the client raises urllib3's errors as they
    are), and one that answers as something other than the Kubernetes API, such as the login
    page of an SSO proxy in front of it (the client then fails deep in its model classes)."""

    def call_api(self, method, url, *args, **kwargs):
        try:
            return super().call_api(method, url, *args, **kwargs)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise LocateError(
                f"cannot reach the Kubernetes API server at {self.configuration.host}: {_why(exc)}"
            ) from exc

    def deserialize(self, response_text, response_type, *rest):
        content_type = rest[0] if rest else None
        wants_object = response_type not in (None, "str", "bytearray", "object")
        if wants_object and content_type and "json" not in content_type.lower():
            raise self._not_the_api(f"it sent {content_type.split(';')[0]}", response_text)
        try:
            return super().deserialize(response_text, response_type, *rest)
        except ValueError as exc:  # not JSON, or JSON of another shape (pydantic's errors too)
            raise self._not_the_api("its answer is no Kubernetes object", response_text) from exc

    def _not_the_api(self, why: str, text) -> LocateError:
        start = " ".join(str(text)[:60].split())
        return LocateError(
            f"{self.configuration.host} does not answer as a Kubernetes API server ({why}: "
            f"{start!r}); is a login proxy in front of it? Check --kubeconfig and --context"
        )


def _why(exc: Exception) -> str:
    """The operating system's words for a failed connection, without urllib3's wrapping."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1).strip() if found else text.splitlines()[0]


@dataclass
class Kube:
    """A loaded client configuration. ``api()`` gives a fresh ApiClient per thread/stream,
    because the client is not safe to share between a running exec and REST calls
    (kubernetes-client/python#928)."""

    configuration: client.Configuration
    default_namespace: str
    source: str

    def api(self) -> client.ApiClient:
        return CheckedApiClient(self.configuration)

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


def _credentials_in_memory(configuration) -> None:
    """The client writes a kubeconfig's certificate data (CA, client certificate and key) to
    files in $TMPDIR and removes them only at a normal exit: a kill -9 left them, a private key
    among them. Each such file moves into a memfd, whose /proc/self/fd path lives exactly as
    long as this process, and the file is removed at once (and dropped from the client's cache
    of files it wrote, which would hand its path out again). Files the kubeconfig names itself
    are left alone. A token's refresh hook sets the loader's paths again before each request:
    see :func:`_keep_in_memory`."""
    from kubernetes.config import kube_config

    written = getattr(kube_config, "_temp_files", {})
    moved: dict[str, str] = {}
    for attribute in ("ssl_ca_cert", "cert_file", "key_file"):
        path = getattr(configuration, attribute, None)
        if not path or path not in written.values():
            continue
        fd = os.memfd_create(f"podcap-{attribute}")  # close-on-exec: no child inherits it
        os.write(fd, Path(path).read_bytes())
        moved[attribute] = f"/proc/self/fd/{fd}"
        Path(path).unlink(missing_ok=True)
        for key in [k for k, v in written.items() if v == path]:
            del written[key]
    _keep_in_memory(configuration, moved)


def _keep_in_memory(configuration, moved: dict[str, str]) -> None:
    """The memfd paths in ``configuration``, for good. The loader's refresh hook (a token's)
    rewrites the certificate paths and itself on the configuration it is given, and every
    thread's requests read that one configuration: it runs on a shallow copy instead, which
    shares the ``api_key`` dict it refreshes, so the token still updates in place and the
    paths are never, even for an instant, the removed files."""
    for attribute, memfd in moved.items():
        setattr(configuration, attribute, memfd)
    refresh = getattr(configuration, "refresh_api_key_hook", None)
    if moved and refresh is not None:
        configuration.refresh_api_key_hook = lambda config: refresh(copy.copy(config))


def _from_kubeconfig(path: str, context: str | None, configuration) -> Kube:
    files = [Path(name) for name in path.split(os.pathsep) if name]
    if not any(file.is_file() for file in files):
        named = ", ".join(str(file) for file in files) or repr(path)
        raise LocateError(f"no kubeconfig file at {named}", hint="check --kubeconfig or KUBECONFIG")
    try:
        config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
        contexts, active = config.list_kube_config_contexts(config_file=path)
        _credentials_in_memory(configuration)
    except (ConfigException, OSError, yaml.YAMLError) as exc:
        raise LocateError(f"cannot load kubeconfig {path}: {exc}") from exc
    if context:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return Kube(configuration, namespace, f"kubeconfig {path}")


# --- turning API failures into one line ---------------------------------------------------


def api_error(exc: ApiException, verb: str, resource: str, namespace: str | None, name: str = ""):
    """The LocateError for a call ``verb resource/name`` in ``namespace`` that the API server
    answered with an error (an unreachable server is CheckedApiClient's to say)."""
    where = f" in namespace {namespace}" if namespace else ""
    what = f"{resource} {name}".strip()
    if exc.status == 403:
        return LocateError(
            f"RBAC denied: cannot {verb} {resource}{where} (need '{verb}' on '{resource}')"
        )
    if exc.status == 404:
        return LocateError(f"{what} not found{where}")
    if exc.status == 401:
        return LocateError("the API server rejected the credentials (401 Unauthorized)")
    return LocateError(f"{verb} {what}{where} failed: {exc.status} {exc.reason or ''}".rstrip())


def call(fn, verb: str, resource: str, namespace: str | None, name: str = "", /, **kwargs):
    """Call one API method, mapping the API server's error answers to LocateError."""
    try:
        return fn(**kwargs)
    except ApiException as exc:
        raise api_error(exc, verb, resource, namespace, name) from exc
