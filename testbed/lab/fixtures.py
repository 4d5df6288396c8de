"""pytest fixtures for the lab (registered in tests/conftest.py's pytest_plugins).

- ``lab``: module-scoped, 2 nodes, 1 Pod per node, routed, with the IDC host.
- ``make_lab``: a factory taking Lab's arguments; every lab it made is closed at teardown.

Tests that need the lab are skipped (with the reason) when not run as root or when the machine
lacks ``ip``; they never leave anything behind, even when they fail or are interrupted.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from .core import Lab


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, iptables, cgroups)"
    for tool in ("ip", "iptables", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"the lab needs {tool} (scripts/install-system-deps.sh installs it)"
    return None


def _skip_if_unavailable() -> None:
    reason = lab_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    _skip_if_unavailable()
    with Lab(nodes=2, pods_per_node=1, overlay="routed", idc=True) as the_lab:
        yield the_lab


@pytest.fixture
def make_lab() -> Iterator[Callable[..., Lab]]:
    _skip_if_unavailable()
    made: list[Lab] = []

    def factory(*args, **kwargs) -> Lab:
        new = Lab(*args, **kwargs)
        made.append(new)
        return new.start()

    try:
        yield factory
    finally:
        for one in reversed(made):
            one.close()
