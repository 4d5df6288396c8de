"""``podcap.diagnose(...)``: the command's steps as one library call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from podcap.diagnosis.plan import DiagnoseRequest, plan_diagnosis
from podcap.diagnosis.run import Diagnosis, run_diagnosis


def diagnose(
    source: str,
    destination: str,
    *,
    namespace: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    probe: str = "tcp",
    probe_size: int = 0,
    timeout: float = 3.0,
    duration: float = 10.0,
    output_dir: str | Path = ".",
    helper_namespace: str | None = None,
    image: str | None = None,
    on_step: Callable[[str], None] | None = None,
    node_pid: str = "1",
) -> Diagnosis:
    """Capture at both Pods and both nodes' NICs, probe ``destination`` (``POD[:PORT]``) from
    inside ``source``, line the captures up. The Diagnosis holds the path report
    (``.path``, a DataFrame), the probe's row and verdict (``.reachable``, ``.verdict()``) and
    the evidence files (``.bundle``, ``.files``). Raises a PodcapError (one line) when it
    cannot diagnose; the helper Pods are deleted in every case. ``node_pid``: the process
    whose namespaces are "the node" in the helper (1, its hostPID init; "NODE=PID,..." for
    the test lab, whose nodes share one machine).

    >>> d = podcap.diagnose("web-a0", "web-b0:80", namespace="shop")  # doctest: +SKIP
    >>> d.reachable, d.probe_row["lost_between"]  # doctest: +SKIP
    (False, 'node-a eth0 -> node-b eth0')
    """
    from podcap import locate
    from podcap.reach.pod import DEFAULT_HELPER_NAMESPACE, HelperSpec

    request = DiagnoseRequest(
        source, destination, namespace, probe, timeout, duration, Path(output_dir),
        node_pid=node_pid, probe_size=probe_size,
    )  # fmt: skip
    kube = locate.connect(kubeconfig, context)
    helper = HelperSpec.for_duration(
        timeout + 60, namespace=helper_namespace or DEFAULT_HELPER_NAMESPACE, image=image
    )
    plan = plan_diagnosis(kube, request, helper)
    return run_diagnosis(kube, plan, on_step=on_step or (lambda text: None))
