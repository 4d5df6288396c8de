"""csv, json and parquet writers."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import pandas as pd

from podcap.errors import UsageError

JSON_ROWS = 10_000  # records turned into Python objects at a time


def write_json(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    """One JSON object keyed by report name, each a list of records: the text of
    ``json.dumps(document, indent=1)``, written piece by piece (a flows report of a million
    rows as Python objects at once would cost gigabytes)."""
    if to_stdout(output):
        stdout.writelines(_json_pieces(reports))
        return []
    return write_files([(lambda p: _write_pieces(p, _json_pieces(reports)), Path(output))])


def _json_pieces(reports: dict[str, pd.DataFrame]):
    yield "{"
    for index, (name, table) in enumerate(reports.items()):
        yield ("," if index else "") + f"\n {json.dumps(name)}: ["
        for start in range(0, len(table), JSON_ROWS):
            records = json.loads(_records_json(table.iloc[start : start + JSON_ROWS]))
            text = ",".join(
                "\n" + textwrap.indent(json.dumps(record, indent=1), "  ") for record in records
            )
            yield ("," if start else "") + text
        yield "\n ]" if len(table) else "]"
    yield "\n}\n" if reports else "}\n"


def _write_pieces(path: Path, pieces) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.writelines(pieces)


def _records_json(table: pd.DataFrame) -> str:
    # pandas writes datetimes as ISO 8601 and missing values as null.
    return table.to_json(orient="records", date_format="iso", date_unit="us")


def write_csv(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    # pandas writes the rows out in chunks: never the whole text in memory at once.
    if len(reports) == 1:
        (table,) = reports.values()
        if to_stdout(output):
            table.to_csv(stdout, index=False)
            return []
        return write_files([(lambda p: table.to_csv(p, index=False), Path(output))])
    if to_stdout(output):
        raise UsageError(
            "csv with several reports writes one file per report",
            "give a directory with -o DIR",
        )
    return write_files(
        [
            (lambda p, t=table: t.to_csv(p, index=False), path)
            for path, table in _per_report(reports, output, "csv")
        ]
    )


def write_parquet(reports: dict[str, pd.DataFrame], output, stdout: TextIO, options) -> list[Path]:
    if to_stdout(output):
        raise UsageError("parquet is a binary format", "give the output file with -o PATH")
    if len(reports) == 1:
        (table,) = reports.values()
        return write_files([(lambda p: _parquet(table, p), Path(output))])
    return write_files(
        [
            (lambda p, t=table: _parquet(t, p), path)
            for path, table in _per_report(reports, output, "parquet")
        ]
    )


def _parquet(table: pd.DataFrame, path: Path) -> None:
    # Dictionary pages for the text columns only (addresses, states, history repeat a lot);
    # for the numeric ones they cost 60 ms per 150,000 flows for a file about 20 % smaller.
    text = [name for name in table.columns if pd.api.types.is_string_dtype(table[name])]
    # pandas stores ``attrs`` as JSON in the file; a report's attrs may hold what JSON cannot
    # (the snat report's clock offsets are a DataFrame): they are for the Python API only.
    table = table.copy(deep=False)
    table.attrs = {}
    table.to_parquet(path, index=False, use_dictionary=text)


def _per_report(reports: dict[str, pd.DataFrame], output: str, suffix: str):
    directory = Path(output)
    if directory.exists() and not directory.is_dir():
        raise UsageError(
            f"{directory}: several reports are written one file each into a directory, "
            "and this is a file"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{directory}: cannot create the output directory ({exc.strerror})"
        ) from exc
    return [(directory / f"{name}.{suffix}", table) for name, table in reports.items()]


def write_text_output(text: str, output, stdout: TextIO) -> list[Path]:
    """``text`` to stdout when ``output`` is None or ``-``, else to that file (UTF-8)."""
    if to_stdout(output):
        stdout.write(text)
        return []
    return write_files([(lambda p: p.write_text(text, encoding="utf-8"), Path(output))])


def to_stdout(output) -> bool:
    """Whether ``-o`` asks for stdout: not given, or ``-``."""
    return output is None or output == "-"


def write_files(jobs: list[tuple[Callable[[Path], object], Path]]) -> list[Path]:
    """Each ``write(path)`` into a temporary name beside its path, then all renamed at once:
    a failure half-way (a full disk, a report that cannot be written) leaves no file of the
    set, and no earlier file of the same name is overwritten by half a report."""
    written: list[tuple[Path, Path]] = []
    try:
        for write, path in jobs:
            if path.exists() and not path.is_file():
                _write_in_place(write, path)  # /dev/null, a FIFO: never replaced by a file
                continue
            temporary = path.with_name(f".{path.name}.podcap-{os.getpid()}")
            written.append((temporary, path))
            _write_in_place(write, temporary, shown=path)
        for temporary, path in written:
            try:
                os.replace(temporary, path)
            except OSError as exc:
                raise UsageError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)
        raise
    return [path for _, path in jobs]


def _write_in_place(write, path: Path, shown: Path | None = None) -> None:
    try:
        write(path)
    except OSError as exc:
        raise UsageError(f"{shown or path}: cannot write ({exc.strerror or exc})") from exc
