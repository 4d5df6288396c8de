"""The reports that need every capture's packets at once, run by one Dask worker.

``packets``, ``icmp``, ``conntrack``, ``snat``, ``dnat``, ``path``, ``hops`` and ``ladder``
read all the captures of a run together (a Pod's, its node's and the peer's, for the path
report); no cut of the packets gives each worker a share that answers them. On Dask they
run as one task: the worker reads every capture (fetched from its URL, with its sidecar,
where a URL names it) and analyzes them as one process does, beside the other workers'
per-capture tasks. What comes back is report rows. That worker needs the memory of the
whole run, as one process would.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podcap.errors import DecodeError


@dataclass
class Together:
    """What the task hands back: the reports, or the error that kept every file unread."""

    tables: dict[str, Any] = field(default_factory=dict)
    matched: int = 0
    errors: list = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sidecars: dict[str, dict] = field(default_factory=dict)
    error: DecodeError | None = None


def analyze_together(paths: list[str], request) -> Together:
    """On a worker: ``request``'s reports of every capture at once."""
    from podcap.analysis.memory import analyze_in_memory
    from podcap.decode import split

    os.environ[split.ENV_SWITCH] = "0"  # a worker's threads: no fork (podcap.analysis.on_dask)
    with tempfile.TemporaryDirectory(prefix="podcap-together-") as scratch:
        local, errors = _local_copies(paths, Path(scratch))
        if not local:
            return Together(error=errors[0] if len(errors) == 1 else _none_read(paths, errors))
        try:
            outcome = analyze_in_memory(list(local), request, lambda message: None)
        except DecodeError as exc:
            return Together(error=DecodeError(_named_text(str(exc), local)))
        return Together(
            tables={name: _named_files(t, local) for name, t in outcome.tables.items()},
            matched=outcome.matched,
            errors=errors + [DecodeError(_named_text(str(e), local)) for e in outcome.errors],
            warnings=[_named_text(w, local) for w in outcome.warnings],
            sidecars={local[path]: facts for path, facts in outcome.sidecars.items()},
        )


def _local_copies(paths: list[str], scratch: Path) -> tuple[dict[str, str], list[DecodeError]]:
    """Per capture the worker can read, its path here -> the name the run gave it (a URL's
    capture fetched into ``scratch`` first); the errors of those it could not fetch."""
    from podcap.analysis.fetched import fetch, fetch_sidecar, is_url

    local, errors = {}, []
    for n, path in enumerate(paths):
        if not is_url(path):
            local[path] = path
            continue
        copy = str(scratch / f"{n}-{Path(path.rstrip('/')).name or 'capture'}")
        try:
            fetch(path, copy)
        except DecodeError as exc:
            errors.append(exc)
            continue
        fetch_sidecar(path, copy)
        local[copy] = path
    return local, errors


def _none_read(paths: list[str], errors: list[DecodeError]) -> DecodeError:
    return DecodeError(f"none of the {len(paths)} files could be read: {errors[0]}")


def _named_text(text: str, local: dict[str, str]) -> str:
    for here, name in local.items():
        if here != name:
            text = text.replace(here, name)
    return text


def _named_files(table, local: dict[str, str]):
    """``table`` with each capture's given name where it names the worker's copy."""
    from podcap.analysis.fetched import renamed_file

    for here, name in local.items():
        if here != name:
            table = renamed_file(table, here, name)
    return table


def joined(outcome, together: Together, reports: list[str]):
    """The per-capture tasks' Outcome with the together task's reports, in the order asked."""
    if together.error is not None:
        raise together.error
    tables = outcome.tables | together.tables
    return dataclasses.replace(outcome, tables={name: tables[name] for name in reports})
