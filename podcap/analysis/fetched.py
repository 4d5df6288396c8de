"""Captures named by URL (``s3://``, ``gs://``, ``file://``...), read by the Dask workers
(``podcap.analysis.on_dask.analyze_url``).

The worker that analyzes a capture copies it from its URL with fsspec (which Dask brings;
``s3://`` needs s3fs, ``gs://`` gcsfs) into a scratch directory of its own, with the sidecar
beside it when the URL has one (``URL.json``), analyzes the copy as any file, and names the
URL wherever the results name the file: the driver never holds a capture byte, and the
reports read as if the URL were a path. A capture's rereads (the DNS and HTTP bytes) happen
on the worker, on its copy, before the copy goes.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import shutil
from pathlib import Path

from podcap.errors import DecodeError
from podcap.sidecar import SIDECAR_SUFFIX, sidecar_path

URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
COPY_CHUNK = 8 << 20


def is_url(path: str) -> bool:
    return bool(URL.match(path))


def listed(url: str, suffixes: tuple[str, ...]) -> list[str]:
    """The capture files in the directory ``url`` names (``.../``), sorted by name: a
    listing, no capture read here."""
    from podcap.errors import UsageError

    try:
        import fsspec

        fs, root = fsspec.core.url_to_fs(url)
        names = sorted(n for n in fs.ls(root, detail=False) if n.endswith(suffixes))
    except ImportError as exc:
        raise UsageError(f"{url}: {exc}", "pip install 'podcap[dask]'") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{url}: cannot be listed ({exc})") from None
    if not names:
        raise UsageError(f"{url}: a directory without capture files ({', '.join(suffixes)})")
    return [fs.unstrip_protocol(name) for name in names]


def fetch(url: str, local: str) -> None:
    """``url`` copied to ``local``; DecodeError naming the URL and why it could not be."""
    try:
        import fsspec

        with fsspec.open(url, "rb") as source, open(local, "wb") as copy:
            shutil.copyfileobj(source, copy, COPY_CHUNK)
    except FileNotFoundError:
        raise DecodeError(f"{url}: no such file") from None
    except ImportError as exc:  # fsspec's own words name the package: "Install s3fs to ..."
        raise DecodeError(f"{url}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise DecodeError(f"{url}: cannot be read ({exc})") from None


def fetch_sidecar(url: str, local: str) -> None:
    """The capture's sidecar beside its copy, when the URL has one: ``URL.json``, or the
    URL with ``.json`` for its suffix (where ``podcap.sidecar.read_sidecar`` looks)."""
    for candidate in (sidecar_path(url), posixpath.splitext(url)[0] + SIDECAR_SUFFIX):
        try:
            fetch(candidate, sidecar_path(local))
            return
        except DecodeError:
            Path(sidecar_path(local)).unlink(missing_ok=True)  # none: analyzed without


def renamed(part, local: str, url: str):
    """``part`` with ``url`` wherever it named ``local``: the tables' ``file`` column, the
    whole capture's path, warnings and the error."""
    if part.error is not None:
        return dataclasses.replace(part, error=DecodeError(str(part.error).replace(local, url)))
    results = [
        dataclasses.replace(
            result,
            tables={name: renamed_file(t, local, url) for name, t in result.tables.items()},
            counts=renamed_file(result.counts, local, url),
        )
        for result in part.results
    ]
    whole = dataclasses.replace(
        part.whole,
        path=url,
        warnings=[w.replace(local, url) for w in part.whole.warnings],
    )
    warnings = [w.replace(local, url) for w in part.warnings]
    tables = {name: renamed_file(table, local, url) for name, table in part.tables.items()}
    return dataclasses.replace(part, whole=whole, results=results, warnings=warnings, tables=tables)


def renamed_file(table, local: str, url: str):
    """``table`` with ``url`` for ``local`` in its ``file`` column, or its index when that
    names files (the summary's counts); None stays None."""
    if table is None:
        return table
    if "file" not in table:
        return table.rename(index={local: url}) if local in table.index else table
    import pandas as pd

    column = table["file"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        if local not in column.cat.categories:
            return table
        return table.assign(file=column.cat.rename_categories({local: url}))
    return table.assign(file=column.where(column != local, url))
