"""Reports as a Parquet dataset: ``DIR/<report>/capture=<file>/bucket=<n>/part-0.parquet``.

Hive partitioning, which pandas, pyarrow, DuckDB, Dask and Spark read as they are: each
report a directory, each capture file a partition (``capture``: the file's name), and the
reports with a conversation (flows, tcp, http, ...) cut again by its bucket: a hash of its
protocol and two endpoints (``podcap.decode.spill.conversation_buckets``, over
``DATASET_BUCKETS``), so one conversation's rows are in one partition whatever the report.
What the capture's sidecar says of where it was taken is in every row: ``node``, ``pod``
(``NAMESPACE/NAME`` for a capture inside a Pod) and ``point`` (pod, node, ...).

Each report's directory is written beside its place and renamed into it, replacing what an
earlier run wrote there: a failure half-way leaves the old one whole.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from podcap.errors import UsageError

DATASET_BUCKETS = 8
PARTITIONS = ["capture", "bucket"]
CONVERSATION = ["client_ip", "client_port", "server_ip", "server_port"]
PROTOCOLS = {"tcp": 6, "udp": 17}
FACTS = ["node", "pod", "point"]


def write_dataset(
    reports: dict[str, pd.DataFrame], directory, files: list[str], sidecars: dict[str, dict]
) -> list[Path]:
    """Each report under ``directory/<name>/``, partitioned; the report directories written."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    root = _output_directory(directory)
    captures = capture_names(files)
    written = []
    for name, table in reports.items():
        rows = dataset_rows(table, files, captures, sidecars)
        schema = pa.schema([("capture", pa.string()), ("bucket", pa.int32())])
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            ds.write_dataset(
                pa.Table.from_pandas(rows, preserve_index=False),
                staging,
                format="parquet",
                partitioning=ds.partitioning(schema, flavor="hive"),
                basename_template="part-{i}.parquet",
            )
            _replace(root / name, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        written.append(root / name)
    return written


def dataset_rows(
    table: pd.DataFrame, files: list[str], captures: dict[str, str], sidecars: dict[str, dict]
) -> pd.DataFrame:
    """``table`` with its partition columns (``capture``, ``bucket``) and the sidecar facts:
    each worked out once per file, then spread by the rows' file codes."""
    rows = table.copy(deep=False)
    rows.attrs = {}  # pandas would store them as JSON in the file; they are for the Python API
    if "file" in rows:
        codes, names = pd.factorize(rows["file"].astype("category"))
        names = [str(name) for name in names]
    else:
        codes, names = np.zeros(len(rows), np.int64), files[:1]

    def per_file(value_of) -> pd.Categorical:
        values = [value_of(name) for name in names]
        categories = list(dict.fromkeys(values))
        lookup = np.array([categories.index(v) for v in values], np.int64)
        return pd.Categorical.from_codes(lookup[codes] if len(values) else codes, categories)

    for fact in FACTS:
        if fact not in rows:
            rows[fact] = per_file(lambda name, fact=fact: _fact(sidecars.get(name) or {}, fact))
    # Text, not categorical: a partition column's type is the partitioning's (Dask insists).
    rows["capture"] = per_file(lambda name: captures.get(name, Path(name).name)).astype(str)
    rows["bucket"] = conversation_bucket(rows) if set(CONVERSATION) <= set(rows) else 0
    rows["bucket"] = rows["bucket"].astype(np.int32)
    return rows


def capture_names(files: list[str]) -> dict[str, str]:
    """Each file's partition name: its own name, numbered where two files share one."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for path in files:
        name, n = Path(path).name, 1
        while name in taken:
            n += 1
            name = f"{Path(path).name}-{n}"
        names[path] = name
        taken.add(name)
    return names


def conversation_bucket(rows: pd.DataFrame) -> np.ndarray:
    """Each row's conversation bucket, as the spill to disk reckons it (both ends, either
    way round, and the protocol; the addresses by the CRC-32 of their text). Each distinct
    address and protocol is spelled once."""
    from podcap.decode.spill import conversation_buckets

    client, client_texts = pd.factorize(rows["client_ip"])
    server, server_texts = pd.factorize(rows["server_ip"])
    texts = [str(t) for t in client_texts] + [str(t) for t in server_texts]
    missing = len(texts)  # a row without an address: key 0, after the others
    keys = np.array([zlib.crc32(text.encode()) for text in texts] + [0], np.uint64)
    if "proto" in rows:
        codes, names = pd.factorize(rows["proto"])
        proto = np.array([PROTOCOLS.get(str(name), 0) for name in names], np.int64)[codes]
    else:
        proto = np.full(len(rows), PROTOCOLS["tcp"])
    chunk = {
        "src": np.where(client >= 0, client, missing),
        "dst": np.where(server >= 0, server + len(client_texts), missing),
        "sport": rows["client_port"].fillna(-1).to_numpy(np.int64),
        "dport": rows["server_port"].fillna(-1).to_numpy(np.int64),
        "ip_proto": proto,
    }
    return conversation_buckets(chunk, DATASET_BUCKETS, keys)


def _fact(sidecar: dict, fact: str) -> str:
    point = sidecar.get("point") or {}
    if fact == "pod":
        pod = point.get("pod")
        return f"{point['namespace']}/{pod}" if pod and point.get("namespace") else str(pod or "")
    return str(point.get("kind" if fact == "point" else fact) or "")


def _output_directory(directory) -> Path:
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root}: --dataset writes a directory, and this is a file")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{root}: cannot create the dataset directory ({exc.strerror})") from exc
    return root


def _replace(target: Path, staging: Path) -> None:
    """``staging`` renamed to ``target``; an earlier ``target`` removed once it is."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}-old-{staging.name}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
