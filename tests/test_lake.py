"""The lake storage layer (pipelines/core/lake.py) against a real Postgres catalog and, for
S3, moto's S3 server: publications read back equal, readers never fail nor see a mix of two
publications, snapshots hold, a killed publisher breaks nothing, a second publisher is refused,
retention keeps what is current or just staged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.core import lake
from pipelines.core.marts import PROGRESS_MARTS
from pipelines.core.publish import content_hash
from pipelines.core.schemas import MART_MODELS, column_descriptions, table_description
from pipelines.core.warehouse import TableDoc, read_table
from tests import lake_worker
from tests.conftest import marts_for

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"


def environment(config: lake.LakeConfig) -> dict[str, str]:
    """The lake as `PROGRESS_LAKE_*` variables for a worker process."""
    values = {
        "CATALOG": config.catalog,
        "DATA_PATH": config.data_path,
        "S3_ENDPOINT": config.s3_endpoint,
        "S3_KEY_ID": config.s3_key_id,
        "S3_SECRET": config.s3_secret,
        "S3_REGION": config.s3_region,
    }
    return os.environ | {lake.ENV + k: v for k, v in values.items()}


def worker(config: lake.LakeConfig, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lake_worker", *args],
        cwd=ROOT,
        env=environment(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def new_lake(config: lake.LakeConfig) -> duckdb.DuckDBPyConnection:
    con = lake.connect(config)
    schema = lake_worker.frames("schema")["marts.a"][0].schema
    lake.ensure_schema(con, dict.fromkeys(lake_worker.TABLES, schema))
    return con


def published_run(config: lake.LakeConfig) -> str | None:
    """The one run id a fresh reader sees (fails on a mix)."""
    with lake.connect(config, read_only=True) as con:
        seen = lake_worker.read_once(con)
    assert len(seen) == 1, f"a mix of publications: {seen}"
    return seen.pop()


def cli(config: lake.LakeConfig, sql: str, snapshot: int | None = None) -> str:
    """`sql` through the DuckDB CLI started with the documented reader script (docs/lake.md)."""
    script = subprocess.run(
        [sys.executable, "-m", "pipelines.core.lake", *([str(snapshot)] if snapshot else [])],
        cwd=ROOT, env=environment(config), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    done = subprocess.run(
        [Path(sys.executable).with_name("duckdb"), "-csv", "-noheader", "-cmd", script, "-c", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]  # after CREATE SECRET's "true" on S3


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


# --- (a) stage + publish, read back equal -----------------------------------------------------


@pytest.mark.parametrize("where", ["local", "s3"])
def test_publish_reads_back_the_same_content(where, request):
    config = request.getfixturevalue(f"{where}_lake")
    marts = marts_for(SAMPLE)
    docs = {
        f"marts.{n}": TableDoc(
            table_description(MART_MODELS[n]), column_descriptions(MART_MODELS[n])
        )
        for n in PROGRESS_MARTS
    }
    con = lake.connect(config)
    lake.ensure_schema(con, {f"marts.{n}": marts[n].schema for n in PROGRESS_MARTS}, docs)
    hashes = {n: content_hash(marts[n]) for n in PROGRESS_MARTS}
    staged = {}
    for name in PROGRESS_MARTS:  # two academy buckets per table, as bucket steps would stage
        academies = sorted(marts[name]["academy_id"].unique())
        for bucket, part in enumerate((academies[:1], academies[1:])):
            path = lake.stage_path(config, "run-1", f"marts.{name}", bucket)
            lake.write_staged(marts[name].filter(pl.col("academy_id").is_in(part)), path, config)
            staged.setdefault(f"marts.{name}", []).append(path)
    assert all(len(files) == 2 for files in staged.values())
    row = {"run_id": "run-1", "as_of": "2026-11-25 23:59:59", "content_hashes": json.dumps(hashes)}
    schemas = {f"marts.{n}": marts[n].schema for n in PROGRESS_MARTS}
    snapshot = lake.publish(con, staged, schemas, docs, row, "progress run run-1")
    con.close()

    with lake.connect(config, read_only=True) as reader:
        for name in PROGRESS_MARTS:
            back = read_table(reader, f"marts.{name}")
            assert back.height == marts[name].height
            assert content_hash(back) == hashes[name], name
        comments = dict(
            reader.execute(
                "SELECT column_name, comment FROM duckdb_columns() "
                "WHERE database_name = 'lake' AND table_name = 'lecture_progress'"
            ).fetchall()
        )
        assert comments["risk_level"] == docs["marts.lecture_progress"].columns["risk_level"]
        publication = read_table(reader, "marts.publication").row(0, named=True)
        assert publication["run_id"] == "run-1"
        assert json.loads(publication["content_hashes"]) == hashes
        listed = lake.snapshots(reader).row(-1, named=True)
    assert listed["snapshot_id"] == snapshot
    assert (listed["run_id"], listed["commit_message"]) == ("run-1", "progress run run-1")
    assert json.loads(listed["content_hashes"]) == hashes
    rows = marts["lecture_progress"].height
    assert cli(config, "SELECT count(*) FROM marts.lecture_progress") == str(rows)


def test_staged_paths_are_deterministic(local_lake, tmp_path):
    path = lake.stage_path(local_lake, "r", "marts.a", 7)
    assert path == f"{tmp_path / 'lake'}/_stage/r/marts.a/bucket=0007.parquet"
    assert path == lake.stage_path(local_lake, "r", "marts.a", 7)
    frame = pl.DataFrame({"x": [1, 2]})
    lake.write_staged(frame.head(1), path, local_lake)
    lake.write_staged(frame, path, local_lake)  # a retried step overwrites its own file
    assert pl.read_parquet(path).equals(frame)
    assert files_under(tmp_path / "lake") == {"_stage/r/marts.a/bucket=0007.parquet"}


def test_config_from_environment():
    config = lake.LakeConfig.from_env(
        {
            "PROGRESS_LAKE_CATALOG": "dbname=x",
            "PROGRESS_LAKE_DATA_PATH": "s3://b/p",
            "PROGRESS_LAKE_S3_ENDPOINT": "http://127.0.0.1:9000",
        }  # fmt: skip
    )
    assert config.on_s3 and config.root == "s3://b/p/"
    assert config.storage_options()["aws_allow_http"] == "true"
    with pytest.raises(ValueError, match="PROGRESS_LAKE_CATALOG"):
        lake.LakeConfig.from_env({})


# --- (b) readers in another process during publications -----------------------------------------


def test_readers_never_fail_nor_mix_during_publications(local_lake, tmp_path):
    con = new_lake(local_lake)
    lake_worker.publish(con, local_lake, "p0")
    stop = tmp_path / "stop"
    reader = worker(local_lake, "read", str(stop))
    try:
        deadline = time.monotonic() + 60
        while not Path(str(stop) + ".ready").exists():
            assert reader.poll() is None, reader.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for i in range(1, 21):
            lake_worker.publish(con, local_lake, f"p{i}")
    finally:
        stop.touch()
        out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    print("reads during 20 publications:", result)
    assert result["failed"] == 0, result
    assert result["mixed"] == 0, result
    assert result["reads"] >= 20, result
    assert len(result["runs"]) >= 3, result  # the reader saw publications change under it


# --- (c) snapshots --------------------------------------------------------------------------


def test_a_reader_transaction_keeps_its_snapshot_and_a_pinned_attach_the_old_one(local_lake):
    con = new_lake(local_lake)
    first = lake_worker.publish(con, local_lake, "old")
    reader = lake.connect(local_lake, read_only=True)
    reader.execute("BEGIN TRANSACTION")
    assert reader.execute("SELECT DISTINCT run_id FROM marts.a").fetchall() == [("old",)]
    lake_worker.publish(con, local_lake, "new")
    assert reader.execute("SELECT DISTINCT run_id FROM marts.b").fetchall() == [("old",)]
    reader.execute("COMMIT")
    assert reader.execute("SELECT DISTINCT run_id FROM marts.b").fetchall() == [("new",)]
    assert reader.execute(
        f"SELECT DISTINCT run_id FROM marts.a AT (VERSION => {first})"
    ).fetchall() == [("old",)]
    with pytest.raises(duckdb.Error, match="read-only|read only"):
        reader.execute("DELETE FROM marts.a")

    pinned = lake.connect(local_lake, snapshot=first)
    assert pinned.execute("SELECT DISTINCT run_id FROM marts.a").fetchall() == [("old",)]
    assert lake_worker.read_once(pinned) == {"old"}
    assert cli(local_lake, "SELECT DISTINCT run_id FROM marts.a", snapshot=first) == "old"
    assert cli(local_lake, "SELECT DISTINCT run_id FROM marts.a") == "new"
    with pytest.raises(duckdb.Error, match="read-only|read only"):
        pinned.execute("INSERT INTO marts.a SELECT * FROM marts.a")
    assert published_run(local_lake) == "new"


# --- (d) a publisher killed at a random moment --------------------------------------------------


def test_a_killed_publisher_leaves_the_previous_publication_whole(local_lake):
    con = new_lake(local_lake)
    lake_worker.publish(con, local_lake, "t0")
    reader = lake.connect(local_lake, read_only=True)  # each read_once is a fresh transaction
    rng = random.Random(14)
    outcomes = {"kept (killed before staging)": 0, "kept (killed in publish)": 0, "committed": 0}
    previous = "t0"
    for trial in range(1, 11):
        # 8 buckets per table: 16 files registered in the transaction, a few hundred ms
        publisher = worker(local_lake, "publish", f"k{trial}", "8")
        staged = trial % 2 == 0
        if staged:  # inside publish(): its transaction, its commit or just after
            assert publisher.stdout.readline().strip() == "staged", publisher.communicate()
            time.sleep(rng.uniform(0.0, 0.3))
        else:  # while it starts, connects or stages
            time.sleep(rng.uniform(0.0, 2.0))
        publisher.send_signal(signal.SIGKILL)
        publisher.communicate(timeout=30)
        seen = lake_worker.read_once(reader)
        assert seen in ({previous}, {f"k{trial}"}), seen  # whole, never a mix
        kept = "kept (killed in publish)" if staged else "kept (killed before staging)"
        outcomes[kept if seen == {previous} else "committed"] += 1
        previous = f"next{trial}"
        lake_worker.publish(con, local_lake, previous)  # the next publication succeeds
        assert lake_worker.read_once(reader) == {previous}
    print("kill trials:", outcomes)
    assert outcomes["committed"] < 10, outcomes


# --- (e) two publishers ---------------------------------------------------------------------


class Interleaved:
    """A connection that lets a rival publish just before our commit message (so inside our
    transaction, after all its work)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, rival) -> None:
        self._con, self._rival = con, rival

    def execute(self, sql: str, params=None):
        if "ducklake_set_commit_message" in sql and self._rival:
            rival, self._rival = self._rival, None
            rival()
        return self._con.execute(sql, params)

    def __getattr__(self, name: str):
        return getattr(self._con, name)


