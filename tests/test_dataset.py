"""``podcap analyze -F parquet -o DIR --dataset``: each report a hive-partitioned Parquet
dataset (``capture=FILE/bucket=N``) that pandas, pyarrow, DuckDB and Dask read back as the
report itself, row for row, with the sidecars' facts in every row; the same from ``--dask``;
``podcap.dataset.open`` gives it back as pandas or Dask DataFrames."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from podcap import dataset as podcap_dataset
from podcap.analysis.run import analyze
from podcap.errors import UsageError
from podcap.render.dataset import DATASET_BUCKETS, write_dataset
from testbed.helpers import podcap

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p) for p in (REPO / "sample_pcaps").glob("*.pcap*"))
REPORTS = ["summary", "flows", "tcp", "http"]
ADDED = ["capture", "bucket", "pod", "point"]  # summary has its node already


@pytest.fixture(scope="module")
def reports():
    return analyze(SAMPLES, reports=[*REPORTS, "packets"])


@pytest.fixture(scope="module")
def dataset(reports, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    write_dataset(reports, root, list(reports.sidecars), reports.sidecars)
    return root


def in_report_order(table: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``table``'s rows in ``like``'s order (a dataset comes back partition by partition)
    and its columns; ``like`` itself gets its index renumbered."""
    key = [c for c in ("file", "flow_id", "frame", "problem") if c in like]
    ordered = table.sort_values(key, kind="stable").reset_index(drop=True)
    return ordered[list(like.columns)]


@pytest.mark.parametrize("name", [*REPORTS, "packets"])
def test_pandas_reads_each_report_back_as_it_was(reports, dataset, name):
    want = reports[name]
    got = pd.read_parquet(dataset / name)
    assert len(want)
    key = [c for c in ("file", "flow_id", "frame", "problem") if c in want]
    pd.testing.assert_frame_equal(
        in_report_order(got, want), want.sort_values(key, kind="stable").reset_index(drop=True)
    )


def test_partitions_name_the_capture_and_keep_a_conversation_in_one_bucket(reports, dataset):
    flows = pd.read_parquet(dataset / "flows")
    assert (flows["capture"].astype(str) == flows["file"].map(lambda f: Path(f).name)).all()
    assert set(flows["bucket"].astype(int)) <= set(range(DATASET_BUCKETS))
    assert flows["bucket"].nunique() > 1  # the samples' conversations spread
    conversation = ["file", "client_ip", "client_port", "server_ip", "server_port"]
    for name in ("tcp", "http"):
        other = pd.read_parquet(dataset / name)
        joined = other.merge(flows, on=conversation, suffixes=("", "_flow"))
        same = joined["bucket"].astype(int) == joined["bucket_flow"].astype(int)
        assert len(joined) and same.all(), name
    summary = pd.read_parquet(dataset / "summary")
    assert (summary["bucket"].astype(int) == 0).all()  # no conversation: one partition


def test_every_row_says_where_its_capture_was_taken(dataset):
    flows = pd.read_parquet(dataset / "flows")
    pod = flows[flows["capture"] == "10-snat-pod.pcap"]
    assert len(pod)
    assert set(pod["pod"]) == {"default/web-a0"}
    assert set(pod["node"]) == {"node-a"} and set(pod["point"]) == {"pod"}
    node = flows[flows["capture"] == "10-snat-node.pcap"]
    assert set(node["point"]) == {"node"} and set(node["pod"]) == {""}


def test_pyarrow_duckdb_and_dask_read_the_same_rows(reports, dataset):
    want = reports["flows"]
    arrow = pads.dataset(dataset / "flows", partitioning="hive").to_table().to_pandas()
    files = str(dataset / "flows" / "**" / "*.parquet")
    query = f"select * from read_parquet('{files}', hive_partitioning=true)"
    duck = duckdb.sql(query).df()
    lazy = dd.read_parquet(str(dataset / "flows")).compute()
    for got in (arrow, duck, lazy):
        assert len(got) == len(want)
        ordered = got.sort_values("flow_id").reset_index(drop=True)
        assert ordered["flow_id"].tolist() == sorted(want["flow_id"])
        assert ordered["bytes_c2s"].tolist() == want.sort_values("flow_id")["bytes_c2s"].tolist()
        assert ordered["capture"].astype(str).str.endswith((".pcap", ".pcapng")).all()
    totals = duckdb.sql(
        f"select node, sum(bytes_c2s) b from read_parquet('{files}', hive_partitioning=true) "
        "group by node"
    ).df()
    assert totals["b"].sum() == want["bytes_c2s"].sum()


def test_the_dataset_from_dask_is_the_dataset_from_one_process(tmp_path):
    args = [*SAMPLES, "-r", ",".join(REPORTS), "-F", "parquet", "--dataset"]
    alone = podcap("analyze", *args, "-o", tmp_path / "alone")
    local = podcap("analyze", *args, "-o", tmp_path / "dask", "--dask-workers", "2", timeout=300)
    assert alone.returncode == 0 and local.returncode == 0, alone.stderr + local.stderr
    for name in REPORTS:
        want = pd.read_parquet(tmp_path / "alone" / name)
        got = pd.read_parquet(tmp_path / "dask" / name)
        assert len(want)
        pd.testing.assert_frame_equal(in_report_order(got, want), in_report_order(want, want))
    layout = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*"))
    assert layout == sorted(
        p.relative_to(tmp_path / "dask") for p in (tmp_path / "dask").rglob("*")
    )


def test_writing_again_replaces_each_report(tmp_path):
    first = podcap("analyze", *SAMPLES[:3], "-r", "flows", "-F", "parquet", "-o", tmp_path,
                   "--dataset")  # fmt: skip
    second = podcap("analyze", SAMPLES[0], "-r", "flows", "-F", "parquet", "-o", tmp_path,
                    "--dataset")  # fmt: skip
    assert first.returncode == 0 and second.returncode == 0
    captures = {p.name for p in (tmp_path / "flows").iterdir()}
    assert captures == {f"capture={Path(SAMPLES[0]).name}"}
    assert [p.name for p in tmp_path.iterdir()] == ["flows"]  # nothing staged left


@pytest.mark.parametrize(
    "args, says",
    [
        (["-F", "csv", "-o", "out"], "--dataset writes Parquet into a directory"),
        (["-F", "parquet"], "--dataset writes Parquet into a directory"),
        (["-F", "parquet", "-o", "a-file"], "a-file: --dataset writes a directory, and this is"),
    ],
)
def test_a_dataset_nowhere_to_go_gets_one_line(args, says, tmp_path):
    (tmp_path / "a-file").write_text("")
    done = podcap("analyze", SAMPLES[0], "--dataset", *args, cwd=tmp_path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and says in done.stderr, done.stderr


def test_open_gives_pandas_or_dask(dataset, reports):
    small = podcap_dataset.open(dataset)
    assert set(small) == {*REPORTS, "packets"}
    assert isinstance(small["flows"], pd.DataFrame)
    lazy = podcap_dataset.open(dataset, engine="dask")
    assert isinstance(lazy["flows"], dd.DataFrame)
    flows = reports["flows"]
    # Dask's text columns are pandas strings whose missing value is pd.NA, not NaN: the same
    # values in a dtype of another name.
    pd.testing.assert_frame_equal(
        in_report_order(lazy["flows"].compute(), flows),
        in_report_order(small["flows"], flows),
        check_dtype=False,
    )


def test_open_says_what_is_not_a_dataset(tmp_path):
    with pytest.raises(UsageError, match="not a podcap dataset"):
        podcap_dataset.open(tmp_path)
