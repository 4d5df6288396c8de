"""``podcap cleanup``: delete helper Pods left behind (label app.kubernetes.io/managed-by=podcap)."""

from __future__ import annotations

import typer

from podcap.cli import app


@app.command()
def cleanup(
    helper_namespace: str = typer.Option(
        "podcap-system", "--helper-namespace", help="Namespace the helper Pods run in."
    ),
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", "-A", help="Look for helpers in every namespace."
    ),
    session: str | None = typer.Option(
        None, "--session", help="Only the helpers of this capture session (its id)."
    ),
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config)."
    ),
    context: str | None = typer.Option(None, "--context", help="Kubeconfig context to use."),
) -> None:
    """Delete helper Pods a crashed or interrupted capture left behind."""
    from podcap.locate import connect
    from podcap.reach.pod import cleanup as delete_helpers

    kube = connect(kubeconfig, context)
    deleted = delete_helpers(kube, None if all_namespaces else helper_namespace, session)
    for name in deleted:
        typer.echo(f"deleted pod {name}")
    if not deleted:
        where = "any namespace" if all_namespaces else f"namespace {helper_namespace}"
        typer.echo(f"no podcap helper pods in {where}")