def test_a_second_concurrent_publisher_is_refused_with_a_clear_message(local_lake):
    con = new_lake(local_lake)
    lake_worker.publish(con, local_lake, "base")
    rival = lake.connect(local_lake)
    ours = Interleaved(con, lambda: lake_worker.publish(rival, local_lake, "rival"))
    with pytest.raises(
        lake.PublicationConflict, match="another publication .* in progress or committed first"
    ):
        lake_worker.publish(ours, local_lake, "ours")
    assert published_run(local_lake) == "rival"
    lake_worker.publish(con, local_lake, "after")  # the loser can publish again afterwards
    assert published_run(local_lake) == "after"


# --- (f) retention --------------------------------------------------------------------------


def test_expire_keeps_the_current_publication_and_a_just_staged_file(local_lake, tmp_path):
    root = tmp_path / "lake"
    con = new_lake(local_lake)
    for run in ("e1", "e2", "e3"):
        lake_worker.publish(con, local_lake, run)
    staged_now = lake.stage_path(local_lake, "running", "marts.a", 0)
    lake.write_staged(pl.DataFrame({"x": [1]}), staged_now, local_lake)
    abandoned = Path(lake.stage_path(local_lake, "failed-long-ago", "marts.a", 0))
    lake.write_staged(pl.DataFrame({"x": [1]}), str(abandoned), local_lake)
    two_days_ago = time.time() - 2 * 86400
    os.utime(abandoned, (two_days_ago, two_days_ago))
    before = files_under(root)
    assert {f for f in before if f.startswith("_stage/e1/")}

    removed = lake.expire(con, keep_days=0)

    after = files_under(root)
    assert not {f for f in after if f.startswith(("_stage/e1/", "_stage/e2/"))}
    assert {f for f in before if f.startswith("_stage/e3/")} <= after
    assert Path(staged_now).exists()  # a running run's file is never deleted
    assert not abandoned.exists()  # a failed run's file past the safety margin is
    assert removed["files"] >= 8 and removed["orphans"] >= 1, removed
    assert published_run(local_lake) == "e3"
    assert lake.snapshots(con)["run_id"].to_list() == ["e3"]
