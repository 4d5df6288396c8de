"""The helper-Pod transport: a short-lived privileged Pod on the node, driven through pods/exec.

- :mod:`.manifest`: how a helper looks (one per node, hostPID, ending on its own);
- :mod:`.helper`: its life (create, wait, delete whatever happens; ``podcap cleanup``);
- :mod:`.channels`: one exec WebSocket read frame by frame;
- :mod:`.transport`: ``PodTransport``/``PodProcess``, commands run through those channels.

Commands run through the exec API over WebSocket. Pitfalls of the Python client, and what this
package does about them (see /work/shared/notes/capture-peers.md §4):

- stdout must stay binary and flow: frames are read one by one (:class:`ExecChannels`), not
  through ``stream()``/``WSClient``, which decode or buffer (``_all``, ``bytes +=``);
- one ApiClient per stream: nothing here shares the REST client the rest of podcap uses;
- stopping: under ``v5.channel.k8s.io`` stdin is half-closed, which the node script takes as
  "stop"; under ``v4`` (no half-close) "stop" is written on stdin and, if the command is still
  running after a grace period, a second exec sends ``kill -INT`` to it;
- the stream's tail can get lost: the node script reports how many bytes it wrote and
  :meth:`PodProcess.check_complete` compares them with what arrived;
- idle exec sessions get cut by proxies: a WebSocket ping goes out every 30 s.
"""

from podcap.reach.pod.channels import ExecChannels
from podcap.reach.pod.helper import Cleaned, HelperPod, cleanup, helper_transports
from podcap.reach.pod.manifest import (
    CAPABILITIES,
    CONTAINER,
    DEADLINE_MARGIN,
    DEFAULT_HELPER_NAMESPACE,
    DEFAULT_IMAGE,
    MANAGED_BY,
    MANAGED_SELECTOR,
    SESSION_LABEL,
    HelperSpec,
    deadline_for,
    helper_manifest,
)
from podcap.reach.pod.transport import PodProcess, PodTransport

__all__ = [
    "CAPABILITIES",
    "CONTAINER",
    "DEADLINE_MARGIN",
    "DEFAULT_HELPER_NAMESPACE",
    "DEFAULT_IMAGE",
    "MANAGED_BY",
    "MANAGED_SELECTOR",
    "SESSION_LABEL",
    "Cleaned",
    "ExecChannels",
    "HelperPod",
    "HelperSpec",
    "PodProcess",
    "PodTransport",
    "cleanup",
    "deadline_for",
    "helper_manifest",
    "helper_transports",
]
