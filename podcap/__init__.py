"""podcap: packet capture and analysis for Kubernetes networking; the public API, loaded lazily.

The library comes first; the ``podcap`` command is a thin layer over it. ``import podcap`` loads
nothing heavy: each name below is imported from its module on first use (``podcap.analyze``
brings pandas in, ``podcap.__version__`` does not). Nothing inside podcap imports this module.

Example:
    >>> import podcap
    >>> result = podcap.analyze(["a.pcap"], filter='tcp contains "lbtest"', reports=["flows"])
"""

from __future__ import annotations

import importlib

# Public name -> the module that defines it (no name of a subpackage: ``podcap.render`` is one).
_PUBLIC = {
    "analyze": "podcap.analysis.run",
    "AnalysisResult": "podcap.analysis.run",
    "read_capture": "podcap.decode",
    "compile_filter": "podcap.dfilter",
    "snat_inputs": "podcap.snat.inputs",
    "diagnose": "podcap.diagnosis.api",
    "REPORTS": "podcap.reports.registry",
    "report": "podcap.reports.registry",
    "PodcapError": "podcap.errors",
    "__version__": "podcap.version",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'podcap' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
