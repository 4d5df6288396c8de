"""A Parquet dataset that ``podcap analyze -F parquet -o DIR --dataset`` wrote, read back.

    >>> import podcap.dataset
    >>> reports = podcap.dataset.open("out/")        # {"flows": DataFrame, ...}
    >>> reports["flows"].groupby("node")["bytes_c2s"].sum()

Each report is a directory of hive partitions (``capture=FILE/bucket=N``,
``podcap.render.dataset``); any Parquet reader takes them as they are (DuckDB:
``read_parquet('out/flows/**/*.parquet', hive_partitioning=true)``). Here a small dataset
comes back as pandas DataFrames, a large one (or any, with ``engine="dask"``) as Dask
DataFrames, read lazily partition by partition.
"""

from __future__ import annotations

from pathlib import Path

from podcap.errors import UsageError

SMALL_BYTES = 256 * 1024 * 1024  # "auto": up to this much Parquet is read into pandas
ENGINES = ("auto", "pandas", "dask")


def open(directory, engine: str = "auto") -> dict:  # noqa: A001 - podcap.dataset.open(DIR)
    """``{report name: DataFrame}`` of the dataset in ``directory``, with its partition
    columns (``capture``, ``bucket``). ``engine``: ``pandas``, ``dask``, or ``auto`` (Dask
    above SMALL_BYTES when it is installed)."""
    if engine not in ENGINES:
        raise UsageError(f"engine {engine!r}: choose from {', '.join(ENGINES)}")
    root = Path(directory)
    reports = report_directories(root)
    if engine == "auto":
        size = sum(f.stat().st_size for d in reports.values() for f in d.rglob("*.parquet"))
        engine = "dask" if size > SMALL_BYTES and _have_dask() else "pandas"
    if engine == "dask":
        import dask.dataframe as dd

        return {name: dd.read_parquet(str(path)) for name, path in reports.items()}
    import pandas as pd

    return {name: pd.read_parquet(path) for name, path in reports.items()}


def report_directories(root: Path) -> dict[str, Path]:
    """The report directories of the dataset at ``root``, by report name."""
    found = {
        path.name: path
        for path in sorted(root.iterdir() if root.is_dir() else [])
        if path.is_dir() and not path.name.startswith(".") and any(path.rglob("*.parquet"))
    }
    if not found:
        raise UsageError(
            f"{root}: not a podcap dataset (no report directories of Parquet files)",
            "write one with podcap analyze ... -F parquet -o DIR --dataset",
        )
    return found


def _have_dask() -> bool:
    try:
        import dask.dataframe  # noqa: F401
    except ImportError:
        return False
    return True
