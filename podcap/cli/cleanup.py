"""``podcap cleanup``: delete helper Pods left behind (label app.kubernetes.io/managed-by=podcap)."""

from __future__ import annotations

from typing import Annotated

import typer

from podcap.cli import app
from podcap.cli.options import DEFAULT_HELPER_NAMESPACE, Context, HelperNamespace, Kubeconfig

# Not options.AllNamespaces: here -A widens where helpers are looked for, not a Pod selector.
EveryNamespace = Annotated[
    bool, typer.Option("--all-namespaces", "-A", help="Look for helpers in every namespace.")
]
Session = Annotated[
    str | None, typer.Option("--session", help="Only the helpers of this capture session (its id).")
]
Force = Annotated[
    bool,
    typer.Option(
        "--force", help="Also delete helpers a capture is still using (recent heartbeat)."
    ),
]


@app.command()
def cleanup(
    helper_namespace: HelperNamespace = DEFAULT_HELPER_NAMESPACE,
    all_namespaces: EveryNamespace = False,
    session: Session = None,
    force: Force = False,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Delete helper Pods a crashed or interrupted capture left behind.

    A helper whose capture still runs (its podcap.io/heartbeat annotation is under 20 s old)
    is left alone and named, unless --force.
    """
    from podcap.locate import connect
    from podcap.reach.pod import cleanup as delete_helpers

    kube = connect(kubeconfig, context)
    cleaned = delete_helpers(kube, None if all_namespaces else helper_namespace, session, force)
    for name in cleaned.deleted:
        typer.echo(f"deleted pod {name}")
    for name, age in cleaned.in_use:
        typer.echo(f"kept pod {name}: a capture is using it (heartbeat {age:.0f} s ago; "
                   "--force deletes it)")  # fmt: skip
    if not cleaned.deleted and not cleaned.in_use:
        where = "any namespace" if all_namespaces else f"namespace {helper_namespace}"
        typer.echo(f"no podcap helper pods in {where}")
